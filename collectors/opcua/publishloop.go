package opcua

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
)

// The subscription layer is ours, not gopcua's: gopcua's publish loop
// acknowledges a notification when it arrives and cannot move to a new
// channel, so what the server queued during a cut would be lost. Ours
// acknowledges a sequence number only after its batch was handed on, and
// republishes any number it missed, so a session reactivated on a new
// channel (or whose subscriptions were transferred) loses no value.

const (
	// publishesInFlight is how many PublishRequests wait at the server, so
	// it always has one to answer with when a publishing interval ends.
	publishesInFlight = 3
	// maxRepublish bounds the notifications asked for again after one gap.
	maxRepublish = 100
	// minRecoveryWindow is the shortest time a lost channel is retried
	// before the session is given up.
	minRecoveryWindow = 10 * time.Second
	// minGapWait is the least time a gap in the sequence numbers is given
	// to fill by itself: servers answer concurrent PublishRequests in any
	// order (gopcua's and node-opcua's do), so a missing number may be on
	// its way in another answer.
	minGapWait = 500 * time.Millisecond
)

var (
	// errSubscriptionsGone reports that the server no longer holds the
	// subscriptions: they are recreated from the tag map.
	errSubscriptionsGone = errors.New("subscriptions gone")
	// errSessionGone reports that the server no longer knows the session.
	errSessionGone = errors.New("session gone")
)

// subState is one subscription the agent owns and where its notifications
// stand.
type subState struct {
	id       uint32
	interval time.Duration
	lifetime time.Duration // how long the server keeps it without PublishRequests
	lastSeq  uint32        // last sequence number handed on; 0 before the first

	// Notifications that arrived ahead of a missing number wait in early
	// until the gap fills or is given up (gapSince, gapAnswers).
	early      map[uint32]*ua.NotificationMessage
	sent       uint32    // highest number the server is known to have sent
	gapSince   time.Time // when a number after lastSeq was first missed
	gapAnswers int       // PublishResponses received since
	available  []uint32  // the server's retransmission queue, from its latest answer
}

// gapOpen tells whether numbers after lastSeq are missing.
func (sub *subState) gapOpen() bool { return sub.sent > sub.lastSeq }

// stream is the subscription layer of one OPC UA session; it outlives the
// channels the session moves across.
type stream struct {
	subs []*subState
	// acks are delivered notifications not yet acknowledged to the server.
	acks []*ua.SubscriptionAcknowledgement
	// reack asks the next response's available sequence numbers to be
	// checked for ones already delivered (acknowledgements lost in a cut).
	reack bool
	lost  bool // some notification could not be republished: a gap was logged
	got   int  // publish responses received, keep-alives included
	dog   *watchdog
}

func (st *stream) sub(id uint32) *subState {
	for _, s := range st.subs {
		if s.id == id {
			return s
		}
	}
	return nil
}

func (st *stream) byInterval(iv time.Duration) *subState {
	for _, s := range st.subs {
		if s.interval == iv {
			return s
		}
	}
	return nil
}

// window is how long a lost channel is worth recovering: the longest time
// the server keeps a subscription without PublishRequests.
func (st *stream) window() time.Duration {
	w := minRecoveryWindow
	for _, s := range st.subs {
		w = max(w, s.lifetime)
	}
	return w
}

func (st *stream) ack(subID, seq uint32) {
	st.acks = append(st.acks, &ua.SubscriptionAcknowledgement{SubscriptionID: subID, SequenceNumber: seq})
}

// publishResult is one PublishRequest's outcome and the acknowledgements it
// carried, which go out again when it failed.
type publishResult struct {
	res  *ua.PublishResponse
	err  error
	acks []*ua.SubscriptionAcknowledgement
}

// publisher keeps PublishRequests in flight on one client; answers arrive
// on results in whatever order the server sends them.
type publisher struct {
	c        *opcua.Client
	ctx      context.Context
	results  chan publishResult
	inflight int
	want     int
}

func (p *publisher) send(acks []*ua.SubscriptionAcknowledgement) {
	p.inflight++
	if acks == nil {
		acks = []*ua.SubscriptionAcknowledgement{}
	}
	go func() {
		var res *ua.PublishResponse
		err := p.c.Send(p.ctx, &ua.PublishRequest{SubscriptionAcknowledgements: acks}, func(v ua.Response) error {
			r, ok := v.(*ua.PublishResponse)
			if !ok {
				return fmt.Errorf("publish: got %T", v)
			}
			res = r
			return nil
		})
		p.results <- publishResult{res: res, err: err, acks: acks} // buffered for every request
	}()
}

