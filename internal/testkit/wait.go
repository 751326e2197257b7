package testkit

import (
	"testing"
	"time"
)

// Until evaluates cond whenever changed's channel is closed (taken before
// each evaluation, so no change is missed) until cond holds or timeout
// passes; it reports whether cond held. changed may be nil for a condition
// nothing signals: it is then evaluated every 10 ms.
func Until(changed func() <-chan struct{}, timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		var wake <-chan struct{}
		var tick *time.Timer
		if changed != nil {
			wake = changed()
		} else {
			tick = time.NewTimer(10 * time.Millisecond)
		}
		if cond() {
			if tick != nil {
				tick.Stop()
			}
			return true
		}
		var tc <-chan time.Time
		if tick != nil {
			tc = tick.C
		}
		select {
		case <-wake:
		case <-tc:
		case <-deadline.C:
			if tick != nil {
				tick.Stop()
			}
			return cond()
		}
	}
}

// WaitUntil fails the test unless cond holds within d, naming what it
// waited for; cond is evaluated every 10 ms (see Until to wake on change).
func WaitUntil(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	if !Until(nil, d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}
