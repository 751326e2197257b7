package opcua

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/subscription"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
	"github.com/tagbridge/tagbridge/collectors/opcua/uafast"
)

// The subscription layer is ours, not gopcua's (package subscription): it
// acknowledges a notification only after its batch was handed on and
// republishes any number it missed, so a session reactivated on a new
// channel (or whose subscriptions were transferred) loses no value. This
// file joins it to the session: what a notification becomes, the checks
// that run while it streams, and the subscriptions made from the tag map.

const (
	// minRecoveryWindow is the shortest time a lost channel is retried
	// before the session is given up.
	minRecoveryWindow = 10 * time.Second
	// maxNotificationsPerPublish bounds one PublishResponse (about 30
	// bytes a scalar value), far below any message size limit: a PLC with
	// more values in one publishing interval sends them in several.
	maxNotificationsPerPublish = 10_000
	// defaultItemsPerSubscription splits the tags of one publishing
	// interval over several subscriptions, so that also a server that
	// ignores maxNotificationsPerPublish answers with bounded messages; a
	// server's lower MaxMonitoredItemsPerSubscription applies.
	defaultItemsPerSubscription = 10_000
)

// feed is the subscription engine of one session and where its
// deliveries go; it outlives the channels the session moves across.
type feed struct {
	*subscription.Engine
	dog *watchdog
	// awaiting is set while the session is subscribed (or moved) but no
	// PublishResponse came yet: the state says streaming only after one.
	awaiting bool
	// out is where values go; poll reads the polled tags (nil: none).
	out  chan<- collectors.Batch
	poll *poller
}

// newFeed prepares the subscription engine of one connection attempt,
// handing its values to out.
func (s *Session) newFeed(out chan<- collectors.Batch) *feed {
	st := &feed{dog: s.newWatchdog(), out: out, poll: s.newPoller()}
	st.Engine = subscription.New(subscription.Config{
		Log:             s.log,
		PublishRequests: s.plc.StartPublishRequests(),
		Deliver: func(ctx context.Context, n *ua.DataChangeNotification) {
			s.handle(ctx, n, out, st.dog)
		},
		DeliverItems: func(ctx context.Context, n *uafast.DataChange) {
			s.handleItems(ctx, n, out, st.dog)
		},
		DeliverEvents: func(ctx context.Context, n *ua.EventNotificationList) {
			s.handleEvents(ctx, n, out)
		},
		Alive: func() {
			st.dog.activity()
			if st.awaiting {
				st.awaiting = false
				s.states.SetState(collectors.StateStreaming, "")
				s.log.Info().Str("state", collectors.StateStreaming).Msg("plc values flow")
			}
		},
	})
	return st
}

// await records that the session is subscribed in state (connecting or
// recovering) and waits for its first PublishResponse: a session that
// delivers nothing is never reported streaming.
func (s *Session) await(st *feed, state, reason string) {
	st.awaiting = true
	s.states.SetState(state, reason)
}

// stream publishes on c until ctx ends (nil) or the channel, session or
// subscriptions fail; it also watches the channel and the server's health.
func (s *Session) stream(ctx context.Context, c *uaclient.Client, st *feed) error {
	if err := s.watchChannel(c); err != nil {
		return err
	}
	st.dog.activity() // a new channel starts the silence count afresh
	lastHealth := time.Now()
	// A failed renewal ends the channel: its last counters reach status
	// before the session moves on.
	defer s.watchChannel(c)
	check := func(ctx context.Context) error {
		if err := st.dog.check(); err != nil {
			return err
		}
		if err := s.retagLive(ctx, c, st); err != nil {
			return err
		}
		if err := s.watchChannel(c); err != nil {
			return err
		}
		if time.Since(lastHealth) < healthInterval {
			return nil
		}
		lastHealth = time.Now()
		if err := s.checkHealth(ctx, c); err != nil {
			return err
		}
		if err := s.checkNamespaces(ctx, c); err != nil {
			return err
		}
		s.saveGapState(false)
		s.retryRejected(ctx, c, st)
		s.types.learnPending(ctx, s.limited(c), s.log)
		return nil
	}
	return s.runStream(ctx, c, st, check) // with the polled tags (poll.go)
}

