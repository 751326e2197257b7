package subscription

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors/opcua/uafast"
	"github.com/tagbridge/tagbridge/collectors/opcua/uastatus"
)

// published handles one PublishRequest's outcome.
func (e *Engine) published(ctx context.Context, snd Sender, r publishResult) error {
	if r.err != nil {
		e.acks = append(r.acks, e.acks...) // they may not have arrived
		code, isCode := statusOf(r.err)
		switch {
		case ctx.Err() != nil:
			return nil
		case isCode && (code == ua.StatusBadTimeout || code == ua.StatusBadTooManyPublishRequests):
			return nil // no answer in time: silence is judged by Run
		case isCode && code == ua.StatusBadNoSubscription:
			return fmt.Errorf("publish: %w: %w", ErrGone, r.err)
		case isCode && isSessionLost(code):
			return fmt.Errorf("publish: %w: %w", ErrSessionGone, r.err)
		default:
			return fmt.Errorf("publish: %w", r.err)
		}
	}
	res := r.res
	if res == nil || res.NotificationMessage == nil {
		return nil
	}
	e.received++
	if e.cfg.Alive != nil {
		e.cfg.Alive()
	}
	for i, code := range res.Results {
		if code == ua.StatusBadSubscriptionIDInvalid && i < len(r.acks) && e.sub(r.acks[i].SubscriptionID) != nil {
			return fmt.Errorf("acknowledge to subscription %d: %w: %w", r.acks[i].SubscriptionID, ErrGone, code)
		}
	}
	for _, s := range e.subs {
		if s.gapOpen() {
			s.gapAnswers++
		}
	}
	s := e.sub(res.SubscriptionID)
	if s == nil {
		return nil // not ours (e.g. left over from before a recreate)
	}
	s.available = res.AvailableSequenceNumbers
	msg := res.NotificationMessage
	if s.reack {
		s.reack = false
		for _, seq := range s.available {
			if seq <= s.lastSeq && seq != msg.SequenceNumber {
				e.ack(s.id, seq)
			}
		}
	}
	// A keep-alive carries the number the next notification will have.
	if len(msg.NotificationData) == 0 {
		if msg.SequenceNumber > 0 {
			e.noteSent(s, msg.SequenceNumber-1)
		}
		return e.closeGaps(ctx, snd)
	}
	seq := msg.SequenceNumber
	if seq < s.lastSeq && s.lastSeq-seq > resyncDistance {
		if err := e.resync(ctx, s, seq); err != nil || ctx.Err() != nil {
			return err
		}
	}
	switch {
	case seq <= s.lastSeq || s.early[seq] != nil:
		e.ack(s.id, seq) // already handed on (republished, or sent twice)
		return nil
	case seq == s.lastSeq+1:
		if err := e.deliver(ctx, s, msg); err != nil || ctx.Err() != nil {
			return err
		}
		e.noteSent(s, seq)
		return e.deliverEarly(ctx, s)
	default: // ahead of a missing number: wait for it a little
		if s.early == nil {
			s.early = map[uint32]*ua.NotificationMessage{}
		}
		s.early[seq] = msg
		e.noteSent(s, seq)
		return e.closeGaps(ctx, snd)
	}
}

// noteSent records that the server has sent numbers up to seq; a number
// after lastSeq that is not here yet opens a gap.
func (e *Engine) noteSent(s *sub, seq uint32) {
	if seq <= s.sent {
		return
	}
	if !s.gapOpen() && seq > s.lastSeq {
		s.gapSince, s.gapAnswers = time.Now(), 0
	}
	s.sent = seq
}

