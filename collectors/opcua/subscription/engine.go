// Package subscription keeps the subscriptions of one OPC UA session
// streaming: it keeps PublishRequests in flight, hands notifications on in
// sequence order, acknowledges a notification only after it was handed on,
// and republishes what a gap or a cut of the channel lost, so a session
// reactivated on a new channel (or whose subscriptions were transferred to
// a new session) loses no value the server still holds.
//
// It talks to the server only through a Sender, so it neither knows nor
// cares which client stack carries its requests.
package subscription

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors/opcua/uafast"
)

// Sender sends one service request on the session and returns its
// response. A ServiceFault or a Bad ServiceResult is an error that
// errors.As finds as a ua.StatusCode.
type Sender interface {
	Send(ctx context.Context, req ua.Request) (ua.Response, error)
}

const (
	// publishesInFlight is the least number of PublishRequests waiting at
	// the server, so it always has one to answer with when a publishing
	// interval ends; one more per subscription above two, up to
	// maxPublishesInFlight, as each answer carries one subscription's data.
	publishesInFlight    = 3
	maxPublishesInFlight = 10
	// maxRepublish bounds the notifications asked for again after one gap.
	maxRepublish = 100
	// minGapWait is the least time a gap in the sequence numbers is given
	// to fill by itself: servers answer concurrent PublishRequests in any
	// order (gopcua's and node-opcua's do), so a missing number may be on
	// its way in another answer.
	minGapWait = 500 * time.Millisecond
	// resyncDistance: a number this far behind the last one handed on is
	// no resend (servers resend from a retransmission queue far shorter)
	// but a server that restarted its numbering, or wrapped around.
	resyncDistance = 1 << 16
	// keepAliveEvery is the target time between keep-alives of an idle
	// subscription; well inside the request timeout of a PublishRequest.
	keepAliveEvery = 5 * time.Second
	// lifetimeKeepAlives is how many keep-alive periods the server keeps a
	// subscription without PublishRequests: the time a cut may last.
	lifetimeKeepAlives = 12
	// minSilence is the least time without any PublishResponse (data or
	// keep-alive) after which the stream is judged dead; the limit is at
	// least three keep-alive periods of the slowest subscription.
	minSilence = 15 * time.Second
	// maxRevised bounds the durations a server revises, so a server
	// granting absurd lifetimes cannot hold a recovery up for days.
	maxRevised = time.Hour
	// checkEvery is how often Run calls the session's check.
	checkEvery = time.Second
	// drainTimeout bounds handing on what arrived once the stream stops.
	drainTimeout = 2 * time.Second
)

var (
	// ErrGone reports that the server no longer holds the subscriptions
	// (or one of them): they are to be created anew.
	ErrGone = errors.New("subscriptions gone")
	// ErrSessionGone reports that the server no longer knows the session.
	ErrSessionGone = errors.New("session gone")
	// ErrSilent reports that the server answered no PublishRequest, not
	// even with a keep-alive, for several keep-alive periods.
	ErrSilent = errors.New("no publish response")
)

// Config is what an Engine hands its results to.
type Config struct {
	Log zerolog.Logger
	// PublishRequests is how many PublishRequests Run starts with (up to
	// maxPublishesInFlight); 0: wantInFlight's choice by subscriptions.
	PublishRequests int
	// Deliver hands on one data change notification and returns once it
	// was handed on or ctx ended; it is acknowledged to the server only in
	// the first case. Called from Run's goroutine, in sequence order per
	// subscription.
	Deliver func(ctx context.Context, n *ua.DataChangeNotification)
	// DeliverItems, when set, takes the place of Deliver for the
	// notifications the fast decoder read (uafast), in the same way;
	// without it they are decoded again for Deliver.
	DeliverItems func(ctx context.Context, n *uafast.DataChange)
	// DeliverEvents, when set, hands on event notifications as Deliver
	// does data changes; without it they are acknowledged and dropped.
	DeliverEvents func(ctx context.Context, n *ua.EventNotificationList)
	// Alive, when set, hears of every PublishResponse that carries a
	// notification message, keep-alives included.
	Alive func()
}

