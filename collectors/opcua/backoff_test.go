package opcua

import (
	"testing"
	"time"
)

func TestBackoffStaysWithinBounds(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 60 * time.Second}
	for attempt := range 40 {
		ceiling := min(time.Second<<min(attempt, 20), b.Max)
		for range 200 {
			d := b.Next(attempt)
			if d < b.Min || d > ceiling {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, b.Min, ceiling)
			}
		}
	}
}

func TestBackoffGrowsThenCaps(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	// Medians of repeated draws must grow until the cap, then stay there.
	median := func(attempt int) time.Duration {
		var sum time.Duration
		for range 400 {
			sum += b.Next(attempt)
		}
		return sum / 400
	}
	if m0, m3 := median(0), median(3); m3 < 4*m0 {
		t.Errorf("attempt 3 mean %v not ~8x attempt 0 mean %v", m3, m0)
	}
	if m := median(30); m < b.Max/2 || m > b.Max {
		t.Errorf("capped mean %v outside [%v, %v]", m, b.Max/2, b.Max)
	}
}

func TestBackoffJitters(t *testing.T) {
	b := Backoff{Min: time.Second, Max: time.Minute}
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[b.Next(4)] = true
	}
	if len(seen) < 10 {
		t.Errorf("only %d distinct delays in 50 draws: no jitter", len(seen))
	}
}
