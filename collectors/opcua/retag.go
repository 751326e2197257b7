package opcua

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors/opcua/subscription"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
	"github.com/tagbridge/tagbridge/config"
)

// A reload that changes only the tags of a session's entries changes the
// live subscription, not the session: new tags get monitored items, removed
// tags lose theirs, a tag whose sampling interval, queue size or deadband
// changed has its item modified (deleted and created anew where the server
// refuses), and a tag whose node or publishing interval changed has its item
// deleted and created anew. Every other item goes on untouched, so its
// values flow without a gap or a repeat.
//
// Client handles stay what they were: a tag keeps its handle while it is
// configured, a new tag takes the next one, and a removed tag leaves a
// tombstone (removedTag) in its place for the life of the session.

// removedTag stands in for a tag a retag removed: its empty node resolves
// to nothing and its empty entry name matches no entry.
var removedTag = &config.Tag{}

// itemRef is where a tag's monitored item lives on the server.
type itemRef struct {
	sub, id uint32 // subscription id, MonitoredItemId
}

// retagOutcome is what one retag did, per PLC entry, for its log line.
type retagOutcome struct {
	added, removed, modified, recreated, failed int
}

// tagChanges is what a retag asks of the monitored items, by handle.
type tagChanges struct {
	added    []uint32 // new tags: create
	removed  []uint32 // tombstones now: delete
	modified []uint32 // sampling interval, queue size or deadband changed: modify
	// A tag whose node or publishing interval changed is deleted under its
	// old handle (a tombstone now, so that values of the old item still on
	// their way are dropped) and created under a new one.
	recreated, recreatedAs []uint32
	outcome                map[string]*retagOutcome
}

func (ch *tagChanges) of(plc string) *retagOutcome {
	o, ok := ch.outcome[plc]
	if !ok {
		o = &retagOutcome{}
		ch.outcome[plc] = o
	}
	return o
}

func (ch *tagChanges) empty() bool {
	return len(ch.added)+len(ch.removed)+len(ch.recreated)+len(ch.modified) == 0
}

// liveRetag tells whether a session can take a change of only the tags of
// its entries from old to next without restarting: not with polled tags,
// whose pollers hold the tag list of the connection, nor when heartbeats
// come or go altogether (their relay is set up at the session's start);
// heartbeats of tags that come, go or change follow the tag table.
func liveRetag(old, next []config.PLC) bool {
	if anyHeartbeat(old) != anyHeartbeat(next) {
		return false
	}
	for _, plcs := range [][]config.PLC{old, next} {
		for _, p := range plcs {
			for _, t := range p.Tags {
				if t.Polled() {
					return false
				}
			}
		}
	}
	return true
}

// withoutTags is p with no tags, to compare everything else.
func withoutTags(p config.PLC) config.PLC {
	p.Tags = nil
	return p
}

// Retag makes the session serve next, whose entries differ from its own
// only in their tags (NeedsRestart said no): a streaming session changes
// its monitored items within a second, one not connected subscribes to the
// new tags when it connects. Called by the agent's goroutine, like
// NeedsRestart.
func (s *Session) Retag(next []config.PLC) {
	if reflect.DeepEqual(next, s.entries) {
		return
	}
	s.entries = next
	s.retagMu.Lock()
	s.pendingTags = next
	s.retagMu.Unlock()
}

// takeRetag returns the entries a Retag asked for since the last call, or nil.
func (s *Session) takeRetag() []config.PLC {
	s.retagMu.Lock()
	defer s.retagMu.Unlock()
	next := s.pendingTags
	s.pendingTags = nil
	return next
}

// retagOffline applies a pending retag while no subscription exists (before
// subscribing): the next subscribe creates the items of the new tags.
func (s *Session) retagOffline() {
	next := s.takeRetag()
	if next == nil {
		return
	}
	ch := s.retagTo(next)
	clear(s.items)
	s.logRetag(next, ch, -1)
}