// stream publishes on c until ctx ends (nil) or the channel, session or
// subscriptions fail.
func (s *Session) stream(ctx context.Context, c *opcua.Client, st *stream, out chan<- collectors.Batch) error {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &publisher{c: c, ctx: pctx, want: publishesInFlight, results: make(chan publishResult, publishesInFlight)}
	for range p.want {
		p.send(st.takeAcks())
	}
	health := time.NewTicker(healthInterval)
	defer health.Stop()
	if st.dog == nil {
		st.dog = s.newWatchdog()
	}
	dog := st.dog
	dog.activity() // a new channel starts the silence count afresh
	check := time.NewTicker(time.Second)
	defer check.Stop()
	gaps := time.NewTicker(minGapWait / 2)
	defer gaps.Stop()
	if err := s.watchChannel(c, true); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			s.drain(ctx, p, st, out, dog)
			return nil
		case r := <-p.results:
			p.inflight--
			// The next request goes out before this answer is handed on,
			// so the server is never left without one; its
			// acknowledgement rides on the request after.
			for p.inflight < p.want {
				p.send(st.takeAcks())
			}
			if err := s.published(ctx, c, st, r, out, dog, p); err != nil {
				return err
			}
		case <-gaps.C:
			if err := s.closeGaps(ctx, c, st, out, dog); err != nil {
				return err
			}
		case <-check.C:
			if err := dog.check(); err != nil {
				return err
			}
			if err := s.watchChannel(c, false); err != nil {
				return err
			}
		case <-health.C:
			if err := s.checkHealth(ctx, c); err != nil {
				return err
			}
			s.retryRejected(ctx, c, st)
		}
	}
}

func (st *stream) takeAcks() []*ua.SubscriptionAcknowledgement {
	a := st.acks
	st.acks = nil
	return a
}

// published handles one PublishRequest's outcome.
func (s *Session) published(ctx context.Context, c *opcua.Client, st *stream, r publishResult, out chan<- collectors.Batch, dog *watchdog, p *publisher) error {
	if r.err != nil {
		st.acks = append(r.acks, st.acks...) // they may not have arrived
		var code ua.StatusCode
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(r.err, &code) && code == ua.StatusBadTimeout:
			return nil // no answer in time; the watchdog judges silence
		case errors.As(r.err, &code) && code == ua.StatusBadTooManyPublishRequests:
			p.want = max(1, p.inflight)
			return nil
		case errors.As(r.err, &code) && code == ua.StatusBadNoSubscription:
			return errSubscriptionsGone
		case errors.As(r.err, &code) && isSessionLost(code):
			return fmt.Errorf("publish: %w: %w", errSessionGone, r.err)
		case errors.Is(r.err, io.EOF):
			return fmt.Errorf("publish: %w: connection closed", errChannelLost)
		default:
			return fmt.Errorf("publish: %w", r.err)
		}
	}
	res := r.res
	if res == nil || res.NotificationMessage == nil {
		return nil
	}
	dog.activity()
	st.got++
	for i, code := range res.Results {
		if code == ua.StatusBadSubscriptionIDInvalid && i < len(r.acks) && st.sub(r.acks[i].SubscriptionID) != nil {
			return errSubscriptionsGone
		}
	}
	for _, sub := range st.subs {
		if sub.gapOpen() {
			sub.gapAnswers++
		}
	}
	sub := st.sub(res.SubscriptionID)
	if sub == nil {
		return nil // not ours (e.g. left over from before a recreate)
	}
	sub.available = res.AvailableSequenceNumbers
	msg := res.NotificationMessage
	if st.reack {
		st.reack = false
		for _, seq := range res.AvailableSequenceNumbers {
			if seq <= sub.lastSeq && seq != msg.SequenceNumber {
				st.ack(sub.id, seq)
			}
		}
	}
	// A keep-alive carries the number the next notification will have.
	if len(msg.NotificationData) == 0 {
		if msg.SequenceNumber > 0 {
			s.noteSent(sub, msg.SequenceNumber-1)
		}
		return s.closeGaps(ctx, c, st, out, dog)
	}
	switch seq := msg.SequenceNumber; {
	case seq <= sub.lastSeq || sub.early[seq] != nil:
		st.ack(sub.id, seq) // already delivered (republished, or sent twice)
		return nil
	case seq == sub.lastSeq+1:
		if err := s.deliver(ctx, st, sub, msg, out, dog); err != nil {
			return err
		}
		s.noteSent(sub, seq)
		return s.deliverEarly(ctx, st, sub, out, dog)
	default: // ahead of a missing number: wait for it a little
		if sub.early == nil {
			sub.early = map[uint32]*ua.NotificationMessage{}
		}
		sub.early[seq] = msg
		s.noteSent(sub, seq)
		return s.closeGaps(ctx, c, st, out, dog)
	}
}

