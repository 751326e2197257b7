package opcua

// The tags' monitored items: the requests that create them, the tags the
// server refuses (remembered, logged once, published on their topics,
// retried) and what the status says of them.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
	"github.com/tagbridge/tagbridge/config"
)

// monitor creates monitored items for the given tag indices, perCall at a
// time, each call sent through snd (c, or beside the stream: besideStream).
// Tags the server refuses are remembered and logged; they do not fail the
// session.
func (s *Session) monitor(ctx context.Context, c *uaclient.Client, snd sender, subID uint32, handles []uint32, perCall int) error {
	reqs := make([]*ua.MonitoredItemCreateRequest, 0, min(len(handles), perCall))
	var reqHandles []uint32
	flush := func() error {
		if len(reqs) == 0 {
			return nil
		}
		res, err := createItems(ctx, snd, subID, reqs)
		if err != nil {
			return fmt.Errorf("create %d monitored items: %w", len(reqs), err)
		}
		if sr := res.ResponseHeader.ServiceResult; sr != ua.StatusOK {
			return fmt.Errorf("create %d monitored items: %w", len(reqs), sr)
		}
		if len(res.Results) != len(reqs) {
			return fmt.Errorf("create %d monitored items: server returned %d results", len(reqs), len(res.Results))
		}
		for i, r := range res.Results {
			s.noteResult(reqHandles[i], r.StatusCode)
			if !isBad(r.StatusCode) {
				s.items[reqHandles[i]] = itemRef{sub: subID, id: r.MonitoredItemID}
			}
		}
		reqs, reqHandles = reqs[:0], reqHandles[:0]
		return nil
	}
	for _, h := range handles {
		req, err := s.itemRequest(c, h)
		if err != nil {
			s.noteRejected(h, ua.StatusBadNodeIDUnknown, err)
			continue
		}
		reqs = append(reqs, req)
		reqHandles = append(reqHandles, h)
		if len(reqs) == perCall {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

func (s *Session) itemRequest(c *uaclient.Client, handle uint32) (*ua.MonitoredItemCreateRequest, error) {
	tag := s.tags[handle]
	nodeID, err := resolveNodeID(tag.Node, c.Namespaces())
	if err != nil {
		return nil, err
	}
	req := newItemRequest(nodeID, handle)
	p := req.RequestedParameters
	// As configured, also below the server's MinSupportedSampleRate: the
	// server revises it, and node-opcua for one samples exception-based
	// variables faster than it advertises.
	p.SamplingInterval = float64(tag.SamplingInterval.Duration()) / float64(time.Millisecond)
	p.QueueSize = tag.QueueSize
	p.DiscardOldest = true
	if db := tag.Deadband; db != nil {
		kind := ua.DeadbandTypeAbsolute
		if db.Type == "percent" {
			kind = ua.DeadbandTypePercent
		}
		p.Filter = ua.NewExtensionObject(&ua.DataChangeFilter{
			Trigger:       ua.DataChangeTriggerStatusValue,
			DeadbandType:  uint32(kind),
			DeadbandValue: db.Value,
		})
	}
	return req, nil
}

// errNoNode is the node of a removed tag.
var errNoNode = errors.New("no node")

// resolveNodeID turns a configured node id into the server's numbering;
// nsu= forms need the server's namespace array.
func resolveNodeID(n config.NodeID, namespaces []string) (*ua.NodeID, error) {
	if n.String() == "" {
		return nil, errNoNode // a tag a reload removed (removedTag); gopcua would read i=0
	}
	if n.NamespaceURI() == "" {
		return ua.ParseNodeID(n.String())
	}
	id, err := ua.ParseExpandedNodeID(n.String(), namespaces)
	if err != nil {
		return nil, fmt.Errorf("namespace %q is not in the server's namespace array", n.NamespaceURI())
	}
	return id.NodeID, nil
}

// publishRefused sends, once per new status, a sample without a value and
// with the refusal's status for each tag the PLC refused, so consumers of
// the tag's topic see it fail (a tag refused after a program change would
// otherwise just fall silent).
func (s *Session) publishRefused(ctx context.Context, out chan<- collectors.Batch) {
	if len(s.refusedToSend) == 0 {
		return
	}
	now := time.Now()
	batch := make(collectors.Batch, 0, len(s.refusedToSend))
	for _, h := range s.refusedToSend {
		code, still := s.rejected[h]
		if !still {
			continue
		}
		tag := s.tags[h]
		smp := collectors.Sample{
			PLC: tag.plc, Tag: tag.Name, Node: tag.Node.String(),
			StatusCode: collectors.StatusCode(code), ServerTime: now,
		}
		if int(h) < len(s.declared) {
			smp.Type = s.declared[h]
		}
		batch = append(batch, smp)
	}
	s.refusedToSend = s.refusedToSend[:0]
	if len(batch) == 0 {
		return
	}
	select {
	case out <- batch:
	case <-ctx.Done():
	}
}

func (s *Session) noteResult(handle uint32, code ua.StatusCode) {
	if code == ua.StatusOK || ua.StatusCode(uint32(code)&0xC0000000) != ua.StatusBad {
		if _, was := s.rejected[handle]; was {
			delete(s.rejected, handle)
			s.tagLog(handle).Info().Msg("tag accepted by server")
		}
		return
	}
	s.noteRejected(handle, code, nil)
}

func (s *Session) noteRejected(handle uint32, code ua.StatusCode, cause error) {
	if prev, seen := s.rejected[handle]; seen && prev == code {
		return
	}
	s.rejected[handle] = code
	s.refusedToSend = append(s.refusedToSend, handle)
	what := s.tags[handle].Name + " (" + statusName(code)
	if cause != nil {
		what += ": " + cause.Error()
	}
	s.newRejections = append(s.newRejections, what+")")
	ev := s.tagLog(handle).Debug().Str("status", statusName(code)).Uint32("status_code", uint32(code))
	if cause != nil {
		ev = ev.Err(cause)
	}
	ev.Msg("tag rejected by server")
}

// maxRejectionsLogged bounds the tags named in one rejection summary.
const maxRejectionsLogged = 20

// logRejections logs the tags the server newly refused in one line, not one
// line per tag: a PLC program change can take thousands of node ids away.
func (s *Session) logRejections() {
	if len(s.newRejections) == 0 {
		return
	}
	named := s.newRejections[:min(len(s.newRejections), maxRejectionsLogged)]
	s.log.Warn().Int("count", len(s.newRejections)).Strs("tags", named).
		Msg("tags rejected by server; retrying them while the others stream")
	s.newRejections = nil
}

func (s *Session) tagLog(handle uint32) *zerolog.Logger {
	tag := s.tags[handle]
	lc := s.log.With()
	if len(s.states.Names()) > 1 { // shared: say whose tag
		lc = lc.Str("tag_plc", tag.plc)
	}
	l := lc.Str("tag", tag.Name).Str("node", tag.Node.String()).Logger()
	return &l
}

// reportTags tells the status how many tags of each entry the server took,
// and logs those it newly refused.
func (s *Session) reportTags() {
	s.logRejections()
	failed := map[string]int{}
	total := map[string]int{}
	named := map[string][]collectors.FailedTag{}
	for h, t := range s.tags {
		if t.Tag == removedTag {
			continue
		}
		total[t.plc]++
		if code, bad := s.rejected[uint32(h)]; bad {
			failed[t.plc]++
			named[t.plc] = append(named[t.plc], collectors.FailedTag{Tag: t.Name, Node: t.Node.String(), Status: statusName(code)})
		}
	}
	for _, plc := range s.states.Names() { // also an entry a reload left without tags
		s.states.SetTags(plc, total[plc]-failed[plc], failed[plc])
		s.states.SetFailedTags(plc, named[plc])
	}
}

// retryRejected asks again for tags the server refused, e.g. node ids that
// come back after a PLC program download.
func (s *Session) retryRejected(ctx context.Context, c *uaclient.Client, st *feed) {
	if len(s.rejected) == 0 {
		return
	}
	defer s.reportTags()
	byInterval := map[time.Duration][]uint32{}
	for h := range s.rejected {
		if s.tags[h].Polled() {
			continue // read by polling, which reports it
		}
		iv := s.intervalOf(h)
		if into, ok := s.merged[iv]; ok {
			iv = into
		}
		byInterval[iv] = append(byInterval[iv], h)
	}
	for iv, handles := range byInterval {
		slices.Sort(handles)
		if subID, ok := st.ByInterval(iv); ok {
			if err := s.monitor(ctx, c, besideStream{c, st}, subID, handles, s.limits.perCall()); err != nil {
				s.log.Debug().Err(err).Msg("retrying rejected tags")
			}
		}
	}
}

// learnLimits reads the server's limits; a server that does not report
// them gets our defaults.
func (s *Session) learnLimits(ctx context.Context, c *uaclient.Client) {
	l, err := readLimits(ctx, c)
	if err != nil {
		s.log.Debug().Err(err).Msg("the server does not report its limits; using the defaults")
	}
	if l != s.limits {
		s.log.Debug().Int("max_nodes_per_read", l.nodesPerRead).Int("max_monitored_items_per_call", l.itemsPerCall).
			Int("max_monitored_items_per_subscription", l.itemsPerSub).Int("max_subscriptions_per_session", l.subsPerSession).
			Int("max_nodes_per_history_read", l.nodesPerHistoryRead).Dur("min_supported_sample_rate_ms", l.minSampleRate).
			Bool("history_read", l.historyRead).Int("max_nodes_per_browse", l.nodesPerBrowse).Msg("server limits")
	}
	s.limits = l
}

// subscribedHandles are the tags read through subscriptions.
func (s *Session) subscribedHandles() []uint32 {
	handles := make([]uint32, 0, len(s.tags))
	for h := range s.tags {
		if !s.tags[h].Polled() && s.tags[h].Tag != removedTag {
			handles = append(handles, uint32(h))
		}
	}
	return handles
}

// intervalOf is a tag's configured publishing interval.
func (s *Session) intervalOf(h uint32) time.Duration { return s.tags[h].PublishingInterval.Duration() }