// Engine is the subscription layer of one OPC UA session; it outlives the
// channels (and sessions, after a transfer) its subscriptions move across.
// It is not safe for concurrent use: Create, Transfer and Run are called
// one after another by the session's goroutine.
type Engine struct {
	cfg  Config
	subs []*sub
	// acks are delivered notifications not yet acknowledged to the server.
	acks []*ua.SubscriptionAcknowledgement
	// want is how many PublishRequests Run keeps in flight.
	want       int
	received   int       // PublishResponses with a notification message
	lost       uint64    // notifications the server no longer held
	lostLogged bool      // data loss is logged at Error once, then at Debug
	resynced   bool      // a restart of the numbering is logged at Warn once
	run        *runState // while Run runs, for While
}

// runState is what Run keeps while it runs: its requests in flight and
// when the last answer came.
type runState struct {
	pctx       context.Context // the PublishRequests' context
	snd        Sender
	p          *publishRequester
	lastAnswer time.Time
}

// sub is one subscription and where its notifications stand.
type sub struct {
	id        uint32
	interval  time.Duration // as asked for: subscriptions are grouped by it
	keepAlive time.Duration // revised interval × keep-alive count
	lifetime  time.Duration // how long the server keeps it without PublishRequests
	lastSeq   uint32        // last sequence number handed on; 0 before the first

	// Notifications that arrived ahead of a missing number wait in early
	// until the gap fills or is given up (gapSince, gapAnswers).
	early      map[uint32]*ua.NotificationMessage
	sent       uint32    // highest number the server is known to have sent
	gapSince   time.Time // when a number after lastSeq was first missed
	gapAnswers int       // PublishResponses received since
	available  []uint32  // the server's retransmission queue, from its latest answer
	// reack asks the next answer's available numbers to be checked for
	// ones already handed on (acknowledgements lost in a cut).
	reack bool
}

// gapOpen tells whether numbers after lastSeq are missing.
func (s *sub) gapOpen() bool { return s.sent > s.lastSeq }

// New returns an Engine without subscriptions.
func New(cfg Config) *Engine {
	return &Engine{cfg: cfg, want: publishesInFlight}
}

// Len is the number of subscriptions.
func (e *Engine) Len() int { return len(e.subs) }

// Received counts the PublishResponses that carried a notification message
// (data or keep-alive) since New.
func (e *Engine) Received() int { return e.received }

// Lost counts the notifications the server no longer held when asked for
// them again: values missing.
func (e *Engine) Lost() uint64 { return e.lost }

// ByInterval returns the subscription of that publishing interval created
// last (with several, the one holding the remainder of the items).
func (e *Engine) ByInterval(interval time.Duration) (id uint32, ok bool) {
	for _, s := range e.subs {
		if s.interval == interval {
			id, ok = s.id, true
		}
	}
	return id, ok
}

// Window is how long a lost channel is worth recovering: the longest time
// the server keeps a subscription without PublishRequests, and at least min.
func (e *Engine) Window(min time.Duration) time.Duration {
	w := min
	for _, s := range e.subs {
		w = max(w, s.lifetime)
	}
	return w
}

// Reset forgets every subscription and pending acknowledgement, before the
// subscriptions are created anew.
func (e *Engine) Reset() {
	e.subs, e.acks = nil, nil
}

// Reactivated tells the engine that its session moved to a new channel:
// acknowledgements sent on the old one may have been lost.
func (e *Engine) Reactivated() {
	for _, s := range e.subs {
		s.reack = true
	}
}

// Create creates a subscription with the given publishing interval; the
// server sends at most maxNotifications notifications in one
// PublishResponse (0: no limit), so large subscriptions arrive in several.
func (e *Engine) Create(ctx context.Context, snd Sender, interval time.Duration, maxNotifications uint32) (uint32, error) {
	keepAlive := uint32(max(1, keepAliveEvery/max(interval, time.Millisecond)))
	res, err := snd.Send(ctx, &ua.CreateSubscriptionRequest{
		RequestedPublishingInterval: float64(interval) / float64(time.Millisecond),
		RequestedMaxKeepAliveCount:  keepAlive,
		RequestedLifetimeCount:      keepAlive * lifetimeKeepAlives,
		MaxNotificationsPerPublish:  maxNotifications,
		PublishingEnabled:           true,
	})
	if err != nil {
		return 0, err
	}
	r, ok := res.(*ua.CreateSubscriptionResponse)
	if !ok {
		return 0, fmt.Errorf("got %T", res)
	}
	if r.SubscriptionID == 0 {
		return 0, ua.StatusBadSubscriptionIDInvalid
	}
	e.subs = append(e.subs, &sub{
		id:        r.SubscriptionID,
		interval:  interval,
		keepAlive: revised(r.RevisedPublishingInterval, r.RevisedMaxKeepAliveCount),
		lifetime:  revised(r.RevisedPublishingInterval, r.RevisedLifetimeCount),
	})
	return r.SubscriptionID, nil
}