// noteSent records that the server has sent numbers up to seq; a number
// after lastSeq that is not here yet opens a gap.
func (s *Session) noteSent(sub *subState, seq uint32) {
	if seq <= sub.sent {
		return
	}
	if !sub.gapOpen() && seq > sub.lastSeq {
		sub.gapSince, sub.gapAnswers = time.Now(), 0
	}
	sub.sent = seq
}

// deliverEarly hands on the waiting notifications that now follow lastSeq.
func (s *Session) deliverEarly(ctx context.Context, st *stream, sub *subState, out chan<- collectors.Batch, dog *watchdog) error {
	for {
		msg := sub.early[sub.lastSeq+1]
		if msg == nil {
			return nil
		}
		delete(sub.early, msg.SequenceNumber)
		if err := s.deliver(ctx, st, sub, msg, out, dog); err != nil {
			return err
		}
	}
}

// closeGaps gives up waiting for missing numbers once every request that
// could carry them has been answered, or after a while: it republishes the
// ones the server still holds, logs the others as lost, and hands on what
// waited behind them.
func (s *Session) closeGaps(ctx context.Context, c *opcua.Client, st *stream, out chan<- collectors.Batch, dog *watchdog) error {
	for _, sub := range st.subs {
		if !sub.gapOpen() {
			continue
		}
		wait := max(minGapWait, 2*sub.interval)
		if sub.gapAnswers <= publishesInFlight && time.Since(sub.gapSince) < wait {
			continue
		}
		if err := s.republish(ctx, c, st, sub, out, dog); err != nil {
			return err
		}
	}
	return nil
}

// republish asks again for the missing notifications after sub.lastSeq,
// in order, handing on each one and those that waited behind it.
func (s *Session) republish(ctx context.Context, c *opcua.Client, st *stream, sub *subState, out chan<- collectors.Batch, dog *watchdog) error {
	if sub.sent-sub.lastSeq > maxRepublish {
		for seq := sub.lastSeq + 1; seq <= sub.sent-maxRepublish; seq++ {
			s.skip(st, sub, seq, ua.StatusBadMessageNotAvailable)
		}
	}
	for sub.lastSeq < sub.sent {
		seq := sub.lastSeq + 1
		if msg := sub.early[seq]; msg != nil {
			delete(sub.early, seq)
			if err := s.deliver(ctx, st, sub, msg, out, dog); err != nil {
				return err
			}
			continue
		}
		if c == nil || !slices.Contains(sub.available, seq) {
			s.skip(st, sub, seq, ua.StatusBadMessageNotAvailable)
			continue
		}
		var res *ua.RepublishResponse
		err := c.Send(ctx, &ua.RepublishRequest{SubscriptionID: sub.id, RetransmitSequenceNumber: seq}, func(v ua.Response) error {
			r, ok := v.(*ua.RepublishResponse)
			if !ok {
				return fmt.Errorf("republish: got %T", v)
			}
			res = r
			return nil
		})
		var code ua.StatusCode
		if errors.As(err, &code) && (code == ua.StatusBadMessageNotAvailable || code == ua.StatusBadSequenceNumberUnknown ||
			code == ua.StatusBadServiceUnsupported) {
			s.skip(st, sub, seq, code)
			continue
		}
		if err != nil {
			return fmt.Errorf("republish %d of subscription %d: %w", seq, sub.id, err)
		}
		if res.NotificationMessage == nil || len(res.NotificationMessage.NotificationData) == 0 {
			s.skip(st, sub, seq, ua.StatusGood)
			continue
		}
		res.NotificationMessage.SequenceNumber = seq
		if err := s.deliver(ctx, st, sub, res.NotificationMessage, out, dog); err != nil {
			return err
		}
	}
	return nil
}

