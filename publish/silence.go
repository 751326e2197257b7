package publish

import (
	"fmt"
	"sync"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/payload"
)

// silence turns a PLC entry that stays recovering for longer than its
// bound into disconnected, for every format. While recovering, the session
// reactivates itself on a new channel and loses no values once it is back,
// but until then nothing arrives, and the collector may take longer than a
// consumer can wait (the channel's own timeouts, then its backoff) before
// it gives up: the bound is the session's watchdog, watchdog_intervals
// times the slowest publishing interval, at least 5 s.
//
// The intake notes every state change and expires what fired, so that a
// timer firing as a state change arrives is decided in the stream's order.
type silence struct {
	bounds map[string]time.Duration // plc -> its bound
	fired  func(*armed)             // called on the timer's goroutine

	mu     sync.Mutex
	timers map[string]*armed // plc -> its timer, while recovering
}

// armed is one arming of a timer for a recovering entry.
type armed struct {
	timer *time.Timer
	st    collectors.PLCState // the state that armed it
	bound time.Duration
}

func newSilence(plcs []payload.PLC, fired func(*armed)) *silence {
	s := &silence{
		bounds: map[string]time.Duration{},
		timers: map[string]*armed{},
		fired:  fired,
	}
	for _, plc := range plcs {
		s.bounds[plc.Name] = plc.Silence
	}
	return s
}

// note arms or disarms st.PLC's timer. A change of reason while
// recovering keeps the timer running.
func (s *silence) note(st collectors.PLCState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.timers[st.PLC]; a != nil && st.State != collectors.StateRecovering {
		a.timer.Stop()
		delete(s.timers, st.PLC)
	}
	if st.State != collectors.StateRecovering || s.timers[st.PLC] != nil {
		return
	}
	bound, ok := s.bounds[st.PLC]
	if !ok {
		bound = payload.MinSilence
	}
	a := &armed{st: st, bound: bound}
	a.timer = time.AfterFunc(bound, func() { s.fired(a) })
	s.timers[st.PLC] = a
}

// expire returns the disconnected state a fired timer reports, false if a
// was disarmed since (a timer that fires as it is stopped may still run).
func (s *silence) expire(a *armed) (collectors.PLCState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timers[a.st.PLC] != a {
		return collectors.PLCState{}, false
	}
	delete(s.timers, a.st.PLC)
	st := a.st
	st.State = collectors.StateDisconnected
	st.Reason = fmt.Sprintf("no values for %s while recovering", a.bound)
	st.Since = time.Now()
	return st, true
}

// stop disarms every timer.
func (s *silence) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for plc, a := range s.timers {
		a.timer.Stop()
		delete(s.timers, plc)
	}
}