// revised is a server's revised interval (ms) times a count, bounded.
func revised(intervalMS float64, count uint32) time.Duration {
	d := intervalMS * float64(time.Millisecond) * float64(count)
	if !(d > 0) { // NaN too
		return 0
	}
	return time.Duration(min(d, float64(maxRevised)))
}

// Transfer moves the subscriptions of a session the server lost to the
// session snd sends on; notifications not yet acknowledged are then
// republished by the gap check. It fails unless every subscription moved.
func (e *Engine) Transfer(ctx context.Context, snd Sender) error {
	ids := make([]uint32, len(e.subs))
	for i, s := range e.subs {
		ids[i] = s.id
	}
	res, err := snd.Send(ctx, &ua.TransferSubscriptionsRequest{SubscriptionIDs: ids, SendInitialValues: false})
	if err != nil {
		return fmt.Errorf("transfer subscriptions: %w", err)
	}
	r, ok := res.(*ua.TransferSubscriptionsResponse)
	if !ok {
		return fmt.Errorf("transfer subscriptions: got %T", res)
	}
	if len(r.Results) != len(ids) {
		return fmt.Errorf("transfer subscriptions: %d results for %d subscriptions", len(r.Results), len(ids))
	}
	var failed error
	var moved []uint32
	for i, t := range r.Results {
		if t == nil || t.StatusCode != ua.StatusOK {
			code := ua.StatusBadUnexpectedError
			if t != nil {
				code = t.StatusCode
			}
			failed = fmt.Errorf("transfer subscription %d: %w", ids[i], code)
			continue
		}
		moved = append(moved, ids[i])
	}
	if failed != nil {
		if len(moved) > 0 { // all or nothing: the rest is recreated
			_, _ = snd.Send(ctx, &ua.DeleteSubscriptionsRequest{SubscriptionIDs: moved})
		}
		return failed
	}
	e.Reactivated()
	return nil
}

// wantInFlight is how many PublishRequests to keep at the server.
func (e *Engine) wantInFlight() int {
	if e.cfg.PublishRequests > 0 {
		return min(e.cfg.PublishRequests, maxPublishesInFlight)
	}
	return min(max(publishesInFlight, len(e.subs)+1), maxPublishesInFlight)
}

// silenceLimit is how long Run waits for any PublishResponse.
func (e *Engine) silenceLimit() time.Duration {
	limit := minSilence
	for _, s := range e.subs {
		limit = max(limit, 3*s.keepAlive)
	}
	return limit
}

// publishResult is one PublishRequest's outcome and the acknowledgements it
// carried, which go out again when it failed.
type publishResult struct {
	res  *ua.PublishResponse
	err  error
	acks []*ua.SubscriptionAcknowledgement
}

// publishRequester keeps PublishRequests in flight; answers arrive on
// results in whatever order the server sends them.
type publishRequester struct {
	snd      Sender
	results  chan publishResult // buffered for every request in flight
	inflight int
}

func (p *publishRequester) send(ctx context.Context, acks []*ua.SubscriptionAcknowledgement) {
	p.inflight++
	if acks == nil {
		acks = []*ua.SubscriptionAcknowledgement{}
	}
	go func() {
		res, err := p.snd.Send(ctx, &ua.PublishRequest{SubscriptionAcknowledgements: acks})
		r, ok := res.(*ua.PublishResponse)
		if err == nil && !ok {
			err = fmt.Errorf("got %T", res)
		}
		p.results <- publishResult{res: r, err: err, acks: acks}
	}()
}