// skip moves past a number that cannot be had; a bad code means values
// are lost and is logged.
func (s *Session) skip(st *stream, sub *subState, seq uint32, code ua.StatusCode) {
	delete(sub.early, seq)
	if seq > sub.lastSeq {
		sub.lastSeq = seq
	}
	if code != ua.StatusGood {
		s.noteLost(st, sub, seq, code)
	}
}

// noteLost logs a notification that is gone for good: data loss, logged
// once per stream and then at debug level.
func (s *Session) noteLost(st *stream, sub *subState, seq uint32, code ua.StatusCode) {
	ev := s.log.Debug()
	if !st.lost {
		st.lost = true
		ev = s.log.Error()
	}
	ev.Uint32("subscription", sub.id).Uint32("sequence", seq).Str("status", statusName(code)).
		Msg("notification lost: the server no longer holds it; values are missing")
}

// deliver hands one notification message on and then acknowledges it.
func (s *Session) deliver(ctx context.Context, st *stream, sub *subState, msg *ua.NotificationMessage, out chan<- collectors.Batch, dog *watchdog) error {
	for _, eo := range msg.NotificationData {
		if eo == nil {
			continue
		}
		if err := s.handle(ctx, sub.id, eo.Value, out, dog); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil // not handed on: leave it unacknowledged
	}
	sub.lastSeq = max(sub.lastSeq, msg.SequenceNumber)
	st.ack(sub.id, msg.SequenceNumber)
	return nil
}

// drain hands on what already arrived before the session closes, so a
// shutdown loses nothing that was received: answers already in, then what
// waited behind a gap, in order.
func (s *Session) drain(ctx context.Context, p *publisher, st *stream, out chan<- collectors.Batch, dog *watchdog) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	for done := false; !done; {
		select {
		case r := <-p.results:
			if r.err != nil || r.res == nil || r.res.NotificationMessage == nil || len(r.res.NotificationMessage.NotificationData) == 0 {
				continue
			}
			if sub := st.sub(r.res.SubscriptionID); sub != nil && r.res.NotificationMessage.SequenceNumber > sub.lastSeq {
				if sub.early == nil {
					sub.early = map[uint32]*ua.NotificationMessage{}
				}
				sub.early[r.res.NotificationMessage.SequenceNumber] = r.res.NotificationMessage
				sub.sent = max(sub.sent, r.res.NotificationMessage.SequenceNumber)
			}
		default:
			done = true
		}
	}
	for _, sub := range st.subs {
		seqs := slices.Sorted(maps.Keys(sub.early))
		for _, seq := range seqs {
			if err := s.deliver(dctx, st, sub, sub.early[seq], out, dog); err != nil {
				return
			}
		}
		sub.early = nil
	}
}

// isSessionLost tells status codes that mean the server dropped the session.
func isSessionLost(c ua.StatusCode) bool {
	switch c {
	case ua.StatusBadSessionIDInvalid, ua.StatusBadSessionClosed, ua.StatusBadSessionNotActivated:
		return true
	}
	return false
}

// subscribe creates one subscription per publishing interval and its
// monitored items in batches the server accepts, into st.
func (s *Session) subscribe(ctx context.Context, c *opcua.Client, st *stream) error {
	perCall := s.itemsPerCall(ctx, c)
	s.learnStructures(ctx, c)
	groups := map[time.Duration][]uint32{}
	for i, t := range s.tags {
		iv := t.PublishingInterval.Duration()
		groups[iv] = append(groups[iv], uint32(i))
	}
	intervals := make([]time.Duration, 0, len(groups))
	for iv := range groups {
		intervals = append(intervals, iv)
	}
	slices.Sort(intervals)

	st.subs, st.acks, st.reack = nil, nil, false
	for i, iv := range intervals {
		sub, err := createSubscription(ctx, c, iv)
		if err != nil {
			return fmt.Errorf("create subscription (publishing interval %v): %w", iv, err)
		}
		st.subs = append(st.subs, sub)
		if err := s.monitor(ctx, c, sub.id, groups[iv], perCall); err != nil {
			return err
		}
		s.monitorHeartbeat(ctx, c, sub.id, uint32(heartbeatHandle+i))
	}
	return nil
}