// retagLive applies a pending retag to the streaming session's items.
// Called from the stream's check, on the goroutine that hands notifications
// on: the tags change between two notifications, and the requests go
// beside the stream (besideStream). A retag cut short by a lost channel
// leaves the items unsure: once the session is back, its subscriptions are
// made anew.
func (s *Session) retagLive(ctx context.Context, c *uaclient.Client, st *feed) error {
	if s.itemsUnsure {
		s.itemsUnsure = false
		return s.resubscribe(ctx, c, errors.New("a reload's changes of the monitored items were cut short"))
	}
	next := s.takeRetag()
	if next == nil {
		return nil
	}
	started := time.Now()
	ch := s.retagTo(next)
	if ch.empty() {
		s.reportTags()
		return nil
	}
	err := s.changeItems(ctx, c, st, ch)
	if code, ok := statusCode(err); ok && !isSessionError(code) && !errors.Is(err, subscription.ErrGone) {
		err = s.resubscribe(ctx, c, err) // refused, on a sound session: made anew at once
	}
	s.itemsUnsure = err != nil && !errors.Is(err, subscription.ErrGone)
	st.dog.timeout = s.newWatchdog().timeout
	s.reportTags()
	s.publishRefused(ctx, st.out)
	for _, h := range slices.Concat(ch.added, ch.recreatedAs, ch.modified) {
		if _, bad := s.rejected[h]; bad {
			ch.of(s.tags[h].plc).failed++
		}
	}
	s.logRetag(next, ch, time.Since(started))
	return err
}

// logRetag logs one line per PLC entry of next whose tags changed; took
// is how long the server took, negative when the change waits for the
// next subscribe.
func (s *Session) logRetag(next []config.PLC, ch *tagChanges, took time.Duration) {
	for _, p := range next {
		o, ok := ch.outcome[p.Name]
		if !ok {
			continue
		}
		e := s.log.Info().Str("tag_plc", p.Name).Int("added", o.added).Int("removed", o.removed).Int("modified", o.modified).
			Int("recreated", o.recreated).Int("failed", o.failed).Int("tags", len(p.Tags))
		if took < 0 {
			e.Msg("reload: tags changed; the next subscribe applies them")
			continue
		}
		e.Int64("took_ms", took.Milliseconds()).Msg("reload: tags changed; subscription updated in place")
	}
}

// retagTo makes next the session's tags, keeping each remaining tag's
// handle, and says what that asks of the monitored items.
func (s *Session) retagTo(next []config.PLC) *tagChanges {
	ch := &tagChanges{outcome: map[string]*retagOutcome{}}
	live := make(map[string]uint32, len(s.tags))
	for h, t := range s.tags {
		if t.Tag != removedTag {
			live[waitKey(t.plc, t.Name)] = uint32(h)
		}
	}
	tags := slices.Clone(s.tags)
	kept := make(map[uint32]bool, len(live))
	for i := range next {
		p := &next[i]
		for j := range p.Tags {
			nt := &p.Tags[j]
			h, ok := live[waitKey(p.Name, nt.Name)]
			if !ok {
				tags = append(tags, tagRef{plc: p.Name, Tag: nt})
				ch.added = append(ch.added, uint32(len(tags)-1))
				ch.of(p.Name).added++
				continue
			}
			kept[h] = true
			old := tags[h].Tag
			tags[h].Tag = nt
			switch {
			case old.Node != nt.Node || old.PublishingInterval != nt.PublishingInterval:
				tags[h] = tagRef{Tag: removedTag}
				tags = append(tags, tagRef{plc: p.Name, Tag: nt})
				ch.recreated = append(ch.recreated, h)
				ch.recreatedAs = append(ch.recreatedAs, uint32(len(tags)-1))
				ch.of(p.Name).recreated++
			case old.SamplingInterval != nt.SamplingInterval || old.QueueSize != nt.QueueSize || !reflect.DeepEqual(old.Deadband, nt.Deadband):
				ch.modified = append(ch.modified, h)
				ch.of(p.Name).modified++
			}
		}
	}
	for h, t := range s.tags {
		if t.Tag != removedTag && !kept[uint32(h)] {
			tags[h] = tagRef{Tag: removedTag}
			ch.removed = append(ch.removed, uint32(h))
			ch.of(t.plc).removed++
		}
	}
	s.tagsMu.Lock()
	s.tags = tags
	s.tagsMu.Unlock()
	if s.beats != nil {
		s.beats.retag(tags)
	}

	// What the session knew of a removed tag or a tag's old node is void.
	grow := func(ts []time.Time) []time.Time {
		if len(ts) == 0 {
			return ts // sized at the first value
		}
		return append(ts, make([]time.Time, len(tags)-len(ts))...)
	}
	s.gaps.last, s.gaps.fence = grow(s.gaps.last), grow(s.gaps.fence)
	for _, h := range slices.Concat(ch.removed, ch.recreated) {
		delete(s.rejected, h)
		if int(h) < len(s.gaps.last) {
			s.gaps.last[h], s.gaps.fence[h] = time.Time{}, time.Time{}
		}
		if int(h) < len(s.gaps.historizing) {
			s.gaps.historizing[h] = false
		}
		if int(h) < len(s.declared) {
			clear(s.declared[h : h+1]) // not known
		}
	}
	s.refusedToSend = slices.DeleteFunc(s.refusedToSend, func(h uint32) bool { _, still := s.rejected[h]; return !still })
	s.link.mu.Lock()
	s.link.types = nil // by handle; a handle may name another node now
	s.link.mu.Unlock()
	return ch
}