// Run publishes on snd until ctx ends (nil, after handing on what already
// arrived) or the channel, session or subscriptions fail. check, when not
// nil, is called every second from Run's goroutine; its error ends Run.
func (e *Engine) Run(ctx context.Context, snd Sender, check func(context.Context) error) error {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.want = e.wantInFlight()
	p := &publishRequester{snd: snd, results: make(chan publishResult, maxPublishesInFlight)}
	for p.inflight < e.want {
		p.send(pctx, e.takeAcks())
	}
	e.run = &runState{pctx: pctx, snd: snd, p: p, lastAnswer: time.Now()}
	defer func() { e.run = nil }()
	gaps := time.NewTicker(minGapWait / 2)
	defer gaps.Stop()
	checks := time.NewTicker(checkEvery)
	defer checks.Stop()
	for {
		select {
		case <-ctx.Done():
			e.drain(ctx, p)
			return nil
		case r := <-p.results:
			if err := e.take(ctx, r); err != nil {
				return err
			}
		case <-gaps.C:
			if err := e.closeGaps(ctx, snd); err != nil {
				return err
			}
			if silent, limit := time.Since(e.run.lastAnswer), e.silenceLimit(); silent > limit {
				return fmt.Errorf("%w for %v (limit %v)", ErrSilent, silent.Round(time.Millisecond), limit)
			}
		case <-checks.C:
			if check == nil {
				continue
			}
			if err := check(ctx); err != nil {
				return err
			}
		}
	}
}

// take handles one PublishRequest's outcome, on Run's goroutine.
func (e *Engine) take(ctx context.Context, r publishResult) error {
	rs := e.run
	rs.p.inflight--
	if r.err == nil && r.res != nil && r.res.NotificationMessage != nil {
		rs.lastAnswer = time.Now()
	}
	if code, ok := statusOf(r.err); ok && code == ua.StatusBadTooManyPublishRequests {
		if fewer := max(1, rs.p.inflight); fewer < e.want {
			e.cfg.Log.Info().Int("publish_requests", fewer).
				Msg("the PLC has too many PublishRequests (BadTooManyPublishRequests); keeping fewer in flight")
			e.want = fewer
		}
	}
	// The next request goes out before this answer is handed on, so the
	// server is never left without one; its acknowledgement rides on the
	// request after.
	for rs.p.inflight < e.want {
		rs.p.send(rs.pctx, e.takeAcks())
	}
	return e.published(ctx, rs.snd, r)
}

// While runs fn, a request to the server, on a goroutine of its own while
// the calling goroutine, Run's (in check), goes on publishing and handing
// notifications on: a long request (a reload's CreateMonitoredItems) holds
// no value up, and no monitored item's queue overflows meanwhile. fn must
// touch nothing that Deliver reads. It returns fn's error, or the error
// that ends the stream, after fn has returned; outside Run it calls fn.
func (e *Engine) While(ctx context.Context, fn func() error) error {
	rs := e.run
	if rs == nil {
		return fn()
	}
	done := make(chan error, 1)
	go func() { done <- fn() }()
	for {
		select {
		case err := <-done:
			return err
		case r := <-rs.p.results:
			if err := e.take(ctx, r); err != nil {
				<-done
				return err
			}
		}
	}
}

func (e *Engine) takeAcks() []*ua.SubscriptionAcknowledgement {
	a := e.acks
	e.acks = nil
	return a
}

func (e *Engine) ack(subID, seq uint32) {
	e.acks = append(e.acks, &ua.SubscriptionAcknowledgement{SubscriptionID: subID, SequenceNumber: seq})
}

func (e *Engine) sub(id uint32) *sub {
	for _, s := range e.subs {
		if s.id == id {
			return s
		}
	}
	return nil
}

// statusOf finds the status code in err.
func statusOf(err error) (ua.StatusCode, bool) {
	var code ua.StatusCode
	ok := errors.As(err, &code)
	return code, ok
}

// isSessionLost tells status codes that mean the server dropped the session.
func isSessionLost(c ua.StatusCode) bool {
	switch c {
	case ua.StatusBadSessionIDInvalid, ua.StatusBadSessionClosed, ua.StatusBadSessionNotActivated:
		return true
	}
	return false
}
