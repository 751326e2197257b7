package testkit

import (
	"sync"
	"testing"
	"time"
)

// pollEvery bounds how long a wait sleeps between two looks at its
// condition, for conditions that also change with time alone.
const pollEvery = 100 * time.Millisecond

// Until evaluates cond until it holds or timeout passes, and reports
// whether it held. It looks again whenever changed's channel is closed
// (taken before each look, so no change is missed) and at least every
// 100 ms; changed may be nil for a condition nothing signals, which is
// then looked at every 10 ms.
func Until(changed func() <-chan struct{}, timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	interval := pollEvery
	if changed == nil {
		interval = 10 * time.Millisecond // nothing signals: look often
	}
	for {
		var wake <-chan struct{}
		if changed != nil {
			wake = changed()
		}
		if cond() {
			return true
		}
		tick := time.NewTimer(interval)
		select {
		case <-wake:
		case <-tick.C:
		case <-deadline.C:
			tick.Stop()
			return cond()
		}
		tick.Stop()
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

// WaitLocked is WaitUntil for state guarded by mu whose writer closes and
// replaces *changed at every change: cond runs with mu held, and the wait
// wakes at every change.
func WaitLocked(t testing.TB, what string, d time.Duration, mu sync.Locker, changed *chan struct{}, cond func() bool) {
	t.Helper()
	signal := func() <-chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		return *changed
	}
	locked := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return cond()
	}
	if !Until(signal, d, locked) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}