// changeItems sends the retag's requests: deletes first, then modifies
// (what the server refuses to modify is deleted and created anew), then
// creates, each in batches of the server's MaxMonitoredItemsPerCall.
func (s *Session) changeItems(ctx context.Context, c *uaclient.Client, st *feed, ch *tagChanges) error {
	perCall := s.limits.perCall()
	create := slices.Concat(ch.added, ch.recreatedAs)
	if err := s.deleteItems(ctx, c, st, slices.Concat(ch.removed, ch.recreated), perCall); err != nil {
		return err
	}
	refused, err := s.modifyItems(ctx, c, st, ch.modified, perCall)
	if err != nil {
		return err
	}
	if len(refused) > 0 {
		if err := s.deleteItems(ctx, c, st, refused, perCall); err != nil {
			return err
		}
		create = append(create, refused...)
	}
	return s.createItemsFor(ctx, c, st, create, perCall)
}

// bySubscription groups handles by the subscription holding their item;
// handles without one (refused tags) go under 0.
func (s *Session) bySubscription(handles []uint32) map[uint32][]uint32 {
	out := map[uint32][]uint32{}
	for _, h := range handles {
		ref, ok := s.items[h]
		if !ok {
			out[0] = append(out[0], h)
			continue
		}
		out[ref.sub] = append(out[ref.sub], h)
	}
	return out
}

// deleteItems deletes the items of handles; an item the server no longer
// has is gone either way.
func (s *Session) deleteItems(ctx context.Context, c *uaclient.Client, st *feed, handles []uint32, perCall int) error {
	for subID, hs := range s.bySubscription(handles) {
		if subID == 0 {
			continue
		}
		for part := range slices.Chunk(hs, perCall) {
			ids := make([]uint32, len(part))
			for i, h := range part {
				ids[i] = s.items[h].id
			}
			rctx, cancel := context.WithTimeout(ctx, requestTimeout)
			res, err := call[*ua.DeleteMonitoredItemsResponse](rctx, besideStream{c, st}, &ua.DeleteMonitoredItemsRequest{SubscriptionID: subID, MonitoredItemIDs: ids})
			cancel()
			if err != nil {
				return fmt.Errorf("delete %d monitored items: %w", len(ids), err)
			}
			for i, h := range part {
				if i < len(res.Results) && res.Results[i] != ua.StatusOK && res.Results[i] != ua.StatusBadMonitoredItemIDInvalid {
					s.log.Debug().Str("status", statusName(res.Results[i])).Uint32("handle", h).Msg("deleting a monitored item")
				}
				delete(s.items, h)
			}
		}
	}
	return nil
}

