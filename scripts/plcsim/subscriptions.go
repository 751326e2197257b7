package main

import (
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

type delivery struct {
	sub *server.Subscription
	msg *ua.MonitoredItemNotification
}

// firstKey names a monitored item by what its notifications carry.
type firstKey struct {
	sub    *server.Subscription
	handle uint32
}

// notify sends the first values of new monitored items and, when the values
// changed, the new values to every subscription monitoring them.
//
// It replaces gopcua's Server.ChangeNotification, which sends to each
// subscription's channel (capacity 100) while holding the monitored item
// service's lock. Once a subscription's goroutine has exited (subscription
// deleted or timed out), a tick with more than 100 of its items fills the
// channel, the send blocks with the lock held, and the subscription's cleanup,
// which needs that lock, never runs; nor does any later request, as they are
// all handled on one goroutine. Here the items are collected under the lock
// and sent after releasing it, to subscriptions that still exist, and a send
// that blocks too long is dropped.
func (s *sim) notify(changed bool) {
	mis := s.srv.MonitoredItemService
	s.out = s.out[:0]
	mis.Mu.Lock()
	s.out = append(s.out, s.pending...) // before any change of the same items
	// An item created after this change stored its value, but before the
	// change got here, was given that value as its first: sent again as the
	// change it would reach the client twice.
	var first map[firstKey]*ua.DataValue
	if changed && len(s.pending) > 0 {
		first = make(map[firstKey]*ua.DataValue, len(s.pending))
		for _, d := range s.pending {
			first[firstKey{d.sub, d.msg.ClientHandle}] = d.msg.Value
		}
	}
	clear(s.pending)
	s.pending = s.pending[:0]
	if changed {
		for key, items := range mis.Nodes {
			t := s.byKey[key]
			if t == nil {
				continue
			}
			dv := t.value.Load()
			for _, it := range items {
				if it.Mode != ua.MonitoringModeReporting || it.Req.ItemToMonitor.AttributeID != ua.AttributeIDValue {
					continue // only the Value attribute ever changes
				}
				handle := it.Req.RequestedParameters.ClientHandle
				if first != nil && first[firstKey{it.Sub, handle}] == dv {
					continue
				}
				s.out = append(s.out, delivery{it.Sub, &ua.MonitoredItemNotification{
					ClientHandle: handle,
					Value:        dv,
				}})
			}
		}
	}
	mis.Mu.Unlock()
	s.deliver()
}

// currentTimeKey is the monitored-item index key of Server_ServerStatus_CurrentTime.
var currentTimeKey = ua.NewNumericNodeID(0, id.Server_ServerStatus_CurrentTime).String()

// notifyClock sends the new CurrentTime to the items monitoring it.
func (s *sim) notifyClock(now time.Time) {
	mis := s.srv.MonitoredItemService
	s.out = s.out[:0]
	dv := &ua.DataValue{
		EncodingMask:    ua.DataValueValue | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
		Value:           ua.MustVariant(now.Add(s.opts.clockOffset).UTC()),
		SourceTimestamp: now.Add(s.opts.clockOffset),
		ServerTimestamp: now.Add(s.opts.clockOffset),
	}
	mis.Mu.Lock()
	for _, it := range mis.Nodes[currentTimeKey] {
		if it.Mode == ua.MonitoringModeReporting && it.Req.ItemToMonitor.AttributeID == ua.AttributeIDValue {
			s.out = append(s.out, delivery{it.Sub, &ua.MonitoredItemNotification{
				ClientHandle: it.Req.RequestedParameters.ClientHandle,
				Value:        dv,
			}})
		}
	}
	mis.Mu.Unlock()
	s.deliver()
}

// deliver sends s.out to the subscriptions that still exist.
func (s *sim) deliver() {
	if len(s.out) == 0 {
		return
	}

	live := s.liveSubscriptions()
	var stuck map[*server.Subscription]int
	var timer *time.Timer
	for _, d := range s.out {
		if !live[d.sub] {
			continue
		}
		if stuck[d.sub] > 0 {
			stuck[d.sub]++
			continue
		}
		select {
		case d.sub.NotifyChannel <- d.msg:
			continue
		default:
		}
		// The subscription's goroutine is busy, e.g. writing a response.
		if timer == nil {
			timer = time.NewTimer(sendTimeout)
			defer timer.Stop()
		} else {
			timer.Reset(sendTimeout)
		}
		select {
		case d.sub.NotifyChannel <- d.msg:
		case <-timer.C:
			if stuck == nil {
				stuck = map[*server.Subscription]int{}
			}
			stuck[d.sub]++
		}
	}
	clear(s.out) // let go of the notifications
	for sub, n := range stuck {
		if !s.warned[sub] {
			s.warned[sub] = true
			s.log.Warn().Uint32("subscription", sub.ID).Int("dropped", n).Msg("subscription takes no notifications; dropping them")
		}
	}
	for sub := range s.warned {
		if !live[sub] {
			delete(s.warned, sub)
		}
	}
}

// liveSubscriptions returns the subscriptions the server still knows.
func (s *sim) liveSubscriptions() map[*server.Subscription]bool {
	ss := s.srv.SubscriptionService
	ss.Mu.Lock()
	defer ss.Mu.Unlock()
	live := make(map[*server.Subscription]bool, len(ss.Subs))
	for _, sub := range ss.Subs {
		if sub != s.placeholder {
			live[sub] = true
		}
	}
	return live
}

// reapOrphans deletes subscriptions whose session was closed. gopcua's
// server ignores CloseSession's DeleteSubscriptions flag, so such
// subscriptions would otherwise keep receiving notifications until their
// lifetime runs out, and while they exist, new subscriptions can be given
// the ID of a live one (gopcua numbers them len(subscriptions)+1).
func (s *sim) reapOrphans() {
	ss := s.srv.SubscriptionService
	type orphan struct {
		id    uint32
		sub   *server.Subscription
		token *ua.NodeID
	}
	var cands []orphan
	ss.Mu.Lock()
	for subID, sub := range ss.Subs {
		if sub != nil && sub.Session != nil {
			cands = append(cands, orphan{subID, sub, sub.Session.AuthTokenID})
		}
	}
	ss.Mu.Unlock()
	for _, c := range cands {
		if s.srv.Session(&ua.RequestHeader{AuthenticationToken: c.token}) != nil {
			continue
		}
		ss.Mu.Lock()
		same := ss.Subs[c.id] == c.sub
		ss.Mu.Unlock()
		if same {
			s.log.Info().Uint32("subscription", c.id).Msg("deleting subscription of closed session")
			ss.DeleteSubscription(c.id)
		}
	}
}

// placeholderBase is where the keys of createSubscription's placeholders
// start, far above any ID actually handed out.
const placeholderBase = 1 << 31

// createSubscription wraps gopcua's CreateSubscription so that subscription
// IDs are never reused. gopcua numbers a new subscription len(subscriptions)+1:
// once an older one is gone, that is the ID of one still running, whose
// entry and monitored items the new one silently takes over; and a deleted
// subscription's goroutine deletes its ID once more when it exits, which can
// hit a new subscription given the same ID. Both happen when a client
// reconnects while its old subscriptions are still winding down. Before
// delegating, the map is padded with placeholders under keys nobody uses, so
// that len+1 is the next unused ID; they are removed again right after.
func (s *sim) createSubscription(srv *server.Server) server.Handler {
	s.placeholder = server.NewSubscription()
	return func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
		ss := srv.SubscriptionService
		ss.Mu.Lock()
		var padded uint32
		for uint32(len(ss.Subs)) < s.lastSubID && padded < placeholderBase {
			ss.Subs[placeholderBase+padded] = s.placeholder
			padded++
		}
		ss.Mu.Unlock()

		resp, err := ss.CreateSubscription(sc, r, reqID)

		ss.Mu.Lock()
		for i := range padded {
			delete(ss.Subs, placeholderBase+i)
		}
		ss.Mu.Unlock()
		if res, ok := resp.(*ua.CreateSubscriptionResponse); ok {
			s.lastSubID = max(s.lastSubID, res.SubscriptionID)
		}
		return resp, err
	}
}