// resync follows a server whose numbering restarted far behind the last
// number handed on: what waited behind a gap is handed on first, then
// numbering continues from seq.
func (e *Engine) resync(ctx context.Context, s *sub, seq uint32) error {
	ev := e.cfg.Log.Debug()
	if !e.resynced {
		e.resynced = true
		ev = e.cfg.Log.Warn()
	}
	ev.Uint32("subscription", s.id).Uint32("sequence", seq).Uint32("last_sequence", s.lastSeq).
		Msg("the server restarted the sequence numbers of a subscription; following it")
	for _, n := range slices.Sorted(maps.Keys(s.early)) {
		if err := e.deliver(ctx, s, s.early[n]); err != nil || ctx.Err() != nil {
			return err
		}
		delete(s.early, n)
	}
	s.early = nil
	s.lastSeq, s.sent = seq-1, seq-1
	return nil
}

// deliverEarly hands on the waiting notifications that now follow lastSeq.
func (e *Engine) deliverEarly(ctx context.Context, s *sub) error {
	for {
		msg := s.early[s.lastSeq+1]
		if msg == nil {
			return nil
		}
		if err := e.deliver(ctx, s, msg); err != nil || ctx.Err() != nil {
			return err
		}
		delete(s.early, msg.SequenceNumber)
	}
}

// closeGaps gives up waiting for missing numbers once every request that
// could carry them has been answered, or after a while (minGapWait, or two
// publishing intervals): fill then republishes what the server still holds.
func (e *Engine) closeGaps(ctx context.Context, snd Sender) error {
	for _, s := range e.subs {
		if !s.gapOpen() {
			continue
		}
		wait := max(minGapWait, 2*s.interval)
		if s.gapAnswers <= e.want && time.Since(s.gapSince) < wait {
			continue
		}
		if err := e.fill(ctx, snd, s); err != nil {
			return err
		}
	}
	return nil
}

// fill closes the gap after s.lastSeq: in order, it hands on what waited
// behind it and asks again for the numbers the server still holds (the
// newest maxRepublish of them); every other number is lost, counted and
// logged once as ranges. Its work is bounded by what the server sent, never
// by the width of the gap.
func (e *Engine) fill(ctx context.Context, snd Sender, s *sub) error {
	var fetch []uint32
	for _, n := range s.available {
		if n > s.lastSeq && n <= s.sent && s.early[n] == nil {
			fetch = append(fetch, n)
		}
	}
	slices.Sort(fetch)
	fetch = slices.Compact(fetch)
	fetch = fetch[max(0, len(fetch)-maxRepublish):]
	order := append(slices.Collect(maps.Keys(s.early)), fetch...)
	slices.Sort(order)

	var lost lostRanges
	defer func() { e.reportLost(s, &lost) }()
	for _, n := range order {
		if n <= s.lastSeq { // handed on already while this gap was open
			delete(s.early, n)
			continue
		}
		if n > s.lastSeq+1 {
			lost.add(s.lastSeq+1, n-1, 0)
			s.lastSeq = n - 1
		}
		if msg := s.early[n]; msg != nil {
			if err := e.deliver(ctx, s, msg); err != nil || ctx.Err() != nil {
				return err
			}
			delete(s.early, n)
			continue
		}
		res, err := snd.Send(ctx, &ua.RepublishRequest{SubscriptionID: s.id, RetransmitSequenceNumber: n})
		if code, ok := statusOf(err); ok && (code == ua.StatusBadMessageNotAvailable ||
			code == ua.StatusBadSequenceNumberUnknown || code == ua.StatusBadServiceUnsupported) {
			lost.add(n, n, code)
			s.lastSeq = n
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("republish %d of subscription %d: %w", n, s.id, err)
		}
		r, ok := res.(*ua.RepublishResponse)
		if !ok {
			return fmt.Errorf("republish %d of subscription %d: got %T", n, s.id, res)
		}
		if r.NotificationMessage == nil || len(r.NotificationMessage.NotificationData) == 0 {
			s.lastSeq = n // nothing in it: nothing lost
			continue
		}
		r.NotificationMessage.SequenceNumber = n
		if err := e.deliver(ctx, s, r.NotificationMessage); err != nil || ctx.Err() != nil {
			return err
		}
	}
	if s.sent > s.lastSeq {
		lost.add(s.lastSeq+1, s.sent, 0)
		s.lastSeq = s.sent
	}
	return nil
}