// modifyItems modifies the items of handles to their tags' settings and
// returns those the server refused to modify (or that have no item), to be
// deleted and created anew.
func (s *Session) modifyItems(ctx context.Context, c *uaclient.Client, st *feed, handles []uint32, perCall int) (refused []uint32, err error) {
	for subID, hs := range s.bySubscription(handles) {
		if subID == 0 {
			refused = append(refused, hs...) // refused before: create again
			continue
		}
		for part := range slices.Chunk(hs, perCall) {
			reqs := make([]*ua.MonitoredItemModifyRequest, 0, len(part))
			asked := make([]uint32, 0, len(part))
			for _, h := range part {
				req, err := s.itemRequest(c, h)
				if err != nil {
					refused = append(refused, h)
					continue
				}
				reqs = append(reqs, &ua.MonitoredItemModifyRequest{MonitoredItemID: s.items[h].id, RequestedParameters: req.RequestedParameters})
				asked = append(asked, h)
			}
			if len(reqs) == 0 {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, requestTimeout)
			res, err := call[*ua.ModifyMonitoredItemsResponse](rctx, besideStream{c, st}, &ua.ModifyMonitoredItemsRequest{
				SubscriptionID: subID, TimestampsToReturn: ua.TimestampsToReturnBoth, ItemsToModify: reqs,
			})
			cancel()
			code, isStatus := statusCode(err)
			switch {
			case err != nil && !isStatus:
				return refused, fmt.Errorf("modify %d monitored items: %w", len(reqs), err)
			case err != nil && isSessionError(code):
				return refused, fmt.Errorf("modify %d monitored items: %w", len(reqs), err)
			case err != nil:
				s.log.Info().Str("status", statusName(code)).Int("items", len(asked)).
					Msg("the PLC refuses to modify monitored items; deleting and creating them anew")
				refused = append(refused, asked...)
				continue
			}
			for i, h := range asked {
				if i < len(res.Results) && res.Results[i] != nil && !isBad(res.Results[i].StatusCode) {
					continue
				}
				code := ua.StatusBadUnexpectedError
				if i < len(res.Results) && res.Results[i] != nil {
					code = res.Results[i].StatusCode
				}
				s.tagLog(h).Info().Str("status", statusName(code)).Msg("the PLC refuses to modify the tag's monitored item; deleting and creating it anew")
				refused = append(refused, h)
			}
		}
	}
	return refused, nil
}

func isBad(code ua.StatusCode) bool { return uint32(code)&0xC0000000 == 0x80000000 }

// createItemsFor creates the items of handles in the subscription of their
// publishing interval, with room for them under the server's
// MaxMonitoredItemsPerSubscription, or in new subscriptions. A subscription
// the server refuses ends the stream with subscription.ErrGone, so that all
// are made again within the server's limits.
func (s *Session) createItemsFor(ctx context.Context, c *uaclient.Client, st *feed, handles []uint32, perCall int) error {
	byInterval := map[time.Duration][]uint32{}
	for _, h := range handles {
		iv := s.intervalOf(h)
		if into, ok := s.merged[iv]; ok {
			iv = into
		}
		byInterval[iv] = append(byInterval[iv], h)
	}
	perSub := s.itemsPerSubscription()
	held := map[uint32]int{}
	for _, ref := range s.items {
		held[ref.sub]++
	}
	for _, iv := range slices.Sorted(maps.Keys(byInterval)) {
		hs := byInterval[iv]
		slices.Sort(hs)
		for len(hs) > 0 {
			subID, ok := st.ByInterval(iv)
			if !ok || held[subID] >= perSub {
				var err error
				subID, err = st.Create(ctx, besideStream{c, st}, iv, maxNotificationsPerPublish)
				if err != nil {
					return s.resubscribe(ctx, c, fmt.Errorf("create subscription (publishing interval %v): %w", iv, err))
				}
				s.subIDs = append(s.subIDs, subID)
				s.monitorHeartbeat(ctx, c, subID, uint32(heartbeatHandle+st.Len()-1))
			}
			n := min(len(hs), perSub-held[subID])
			if err := s.monitor(ctx, c, besideStream{c, st}, subID, hs[:n], perCall); err != nil {
				return err
			}
			held[subID] += n
			hs = hs[n:]
		}
	}
	return nil
}

// besideStream sends a request while the stream goes on publishing and
// handing notifications on (subscription.Engine.While): a reload's or a
// retry's requests hold no value up. The response is read only after
// While returns.
type besideStream struct {
	c  *uaclient.Client
	st *feed
}

func (b besideStream) Send(ctx context.Context, req ua.Request) (ua.Response, error) {
	var res ua.Response
	err := b.st.While(ctx, func() error {
		var err error
		res, err = b.c.Send(ctx, req)
		return err
	})
	return res, err
}

// resubscribe deletes the subscriptions and returns cause as
// subscription.ErrGone: the stream ends and the session subscribes anew.
func (s *Session) resubscribe(ctx context.Context, c *uaclient.Client, cause error) error {
	if len(s.subIDs) > 0 {
		dctx, cancel := context.WithTimeout(ctx, requestTimeout)
		_, _ = c.Send(dctx, &ua.DeleteSubscriptionsRequest{SubscriptionIDs: s.subIDs}) // made again at once
		cancel()
		s.subIDs = nil
	}
	if errors.Is(cause, subscription.ErrGone) {
		return cause
	}
	return fmt.Errorf("%w: reload: %w", subscription.ErrGone, cause)
}