// createMonitoredItems replaces gopcua's CreateMonitoredItems, which sends
// each new item's first value from a goroutine of its own that holds the
// monitored item service's lock while it waits on the subscription's channel.
// When the client deletes the subscription before all of those ran, the rest
// block for good, and with them the subscription's cleanup and every later
// request (see notify). This one queues the first values for the change loop,
// which sends them without holding a lock. It also honours the requested
// monitoring mode. Like gopcua's, it accepts items for nodes that do not
// exist, whose one value then has the status BadNodeIdUnknown (a real server
// would refuse such an item with that status).
func (s *sim) createMonitoredItems(srv *server.Server) server.Handler {
	return func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
		req, ok := r.(*ua.CreateMonitoredItemsRequest)
		if !ok {
			return nil, ua.StatusBadRequestTypeInvalid
		}
		ss, mis := srv.SubscriptionService, srv.MonitoredItemService
		ss.Mu.Lock()
		sub := ss.Subs[req.SubscriptionID]
		ss.Mu.Unlock()
		sess := srv.Session(req.RequestHeader)
		if sub == nil || sub == s.placeholder || sub.Session == nil || sess == nil || !sub.Session.AuthTokenID.Equal(sess.AuthTokenID) {
			return nil, ua.StatusBadSubscriptionIDInvalid
		}
		if n := s.opts.maxItemsPerCall; n > 0 && len(req.ItemsToCreate) > n {
			s.log.Warn().Int("items", len(req.ItemsToCreate)).Int("max", n).Msg("CreateMonitoredItems over MaxMonitoredItemsPerCall: refused")
			return nil, ua.StatusBadTooManyOperations
		}

		results := make([]*ua.MonitoredItemCreateResult, len(req.ItemsToCreate))
		mis.Mu.Lock()
		for i, ir := range req.ItemsToCreate {
			res := &ua.MonitoredItemCreateResult{FilterResult: ua.NewExtensionObject(nil)}
			results[i] = res
			if ir == nil || ir.ItemToMonitor == nil || ir.ItemToMonitor.NodeID == nil || ir.RequestedParameters == nil {
				res.StatusCode = ua.StatusBadNodeIDInvalid
				continue
			}
			nid := ir.ItemToMonitor.NodeID
			item := &server.MonitoredItem{ID: mis.NextID(), Sub: sub, Req: ir, Mode: ir.MonitoringMode}
			key := nid.String()
			mis.Items[item.ID] = item
			mis.Nodes[key] = append(mis.Nodes[key], item)
			mis.Subs[sub.ID] = append(mis.Subs[sub.ID], item)
			res.StatusCode = ua.StatusOK
			res.MonitoredItemID = item.ID
			res.RevisedSamplingInterval = float64(s.opts.interval) / float64(time.Millisecond)
			res.RevisedQueueSize = 1
			if item.Mode == ua.MonitoringModeReporting {
				s.pending = append(s.pending, delivery{sub, &ua.MonitoredItemNotification{
					ClientHandle: ir.RequestedParameters.ClientHandle,
					Value:        attribute(srv, nid, ir.ItemToMonitor.AttributeID),
				}})
			}
		}
		mis.Mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}

		return &ua.CreateMonitoredItemsResponse{
			ResponseHeader: &ua.ResponseHeader{
				Timestamp:          time.Now(),
				RequestHandle:      req.RequestHeader.RequestHandle,
				ServiceResult:      ua.StatusOK,
				ServiceDiagnostics: &ua.DiagnosticInfo{},
				StringTable:        []string{},
				AdditionalHeader:   ua.NewExtensionObject(nil),
			},
			Results:         results,
			DiagnosticInfos: []*ua.DiagnosticInfo{},
		}, nil
	}
}

// attribute reads an attribute the way the Read service does.
func attribute(srv *server.Server, nid *ua.NodeID, attr ua.AttributeID) *ua.DataValue {
	ns, err := srv.Namespace(int(nid.Namespace()))
	if err != nil {
		return &ua.DataValue{
			EncodingMask:    ua.DataValueStatusCode | ua.DataValueServerTimestamp,
			Status:          ua.StatusBadNodeIDUnknown,
			ServerTimestamp: time.Now(),
		}
	}
	return ns.Attribute(nid, attr)
}
