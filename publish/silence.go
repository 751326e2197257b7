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
type silence struct {
	bounds map[string]time.Duration // plc -> its bound

	mu     sync.Mutex
	timers map[string]*armed // plc -> its timer, while recovering
	queue  func(collectors.PLCStatus)
}

func newSilence(plcs []payload.PLC, queue func(collectors.PLCStatus)) *silence {
	s := &silence{
		bounds: map[string]time.Duration{},
		timers: map[string]*armed{},
		queue:  queue,
	}
	for _, plc := range plcs {
		s.bounds[plc.Name] = plc.Silence
	}
	return s
}

// note passes st on to queue, and arms or disarms st.PLC's timer. A
// change of reason while recovering keeps the timer running.
func (s *silence) note(st collectors.PLCStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.timers[st.PLC]; a != nil && st.State != collectors.StateRecovering {
		a.timer.Stop()
		delete(s.timers, st.PLC)
	}
	s.queue(st)
	if st.State != collectors.StateRecovering || s.timers[st.PLC] != nil {
		return
	}
	bound, ok := s.bounds[st.PLC]
	if !ok {
		bound = payload.MinSilence
	}
	a := &armed{}
	a.timer = time.AfterFunc(bound, func() { s.expire(st, a, bound) })
	s.timers[st.PLC] = a
}

// armed is one arming of a timer: a timer that fires as it is stopped may
// still run its function, which then finds itself replaced.
type armed struct{ timer *time.Timer }

// expire reports st's entry disconnected, unless a was disarmed since.
func (s *silence) expire(st collectors.PLCStatus, a *armed, bound time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timers[st.PLC] != a {
		return
	}
	delete(s.timers, st.PLC)
	st.State = collectors.StateDisconnected
	st.Reason = fmt.Sprintf("no values for %s while recovering", bound)
	st.Since = time.Now()
	s.queue(st)
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
