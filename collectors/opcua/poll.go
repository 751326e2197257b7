package opcua

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
)

// Polling: tags (or whole PLCs) with mode: poll are read cyclically, every
// poll_interval, for servers and nodes that cannot be subscribed (some
// gateways, very old servers). Reads are batched to the server's
// MaxNodesPerRead; a value is handed on when its value or status changed,
// as a subscription's data change filter does, so the payloads are the
// same. A PLC whose tags are all polled has no subscription: the polls and
// the health check run on the session's goroutine; otherwise the polls run
// beside the subscriptions on a goroutine of their own.

// pollCheckEvery is how often a session without subscriptions runs its
// health check, as the subscription engine does.
const pollCheckEvery = time.Second

// poller reads the polled tags of one session.
type poller struct {
	s      *Session
	groups []*pollGroup
	last   map[uint32]pollValue // by handle: what was handed on last
	// unresolved are the tags whose nsu= namespace the server lacks, logged once.
	unresolved map[uint32]bool
	reads      atomic.Int64 // successful reads, for the session's progress
}

// pollGroup is the tags of one poll interval.
type pollGroup struct {
	every   time.Duration
	handles []uint32
	next    time.Time
}

// pollValue is what decides whether a read value is a change.
type pollValue struct {
	status ua.StatusCode
	value  any
}

// polledHandles are the tags read by polling.
func (s *Session) polledHandles() []uint32 {
	var hs []uint32
	for h := range s.tags {
		if s.tags[h].Polled() {
			hs = append(hs, uint32(h))
		}
	}
	return hs
}

// newPoller groups the polled tags by interval; nil when there are none.
func (s *Session) newPoller() *poller {
	byEvery := map[time.Duration][]uint32{}
	for _, h := range s.polledHandles() {
		every := s.tags[h].PollInterval.Duration()
		byEvery[every] = append(byEvery[every], h)
	}
	if len(byEvery) == 0 {
		return nil
	}
	p := &poller{s: s, last: map[uint32]pollValue{}, unresolved: map[uint32]bool{}}
	now := time.Now()
	for every, hs := range byEvery {
		p.groups = append(p.groups, &pollGroup{every: every, handles: hs, next: now})
	}
	slices.SortFunc(p.groups, func(a, b *pollGroup) int { return int(a.every - b.every) })
	return p
}

// next is when the next group is due.
func (p *poller) next() time.Time {
	n := p.groups[0].next
	for _, g := range p.groups[1:] {
		if g.next.Before(n) {
			n = g.next
		}
	}
	return n
}

// pollDue reads every group that is due and hands its changes on. A read
// that fails for the session or channel ends polling with the error;
// nodes the server refuses are handed on with their status, as a
// subscription reports them.
func (p *poller) pollDue(ctx context.Context, c *uaclient.Client, out chan<- collectors.Batch) error {
	now := time.Now()
	for _, g := range p.groups {
		if g.next.After(now) {
			continue
		}
		// The next read is one interval on; reads that fell behind are
		// skipped, not made up in a burst.
		g.next = g.next.Add(g.every)
		if g.next.Before(now) {
			g.next = now.Add(g.every)
		}
		if err := p.read(ctx, c, out, g.handles); err != nil {
			return err
		}
	}
	return nil
}