// lostRanges collects the numbers one gap lost, to be logged once.
type lostRanges struct {
	first, last uint32
	count       uint64
	ranges      int
	code        ua.StatusCode // the server's latest refusal, if any
}

func (l *lostRanges) add(from, to uint32, code ua.StatusCode) {
	if l.ranges == 0 {
		l.first = from
	}
	l.last = to
	l.count += uint64(to-from) + 1
	l.ranges++
	if code != 0 {
		l.code = code
	}
}

// reportLost counts and logs what one gap lost: data loss, at Error the
// first time for this engine and at Debug after that.
func (e *Engine) reportLost(s *sub, l *lostRanges) {
	if l.count == 0 {
		return
	}
	e.lost += l.count
	ev := e.cfg.Log.Debug()
	if !e.lostLogged {
		e.lostLogged = true
		ev = e.cfg.Log.Error()
	}
	if l.code != 0 {
		ev = ev.Str("status", uastatus.Name(l.code))
	}
	ev.Uint32("subscription", s.id).Uint32("first", l.first).Uint32("last", l.last).
		Uint64("notifications", l.count).Int("ranges", l.ranges).
		Msg("notifications lost: the server no longer holds them; values are missing")
}

// deliver hands one notification message on and then acknowledges it;
// when ctx ends first it stays unacknowledged and lastSeq where it was.
func (e *Engine) deliver(ctx context.Context, s *sub, msg *ua.NotificationMessage) error {
	for _, eo := range msg.NotificationData {
		if eo == nil {
			continue
		}
		switch n := eo.Value.(type) {
		case *uafast.DataChange:
			if e.cfg.DeliverItems != nil {
				e.cfg.DeliverItems(ctx, n)
				if ctx.Err() == nil {
					n.Release() // handed on and about to be acknowledged: never delivered again
				}
				continue
			}
			dn, err := n.Notification()
			if err != nil {
				return fmt.Errorf("subscription %d: notification %d: %w", s.id, msg.SequenceNumber, err)
			}
			e.cfg.Deliver(ctx, dn)
		case *ua.DataChangeNotification:
			e.cfg.Deliver(ctx, n)
		case *ua.EventNotificationList:
			if e.cfg.DeliverEvents != nil {
				e.cfg.DeliverEvents(ctx, n)
			}
		case *ua.StatusChangeNotification:
			if n.Status == ua.StatusBadTimeout {
				return fmt.Errorf("subscription %d expired: %w", s.id, ErrGone)
			}
			return fmt.Errorf("subscription %d: status changed to %s", s.id, uastatus.Name(n.Status))
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	s.lastSeq = max(s.lastSeq, msg.SequenceNumber)
	e.ack(s.id, msg.SequenceNumber)
	return nil
}

// drain hands on what already arrived before the stream stops, so a
// shutdown loses nothing that was received: answers already in, then what
// waited behind a gap, in order.
func (e *Engine) drain(ctx context.Context, p *publishRequester) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
	defer cancel()
	for done := false; !done; {
		select {
		case r := <-p.results:
			if r.err != nil || r.res == nil || r.res.NotificationMessage == nil || len(r.res.NotificationMessage.NotificationData) == 0 {
				continue
			}
			msg := r.res.NotificationMessage
			if s := e.sub(r.res.SubscriptionID); s != nil && msg.SequenceNumber > s.lastSeq {
				if s.early == nil {
					s.early = map[uint32]*ua.NotificationMessage{}
				}
				s.early[msg.SequenceNumber] = msg
				s.sent = max(s.sent, msg.SequenceNumber)
			}
		default:
			done = true
		}
	}
	for _, s := range e.subs {
		for _, seq := range slices.Sorted(maps.Keys(s.early)) {
			if err := e.deliver(dctx, s, s.early[seq]); err != nil || dctx.Err() != nil {
				return
			}
			delete(s.early, seq)
		}
	}
}
