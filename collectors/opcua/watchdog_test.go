package opcua

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tagbridge/tagbridge/config"
)

// The watchdog, on a virtual clock: it waits for two heartbeats before it
// judges, allows WatchdogIntervals publishing intervals of silence (at
// least minWatchdog), and any activity starts the silence afresh.
func TestWatchdogOnVirtualClock(t *testing.T) {
	cases := []struct {
		name      string
		interval  time.Duration
		intervals int
		want      time.Duration
	}{
		{"short intervals get the minimum", 20 * time.Millisecond, 10, minWatchdog},
		{"long intervals", 2 * time.Second, 10, 20 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &Session{plc: config.PLC{WatchdogIntervals: tc.intervals}}
				s.tags = []tagRef{{Tag: &config.Tag{PublishingInterval: config.Duration(tc.interval)}}}
				dog := s.newWatchdog()
				if dog.timeout != tc.want {
					t.Fatalf("timeout %v, want %v", dog.timeout, tc.want)
				}

				time.Sleep(2 * tc.want)
				if err := dog.check(); err != nil {
					t.Fatalf("judged before two heartbeats: %v", err)
				}
				dog.heartbeat()
				dog.heartbeat()
				if err := dog.check(); err == nil || !strings.Contains(err.Error(), "no data and no heartbeat for "+(2*tc.want).String()) {
					t.Fatalf("after %v of silence: %v, want the watchdog to fire naming the silence", 2*tc.want, err)
				}

				dog.activity()
				time.Sleep(tc.want)
				if err := dog.check(); err != nil {
					t.Fatalf("at exactly the allowed silence: %v", err)
				}
				time.Sleep(time.Millisecond)
				if err := dog.check(); err == nil {
					t.Fatalf("1 ms past the allowed silence: no error")
				}
			})
		})
	}
}
