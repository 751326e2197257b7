package uasc

import (
	"errors"
	"math"
	"testing"
	"testing/synctest"
	"time"
)

func TestRenewDelay(t *testing.T) {
	tests := []struct {
		lifetime    time.Duration
		want        time.Duration
		wantClamped bool
	}{
		{time.Hour, 45 * time.Minute, false},
		{5 * time.Second, 3750 * time.Millisecond, false}, // gopcua: 3 s
		{3 * time.Second, 2250 * time.Millisecond, false},
		{time.Second, 750 * time.Millisecond, false}, // gopcua: 0
		{1001 * time.Millisecond, 750750 * time.Microsecond, false},
		{667 * time.Millisecond, 500250 * time.Microsecond, false},
		{666 * time.Millisecond, 500 * time.Millisecond, true},
		{100 * time.Millisecond, 500 * time.Millisecond, true},
		{0, 500 * time.Millisecond, true},
		{math.MaxUint32 * time.Millisecond, math.MaxUint32 * time.Millisecond / 4 * 3, false},
	}
	for _, tt := range tests {
		got, clamped := renewDelay(tt.lifetime)
		if got != tt.want || clamped != tt.wantClamped {
			t.Errorf("renewDelay(%s) = %s, %v; want %s, %v", tt.lifetime, got, clamped, tt.want, tt.wantClamped)
		}
	}
}

func TestAcceptUntil(t *testing.T) {
	arrived := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for lifetime, want := range map[time.Duration]time.Duration{
		time.Second:      1250 * time.Millisecond,
		3 * time.Second:  3750 * time.Millisecond,
		10 * time.Minute: 12*time.Minute + 30*time.Second,
	} {
		if got := acceptUntil(arrived, lifetime).Sub(arrived); got != want {
			t.Errorf("acceptUntil(%s) = arrival + %s, want + %s", lifetime, got, want)
		}
	}
}

// TestRenewSchedule runs the renewal schedule on synctest's clock: renewals
// at 75 % of each granted lifetime from each grant's arrival (the renewal's
// own round trip included), never closer than 500 ms, a failed renewal ends
// it, and stop ends it between renewals.
func TestRenewSchedule(t *testing.T) {
	const rtt = 7 * time.Millisecond
	tests := []struct {
		name      string
		lifetimes []time.Duration // granted by the server: the first at open, then one per renewal
		want      []time.Duration // renewal requests, from open
		wantShort int             // calls of short
	}{
		{"1s tokens", []time.Duration{time.Second, time.Second, time.Second, time.Second},
			[]time.Duration{750 * time.Millisecond, 1507 * time.Millisecond, 2264 * time.Millisecond}, 0},
		{"5s tokens at ms precision", []time.Duration{5 * time.Second, 5 * time.Second, 5 * time.Second},
			[]time.Duration{3750 * time.Millisecond, 7507 * time.Millisecond}, 0},
		{"lifetime revised down", []time.Duration{time.Hour, 2 * time.Second, 2 * time.Second},
			[]time.Duration{45 * time.Minute, 45*time.Minute + rtt + 1500*time.Millisecond}, 0},
		{"200ms tokens: at most two renewals a second", []time.Duration{200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond},
			[]time.Duration{500 * time.Millisecond, 1007 * time.Millisecond, 1514 * time.Millisecond}, 4},
		{"odd lifetime", []time.Duration{1333 * time.Millisecond, 1333 * time.Millisecond},
			[]time.Duration{999750 * time.Microsecond}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				stop := make(chan struct{})
				var got []time.Duration
				short := 0
				renew := func() (grant, error) {
					got = append(got, time.Since(start))
					time.Sleep(rtt)
					if len(got) == len(tt.lifetimes)-1 {
						close(stop) // after the last grant, end the schedule while it waits
					}
					return grant{arrived: time.Now(), lifetime: tt.lifetimes[len(got)]}, nil
				}
				err := renewSchedule(stop, grant{arrived: start, lifetime: tt.lifetimes[0]}, renew, func(time.Duration) { short++ })
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(tt.want) {
					t.Fatalf("renewals at %v, want %v", got, tt.want)
				}
				for i := range got {
					if got[i] != tt.want[i] {
						t.Errorf("renewal %d at %s, want %s", i+1, got[i], tt.want[i])
					}
				}
				if short != tt.wantShort {
					t.Errorf("short called %d times, want %d", short, tt.wantShort)
				}
			})
		})
	}
}

func TestRenewScheduleFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		boom := errors.New("BadSecureChannelIdInvalid")
		calls := 0
		err := renewSchedule(make(chan struct{}), grant{arrived: start, lifetime: 4 * time.Second}, func() (grant, error) {
			calls++
			if calls == 2 {
				return grant{}, boom
			}
			return grant{arrived: time.Now(), lifetime: 4 * time.Second}, nil
		}, nil)
		if !errors.Is(err, boom) || calls != 2 || time.Since(start) != 6*time.Second {
			t.Errorf("schedule ended with %v after %d renewals at %s, want the failure of the second at 6s", err, calls, time.Since(start))
		}
	})
}