func createSubscription(ctx context.Context, c *opcua.Client, interval time.Duration) (*subState, error) {
	keepAlive := uint32(max(1, keepAliveEvery/max(interval, time.Millisecond)))
	req := &ua.CreateSubscriptionRequest{
		RequestedPublishingInterval: float64(interval) / float64(time.Millisecond),
		RequestedMaxKeepAliveCount:  keepAlive,
		// The server keeps the subscription this many keep-alives without
		// PublishRequests: the time a cut may last without losing it.
		RequestedLifetimeCount: keepAlive * 12,
		PublishingEnabled:      true,
	}
	var res *ua.CreateSubscriptionResponse
	err := c.Send(ctx, req, func(v ua.Response) error {
		r, ok := v.(*ua.CreateSubscriptionResponse)
		if !ok {
			return fmt.Errorf("got %T", v)
		}
		res = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res.SubscriptionID == 0 {
		return nil, ua.StatusBadSubscriptionIDInvalid
	}
	revised := time.Duration(res.RevisedPublishingInterval * float64(time.Millisecond))
	return &subState{
		id:       res.SubscriptionID,
		interval: interval,
		lifetime: revised * time.Duration(res.RevisedLifetimeCount),
	}, nil
}

// createItems sends one CreateMonitoredItems request.
func createItems(ctx context.Context, c *opcua.Client, subID uint32, reqs []*ua.MonitoredItemCreateRequest) (*ua.CreateMonitoredItemsResponse, error) {
	var res *ua.CreateMonitoredItemsResponse
	err := c.Send(ctx, &ua.CreateMonitoredItemsRequest{
		SubscriptionID:     subID,
		TimestampsToReturn: ua.TimestampsToReturnBoth,
		ItemsToCreate:      reqs,
	}, func(v ua.Response) error {
		r, ok := v.(*ua.CreateMonitoredItemsResponse)
		if !ok {
			return fmt.Errorf("got %T", v)
		}
		res = r
		return nil
	})
	return res, err
}

// monitorHeartbeat adds the server's CurrentTime to a subscription; a server
// that refuses it only loses the watchdog.
func (s *Session) monitorHeartbeat(ctx context.Context, c *opcua.Client, subID, handle uint32) {
	req := opcua.NewMonitoredItemCreateRequestWithDefaults(
		ua.NewNumericNodeID(0, id.Server_ServerStatus_CurrentTime), ua.AttributeIDValue, handle)
	req.RequestedParameters.SamplingInterval = float64(heartbeatEvery / time.Millisecond)
	req.RequestedParameters.QueueSize = 1
	res, err := createItems(ctx, c, subID, []*ua.MonitoredItemCreateRequest{req})
	if err == nil && len(res.Results) == 1 && res.Results[0].StatusCode != ua.StatusOK {
		err = res.Results[0].StatusCode
	}
	if err != nil {
		s.log.Debug().Err(err).Msg("server refused the heartbeat item; the watchdog stays off")
	}
}

// transfer moves the subscriptions of a session the server lost to the new
// session on c; notifications not yet acknowledged are then republished by
// the gap check. It fails unless every subscription moved.
func (s *Session) transfer(ctx context.Context, c *opcua.Client, st *stream) error {
	ids := make([]uint32, len(st.subs))
	for i, sub := range st.subs {
		ids[i] = sub.id
	}
	var res *ua.TransferSubscriptionsResponse
	err := c.Send(ctx, &ua.TransferSubscriptionsRequest{SubscriptionIDs: ids, SendInitialValues: false}, func(v ua.Response) error {
		r, ok := v.(*ua.TransferSubscriptionsResponse)
		if !ok {
			return fmt.Errorf("got %T", v)
		}
		res = r
		return nil
	})
	if err != nil {
		return fmt.Errorf("transfer subscriptions: %w", err)
	}
	if len(res.Results) != len(ids) {
		return fmt.Errorf("transfer subscriptions: %d results for %d subscriptions", len(res.Results), len(ids))
	}
	var failed error
	var moved []uint32
	for i, r := range res.Results {
		if r.StatusCode != ua.StatusOK {
			failed = fmt.Errorf("transfer subscription %d: %w", ids[i], r.StatusCode)
			continue
		}
		moved = append(moved, ids[i])
	}
	if failed != nil {
		if len(moved) > 0 { // all or nothing: the rest is recreated
			_ = c.Send(ctx, &ua.DeleteSubscriptionsRequest{SubscriptionIDs: moved}, func(ua.Response) error { return nil })
		}
		return failed
	}
	st.reack = true
	return nil
}