// read reads the handles in batches of the server's MaxNodesPerRead.
func (p *poller) read(ctx context.Context, c *uaclient.Client, out chan<- collectors.Batch, handles []uint32) error {
	s := p.s
	for part := range slices.Chunk(handles, s.limits.perRead()) {
		nodes := make([]*ua.ReadValueID, 0, len(part))
		hs := make([]uint32, 0, len(part))
		for _, h := range part {
			id, err := resolveNodeID(s.tags[h].Node, c.Namespaces())
			if err != nil {
				// Logged here, once: the session's rejection list belongs
				// to its own goroutine, and polls may run beside it.
				if !p.unresolved[h] {
					p.unresolved[h] = true
					s.tagLog(h).Warn().Err(err).Msg("polled tag not resolved; retried at every poll")
				}
				continue
			}
			delete(p.unresolved, h)
			nodes = append(nodes, &ua.ReadValueID{NodeID: id, AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}})
			hs = append(hs, h)
		}
		if len(nodes) == 0 {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		res, err := call[*ua.ReadResponse](rctx, c, &ua.ReadRequest{NodesToRead: nodes, TimestampsToReturn: ua.TimestampsToReturnBoth})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("poll %d tags: %w", len(nodes), err)
		}
		if len(res.Results) != len(nodes) {
			return fmt.Errorf("poll %d tags: server returned %d results", len(nodes), len(res.Results))
		}
		p.reads.Add(1)
		batch := make(collectors.Batch, 0, len(nodes))
		for i, dv := range res.Results {
			h := hs[i]
			if dv == nil {
				continue
			}
			v := pollValue{status: dv.Status}
			if dv.Value != nil {
				v.value = dv.Value.Value()
			}
			if last, seen := p.last[h]; seen && last.status == v.status && reflect.DeepEqual(last.value, v.value) {
				continue // unchanged: a subscription would not report it either
			}
			p.last[h] = v
			tag := s.tags[h]
			smp := sampleFrom(tag.plc, tag.Name, tag.Node.String(), dv)
			if !smp.HasValue() && int(h) < len(s.declared) && s.declared[h] != collectors.TypeNull {
				smp.Type = s.declared[h]
			}
			batch = append(batch, smp)
		}
		if len(batch) == 0 {
			continue
		}
		s.states.Collected(batch)
		select {
		case out <- batch:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// pollOnly polls on the session's goroutine with the health check every
// second, until ctx ends (nil) or a read or the check fails.
func (p *poller) pollOnly(ctx context.Context, c *uaclient.Client, out chan<- collectors.Batch, check func(context.Context) error, alive func()) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	checks := time.NewTicker(pollCheckEvery)
	defer checks.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			before := p.reads.Load()
			if err := p.pollDue(ctx, c, out); err != nil {
				return err
			}
			if p.reads.Load() > before {
				alive()
			}
			timer.Reset(time.Until(p.next()))
		case <-checks.C:
			if err := check(ctx); err != nil {
				return err
			}
		}
	}
}

// pollBeside polls on its own goroutine beside the subscriptions; its
// error (or nil when ctx ends) arrives on the returned channel.
func (p *poller) pollBeside(ctx context.Context, c *uaclient.Client, out chan<- collectors.Batch) <-chan error {
	done := make(chan error, 1)
	go func() {
		timer := time.NewTimer(0)
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				done <- nil
				return
			case <-timer.C:
				if err := p.pollDue(ctx, c, out); err != nil {
					done <- err
					return
				}
				timer.Reset(time.Until(p.next()))
			}
		}
	}()
	return done
}

// runStream streams the subscriptions and polls the polled tags until ctx
// ends (nil) or either fails.
func (s *Session) runStream(ctx context.Context, c *uaclient.Client, st *feed, check func(context.Context) error) error {
	if st.poll == nil {
		return st.Run(ctx, c, check)
	}
	if st.Len() == 0 {
		return st.poll.pollOnly(ctx, c, st.out, check, func() { s.pollAlive(st) })
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := st.poll.pollBeside(pctx, c, st.out)
	var pollErr error
	polling := true
	err := st.Run(ctx, c, func(ctx context.Context) error {
		select {
		case pollErr = <-done:
			polling = false
			if pollErr != nil {
				return pollErr
			}
		default:
		}
		return check(ctx)
	})
	cancel()
	if polling {
		<-done
	}
	return err
}

// pollAlive is the subscription engine's Alive for a session that only
// polls: values came, so the session streams.
func (s *Session) pollAlive(st *feed) {
	st.dog.activity()
	if st.awaiting {
		st.awaiting = false
		s.states.SetState(collectors.StateStreaming, "")
		s.log.Info().Str("state", collectors.StateStreaming).Msg("plc values flow (polled)")
	}
}

// progress counts what the session received: PublishResponses and polls.
func (st *feed) progress() int {
	n := st.Received()
	if st.poll != nil {
		n += int(st.poll.reads.Load())
	}
	return n
}