// subscribe creates the subscriptions, one per publishing interval or
// several when it has many tags, and their monitored items in batches the
// server accepts, into st. The server's limits are read first; a server
// that refuses a subscription with BadTooManySubscriptions gets the tags
// in as many subscriptions as it took.
func (s *Session) subscribe(ctx context.Context, c *uaclient.Client, st *feed) error {
	s.learnLimits(ctx, c)
	s.learnStructures(ctx, c)
	maxSubs := s.limits.subsPerSession
	if s.subsAllowed > 0 {
		maxSubs = within(maxSubs, s.subsAllowed)
	}
	for {
		created, err := s.createSubscriptions(ctx, c, st, maxSubs)
		if code, ok := statusCode(err); !ok || code != ua.StatusBadTooManySubscriptions {
			if err == nil {
				s.subIDs, s.nsSubscribed = created, c.Namespaces()
				s.learnHistorizing(ctx, c)
			}
			if err == nil {
				s.subscribeEvents(ctx, c, st) // after every (re)creation: ConditionRefresh
			}
			return err
		}
		if len(created) > 0 {
			delctx, cancel := context.WithTimeout(ctx, requestTimeout)
			_, _ = c.Send(delctx, &ua.DeleteSubscriptionsRequest{SubscriptionIDs: created}) // recreated below
			cancel()
		}
		if len(created) == 0 {
			return fmt.Errorf("create subscription: %w: %w", errTooManySubscriptions, err)
		}
		maxSubs, s.subsAllowed = len(created), len(created)
		s.log.Warn().Int("subscriptions", len(created)).
			Msg("the PLC refused another subscription (BadTooManySubscriptions); carrying the tags in the subscriptions it took")
	}
}

// createSubscriptions creates the subscriptions of the plan for at most
// maxSubs subscriptions (0: no limit) and returns their ids, also those
// created before a failure.
func (s *Session) createSubscriptions(ctx context.Context, c *uaclient.Client, st *feed, maxSubs int) ([]uint32, error) {
	perCall := s.limits.perCall()
	perSub := s.itemsPerSubscription()
	plans, merged, left := planSubscriptions(s.subscribedHandles(), s.intervalOf, perSub, maxSubs)
	s.merged = merged
	s.noteMerged(merged, left, maxSubs)

	st.Reset()
	clear(s.items)
	s.itemsUnsure = false
	var created []uint32
	for _, p := range plans {
		subID, err := st.Create(ctx, c, p.interval, maxNotificationsPerPublish)
		if err != nil {
			return created, fmt.Errorf("create subscription (publishing interval %v): %w", p.interval, err)
		}
		created = append(created, subID)
		if err := s.monitor(ctx, c, c, subID, p.handles, perCall); err != nil {
			return created, err
		}
		s.monitorHeartbeat(ctx, c, subID, uint32(heartbeatHandle+st.Len()-1))
	}
	for _, h := range left {
		s.noteRejected(h, ua.StatusBadTooManyMonitoredItems, errors.New("beyond the PLC's subscription limits"))
	}
	return created, nil
}

// itemsPerSubscription is the server's MaxMonitoredItemsPerSubscription
// when it reports one below our default.
func (s *Session) itemsPerSubscription() int {
	perSub := s.maxItemsPerSub
	if perSub <= 0 {
		perSub = defaultItemsPerSubscription
	}
	return within(s.limits.itemsPerSub, perSub)
}

// noteMerged logs, once per change, publishing intervals merged into a
// faster one because the PLC allows few subscriptions.
func (s *Session) noteMerged(merged map[time.Duration]time.Duration, left []uint32, maxSubs int) {
	what := fmt.Sprint(merged, len(left))
	if what == s.mergedLogged {
		return
	}
	s.mergedLogged = what
	if len(merged) > 0 {
		pairs := make([]string, 0, len(merged))
		for from, to := range merged {
			pairs = append(pairs, from.String()+" -> "+to.String())
		}
		slices.Sort(pairs)
		s.log.Warn().Int("max_subscriptions", maxSubs).Strs("publishing_intervals", pairs).
			Msg("the PLC allows fewer subscriptions than the publishing intervals need; slower tags are published at a faster interval")
	}
	if len(left) > 0 {
		s.log.Error().Int("tags", len(left)).Int("max_subscriptions", maxSubs).Int("items_per_subscription", s.itemsPerSubscription()).
			Msg("the PLC's subscription limits leave no room for these tags")
	}
}

// statusCode finds the status code in err.
func statusCode(err error) (ua.StatusCode, bool) {
	var code ua.StatusCode
	ok := errors.As(err, &code)
	return code, ok
}

// createItems sends one CreateMonitoredItems request.
func createItems(ctx context.Context, c sender, subID uint32, reqs []*ua.MonitoredItemCreateRequest) (*ua.CreateMonitoredItemsResponse, error) {
	return call[*ua.CreateMonitoredItemsResponse](ctx, c, &ua.CreateMonitoredItemsRequest{
		SubscriptionID:     subID,
		TimestampsToReturn: ua.TimestampsToReturnBoth,
		ItemsToCreate:      reqs,
	})
}

// monitorHeartbeat adds the server's CurrentTime to a subscription; a server
// that refuses it only loses the watchdog.
func (s *Session) monitorHeartbeat(ctx context.Context, c *uaclient.Client, subID, handle uint32) {
	req := newItemRequest(ua.NewNumericNodeID(0, id.Server_ServerStatus_CurrentTime), handle)
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
