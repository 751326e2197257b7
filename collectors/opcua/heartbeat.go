package opcua

import (
	"context"
	"sync"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
)

// heartbeats republish a tag's last value when it has not changed for the
// tag's heartbeat period, so that consumers can tell "unchanged" from
// "dead" (OPC Publisher's heartbeat). While the PLC is away they go on with
// status BadNoCommunication: a dashboard never shows a stale Good.
//
// A heartbeat is a copy of the last sample, marked Heartbeat, with its
// source time kept (the value's own time) and the server time set to when
// the heartbeat was sent. With lastGood, the last Good value is repeated
// (a Bad or Uncertain value still counts as a change that resets the
// period).
type heartbeats struct {
	lastGood bool

	mu      sync.Mutex
	every   []time.Duration      // by client handle; 0: none
	handles map[[2]string]uint32 // PLC entry and tag name -> client handle
	last    []collectors.Sample
	has     []bool
	sent    []time.Time // last publication of each tag: a change or a heartbeat
}

// newHeartbeats returns nil when no tag has a heartbeat. every and tags
// are by client handle.
func newHeartbeats(tags []tagRef, every []time.Duration, lastGood bool) *heartbeats {
	some := false
	for _, d := range every {
		some = some || d > 0
	}
	if !some {
		return nil
	}
	handles := make(map[[2]string]uint32, len(tags))
	for i, t := range tags {
		handles[[2]string{t.plc, t.Name}] = uint32(i)
	}
	return &heartbeats{
		every:    every,
		lastGood: lastGood,
		handles:  handles,
		last:     make([]collectors.Sample, len(every)),
		has:      make([]bool, len(every)),
		sent:     make([]time.Time, len(every)),
	}
}

// noteTag records a sample about to be published.
func (h *heartbeats) noteTag(smp collectors.Sample, now time.Time) {
	if smp.Heartbeat {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if handle, ok := h.handles[[2]string{smp.PLC, smp.Tag}]; ok {
		h.noteLocked(handle, smp, now)
	}
}

// note records a sample about to be published for the tag of handle.
func (h *heartbeats) note(handle uint32, smp collectors.Sample, now time.Time) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.noteLocked(handle, smp, now)
}

func (h *heartbeats) noteLocked(handle uint32, smp collectors.Sample, now time.Time) {
	if int(handle) >= len(h.every) || h.every[handle] <= 0 {
		return
	}
	h.sent[handle] = now
	if h.lastGood && smp.StatusCode&0xC0000000 != 0 {
		return
	}
	h.last[handle], h.has[handle] = smp, true
}

// due returns the heartbeats due at now and the time of the next one (zero
// when none can come: no tag has a value yet). up tells whether the PLC
// delivers; when not, heartbeats carry BadNoCommunication.
func (h *heartbeats) due(now time.Time, up bool) (collectors.Batch, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var batch collectors.Batch
	var next time.Time
	for i, every := range h.every {
		if every <= 0 || !h.has[i] {
			continue
		}
		at := h.sent[i].Add(every)
		if !at.After(now) {
			smp := h.last[i]
			smp.Heartbeat = true
			smp.ServerTime = now.UTC()
			if !up {
				smp.StatusCode = collectors.StatusCode(ua.StatusBadNoCommunication)
			}
			batch = append(batch, smp)
			h.sent[i] = now
			at = now.Add(every)
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return batch, next
}

// heartbeatIdle is how long the heartbeat loop waits when no tag has a
// value yet.
const heartbeatIdle = time.Second

// relay passes the session's batches on to out, noting each sample, and
// adds the heartbeats that fall due, from one goroutine so that a
// heartbeat never overtakes the change it would repeat. up tells whether
// the PLC delivers at the moment. The session sends to the returned
// channel; stop closes it and waits for the relay to end (at once when ctx
// has ended).
func (h *heartbeats) relay(ctx context.Context, out chan<- collectors.Batch, up func() bool) (in chan<- collectors.Batch, stop func()) {
	ch := make(chan collectors.Batch)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.run(ctx, ch, out, up)
	}()
	return ch, func() { close(ch); <-done }
}

func (h *heartbeats) run(ctx context.Context, in <-chan collectors.Batch, out chan<- collectors.Batch, up func() bool) {
	timer := time.NewTimer(heartbeatIdle)
	defer timer.Stop()
	for {
		var batch collectors.Batch
		select {
		case <-ctx.Done():
			return
		case b, ok := <-in:
			if !ok {
				return
			}
			now := time.Now()
			for _, smp := range b {
				h.noteTag(smp, now)
			}
			batch = b
		case <-timer.C:
			now := time.Now()
			var next time.Time
			batch, next = h.due(now, up())
			wait := heartbeatIdle
			if !next.IsZero() {
				wait = max(next.Sub(now), time.Millisecond)
			}
			timer.Reset(wait)
		}
		if len(batch) == 0 {
			continue
		}
		select {
		case out <- batch:
		case <-ctx.Done():
			return
		}
	}
}

// retag follows a reload's new tag table (retag.go): a kept tag keeps its
// last value and period start, a new handle starts without a value, and a
// removed one (removedTag) has no heartbeat any more.
func (h *heartbeats) retag(tags []tagRef) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(tags)
	h.every = append(h.every, make([]time.Duration, n-len(h.every))...)
	h.last = append(h.last, make([]collectors.Sample, n-len(h.last))...)
	h.has = append(h.has, make([]bool, n-len(h.has))...)
	h.sent = append(h.sent, make([]time.Time, n-len(h.sent))...)
	clear(h.handles)
	for i, t := range tags {
		if t.Tag == removedTag {
			h.every[i], h.has[i] = 0, false
			continue
		}
		h.every[i] = t.Heartbeat.Duration()
		h.handles[[2]string{t.plc, t.Name}] = uint32(i)
	}
}

// anyHeartbeat tells whether a tag of plcs has a heartbeat.
func anyHeartbeat(plcs []config.PLC) bool {
	for _, p := range plcs {
		for _, t := range p.Tags {
			if t.Heartbeat > 0 {
				return true
			}
		}
	}
	return false
}

// heartbeatsFor are the heartbeats of a session's tags (nil when none has
// one); the first PLC entry says what they repeat.
func heartbeatsFor(plc config.PLC, tags []tagRef) *heartbeats {
	every := make([]time.Duration, len(tags))
	for i, t := range tags {
		every[i] = t.Heartbeat.Duration()
	}
	return newHeartbeats(tags, every, plc.HeartbeatValue == config.HeartbeatLastGood)
}

// withHeartbeats puts the heartbeat relay between the session and out when
// a tag has a heartbeat; stop ends it once the session sends no more.
func (s *Session) withHeartbeats(ctx context.Context, out chan<- collectors.Batch) (chan<- collectors.Batch, func()) {
	if s.beats == nil {
		return out, func() {}
	}
	return s.beats.relay(ctx, out, s.streaming)
}

// streaming tells whether the PLC delivers values at the moment.
func (s *Session) streaming() bool {
	for _, p := range s.states.Snapshot() {
		if p.State == collectors.StateStreaming {
			return true
		}
	}
	return false
}
