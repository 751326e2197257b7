package opcua

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
)

// Gaps filled from the PLC's history. When the agent was away from a PLC
// longer than the server's queue covers (a long cut, a PLC that lost the
// session, subscriptions recreated), the values of that time are gone from
// the subscription but not from a server that historizes the tag. After
// every recovery and every subscription created anew, tags whose node is
// Historizing, on a server with AccessHistoryDataCapability, are read back
// with HistoryReadRawModified from the last value handed on (at most
// history.max_window back) and handed on in order, marked historical,
// before the live values resume. Live values the history already carried
// (same source time or older) are dropped once, so that each tag sees
// every value once and in order.

const (
	// historyValuesPerRequest is NumValuesPerNode: a longer gap is read on
	// with continuation points.
	historyValuesPerRequest = 1000
	// maxHistoryValues bounds the values read for one tag in one fill.
	maxHistoryValues = 1_000_000
	// historyBatch is how many historical values go out in one batch.
	historyBatch = 1000
)

// gapState is what the gap fill knows of each tag, by handle.
type gapState struct {
	last        []time.Time // source time of the last value handed on
	fence       []time.Time // live values up to this source time came from history already
	historizing []bool      // the node's Historizing attribute, read at subscribe
	// untracked: the server was found to historize none of the tags, so
	// last and fence are not kept (48 bytes a tag) nor written to disk.
	untracked  bool
	saved      time.Time // when last kept on disk
	saveWarned bool
}

func (g *gapState) size(n int) {
	if len(g.last) != n {
		g.last = make([]time.Time, n)
		g.fence = make([]time.Time, n)
	}
}

// track keeps the tags' last source times, or drops them for a server
// that historizes none of the tags.
func (g *gapState) track(on bool) {
	g.untracked = !on
	if !on {
		g.last, g.fence = nil, nil
	}
}

// untrackGaps drops the last source times and their file, which a
// server that historizes none of the tags cannot use; a file left behind
// would fill from a stale time should the server historize them later.
func (s *Session) untrackGaps() {
	s.gaps.track(false)
	if file := s.gapStateFile(); file != "" {
		if err := os.Remove(file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Debug().Err(err).Str("file", file).Msg("removing the last values handed on")
		}
	}
}

// noteSent records the source time of a live value handed on.
func (s *Session) noteSent(h uint32, t time.Time) {
	if s.gaps.untracked {
		return
	}
	s.gaps.size(len(s.tags))
	if t.After(s.gaps.last[h]) {
		s.gaps.last[h] = t
	}
}

// fenced tells a live value the history fill already handed on: the first
// live value past the fence lifts it, so a PLC clock set back later does
// not hold values up.
func (s *Session) fenced(h uint32, dv *ua.DataValue) bool {
	return dv != nil && s.fencedAt(h, dv.SourceTimestamp)
}

// fencedAt is fenced for a value of that source time.
func (s *Session) fencedAt(h uint32, source time.Time) bool {
	if int(h) >= len(s.gaps.fence) || s.gaps.fence[h].IsZero() || source.IsZero() {
		return false
	}
	if !source.After(s.gaps.fence[h]) {
		return true
	}
	s.gaps.fence[h] = time.Time{}
	return false
}

// learnHistorizing reads the Historizing attribute of the subscribed tags,
// when the server offers history at all. Without a historizing tag the
// last source times are not kept: they serve only the fill. A failed read
// keeps them, for the next subscription's reading.
func (s *Session) learnHistorizing(ctx context.Context, c *uaclient.Client) {
	s.gaps.historizing = nil
	if !s.plc.History.Enabled() || !s.limits.historyRead {
		s.untrackGaps()
		return
	}
	var nodes []*ua.ReadValueID
	var handles []int
	for h := range s.tags {
		if s.tags[h].Polled() {
			continue
		}
		if id, err := resolveNodeID(s.tags[h].Node, c.Namespaces()); err == nil {
			nodes = append(nodes, &ua.ReadValueID{NodeID: id, AttributeID: ua.AttributeIDHistorizing})
			handles = append(handles, h)
		}
	}
	res, err := s.readAttrs(ctx, c, nodes)
	if err != nil {
		s.log.Debug().Err(err).Msg("reading Historizing; gaps are not filled from history")
		s.gaps.track(true)
		return
	}
	s.gaps.historizing = make([]bool, len(s.tags))
	n := 0
	for i, h := range handles {
		if on, _ := res[i].Value.Value().(bool); res[i].Status == ua.StatusOK && on {
			s.gaps.historizing[h] = true
			n++
		}
	}
	if n == 0 {
		s.untrackGaps()
	} else {
		s.gaps.track(true)
	}
	s.log.Debug().Int("tags", n).Msg("tags the PLC historizes; their gaps are filled from history")
}

// fillGaps reads the history of every historizing tag since its last value
// handed on and hands it on, marked historical. Failures cost only the
// fill: the live values go on.
func (s *Session) fillGaps(ctx context.Context, c *uaclient.Client, out chan<- collectors.Batch) {
	if len(s.gaps.historizing) == 0 || len(s.gaps.last) == 0 {
		return
	}
	now := time.Now().Add(s.ClockOffset()) // the PLC's clock
	var handles []uint32
	for h, on := range s.gaps.historizing {
		if on && !s.gaps.last[h].IsZero() {
			handles = append(handles, uint32(h))
		}
	}
	s.log.Debug().Int("tags", len(handles)).Msg("filling the gap from history")
	total, tags := 0, 0
	for part := range slices.Chunk(handles, s.limits.perHistoryRead()) {
		n, err := s.fillPart(ctx, c, out, part, now)
		total += n
		if err != nil {
			s.log.Warn().Err(err).Int("tags", len(part)).Msg("reading the gap from the PLC's history; values of the gap may be missing")
			continue
		}
		tags += len(part)
	}
	if total > 0 {
		s.log.Info().Int("values", total).Int("tags", tags).Msg("gap filled from the PLC's history")
	}
}

// fillPart reads and hands on the history of a few tags, following
// continuation points.
func (s *Session) fillPart(ctx context.Context, c *uaclient.Client, out chan<- collectors.Batch, handles []uint32, now time.Time) (int, error) {
	earliest := now.Add(-s.plc.History.MaxWindow.Duration())
	start := now
	nodes := make([]*ua.HistoryReadValueID, 0, len(handles))
	for _, h := range handles {
		id, err := resolveNodeID(s.tags[h].Node, c.Namespaces())
		if err != nil {
			return 0, err
		}
		from := s.gaps.last[h]
		if from.Before(earliest) {
			from = earliest
		}
		if from.Before(start) {
			start = from
		}
		nodes = append(nodes, &ua.HistoryReadValueID{NodeID: id, DataEncoding: &ua.QualifiedName{}})
	}
	// One window for all: values a tag already handed on are skipped.
	details := &ua.ReadRawModifiedDetails{StartTime: start, EndTime: now.Add(time.Minute), NumValuesPerNode: historyValuesPerRequest}
	type pendingRead struct {
		h    uint32
		read int
		node *ua.HistoryReadValueID
	}
	pending := make([]*pendingRead, len(handles))
	for i, h := range handles {
		pending[i] = &pendingRead{h: h, node: nodes[i]}
	}
	total := 0
	for len(pending) > 0 {
		toRead := make([]*ua.HistoryReadValueID, len(pending))
		for i, p := range pending {
			toRead[i] = p.node
		}
		res, err := call[*ua.HistoryReadResponse](ctx, c, &ua.HistoryReadRequest{
			HistoryReadDetails: ua.NewExtensionObject(details),
			TimestampsToReturn: ua.TimestampsToReturnBoth,
			NodesToRead:        toRead,
		})
		if err != nil {
			return total, fmt.Errorf("history read of %d tags: %w", len(toRead), err)
		}
		if len(res.Results) != len(toRead) {
			return total, fmt.Errorf("history read of %d tags: server returned %d results", len(toRead), len(res.Results))
		}
		var next, release []*pendingRead
		for i, r := range res.Results {
			p := pending[i]
			if r == nil || ua.StatusCode(uint32(r.StatusCode)&0xC0000000) == ua.StatusBad {
				code := ua.StatusBadUnexpectedError
				if r != nil {
					code = r.StatusCode
				}
				s.tagLog(p.h).Debug().Str("status", statusName(code)).Msg("no history for the gap")
				continue
			}
			var values []*ua.DataValue
			if r.HistoryData != nil {
				if hd, ok := r.HistoryData.Value.(*ua.HistoryData); ok {
					values = hd.DataValues
				}
			}
			sent := s.sendHistory(ctx, out, p.h, values)
			total += sent
			s.tagLog(p.h).Debug().Int("values", len(values)).Int("new", sent).Bool("more", len(r.ContinuationPoint) > 0).
				Time("from", details.StartTime).Msg("history read for the gap")
			p.read += len(values)
			if len(r.ContinuationPoint) == 0 {
				continue
			}
			p.node = &ua.HistoryReadValueID{NodeID: p.node.NodeID, DataEncoding: &ua.QualifiedName{}, ContinuationPoint: r.ContinuationPoint}
			if p.read >= maxHistoryValues {
				s.tagLog(p.h).Warn().Int("values", p.read).Msg("gap longer than the agent reads from history; the rest is left out")
				release = append(release, p)
				continue
			}
			next = append(next, p)
		}
		if len(release) > 0 {
			nodes := make([]*ua.HistoryReadValueID, len(release))
			for i, p := range release {
				nodes[i] = p.node
			}
			_, _ = c.Send(ctx, &ua.HistoryReadRequest{HistoryReadDetails: ua.NewExtensionObject(details),
				TimestampsToReturn: ua.TimestampsToReturnNeither, ReleaseContinuationPoints: true, NodesToRead: nodes})
		}
		pending = next
	}
	return total, nil
}

// sendHistory hands on one tag's historical values newer than the last
// value handed on, in source time order, marked historical, and fences the
// live values they cover.
func (s *Session) sendHistory(ctx context.Context, out chan<- collectors.Batch, h uint32, values []*ua.DataValue) int {
	tag := s.tags[h]
	batch := make(collectors.Batch, 0, min(len(values), historyBatch))
	flush := func() {
		if len(batch) == 0 {
			return
		}
		s.states.Collected(batch)
		select {
		case out <- batch:
		case <-ctx.Done():
		}
		batch = make(collectors.Batch, 0, historyBatch)
	}
	sent := 0
	for _, dv := range values {
		if dv == nil || dv.SourceTimestamp.IsZero() || !dv.SourceTimestamp.After(s.gaps.last[h]) {
			continue
		}
		smp := sampleFrom(tag.plc, tag.Name, tag.Node.String(), dv)
		smp.Historical = true
		batch = append(batch, smp)
		s.gaps.last[h] = dv.SourceTimestamp
		s.gaps.fence[h] = dv.SourceTimestamp
		sent++
		if len(batch) == historyBatch {
			flush()
		}
	}
	flush()
	return sent
}

// gapStateEvery bounds how often the last source times go to disk.
const gapStateEvery = 5 * time.Second

// gapStateFile is where the session keeps its tags' last source times
// across restarts of the agent; "" when the fill is off.
func (s *Session) gapStateFile() string {
	h := s.plc.History
	if h.StateDir == "" || !h.Enabled() {
		return ""
	}
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 {
			return '_'
		}
		return r
	}, s.plc.Name)
	return filepath.Join(h.StateDir, "history-"+name+".json")
}

// loadGapState reads the last source times the agent kept when it stopped,
// so that the first connection fills the time it was away.
func (s *Session) loadGapState() {
	file := s.gapStateFile()
	if file == "" {
		return
	}
	b, err := os.ReadFile(file)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn().Err(err).Msg("reading the last values handed on; a gap across the agent's restart is not filled")
		}
		return
	}
	var saved map[string]map[string]time.Time // PLC entry -> tag -> source time
	if err := json.Unmarshal(b, &saved); err != nil {
		s.log.Warn().Err(err).Str("file", file).Msg("reading the last values handed on; a gap across the agent's restart is not filled")
		return
	}
	s.gaps.size(len(s.tags))
	for h, t := range s.tags {
		if at, ok := saved[t.plc][t.Name]; ok && at.After(s.gaps.last[h]) {
			s.gaps.last[h] = at
		}
	}
}

// saveGapState writes the last source times, at most every gapStateEvery
// unless final; atomically, so a crash leaves the previous file.
func (s *Session) saveGapState(final bool) {
	file := s.gapStateFile()
	if file == "" || len(s.gaps.last) == 0 || (!final && time.Since(s.gaps.saved) < gapStateEvery) {
		return
	}
	s.gaps.saved = time.Now()
	if _, err := os.Stat(s.plc.History.StateDir); err != nil {
		return // no spool directory (yet): the publisher makes it
	}
	b := s.gapStateJSON()
	tmp := file + ".tmp"
	err := os.WriteFile(tmp, b, 0o600)
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil && !s.gaps.saveWarned {
		s.gaps.saveWarned = true
		s.log.Warn().Err(err).Msg("keeping the last values handed on; a gap across the agent's restart will not be filled")
	}
}

// gapStateJSON is the file's content, the JSON loadGapState reads: PLC
// entry -> tag -> RFC 3339 source time, for the historizing tags with a
// value handed on. Written by hand: json.Marshal of that nested map cost
// a sort and a reflective walk of every tag each time.
func (s *Session) gapStateJSON() []byte {
	keep := func(h int) bool {
		at := s.gaps.last[h]
		return !at.IsZero() && at.Year() >= 0 && at.Year() <= 9999 && // as json.Marshal takes times
			(s.gaps.historizing == nil || (h < len(s.gaps.historizing) && s.gaps.historizing[h]))
	}
	var entries []string // a shared session's entries, in order
	for h := range s.gaps.last {
		if keep(h) && !slices.Contains(entries, s.tags[h].plc) {
			entries = append(entries, s.tags[h].plc)
		}
	}
	b := make([]byte, 0, 64+len(s.gaps.last)*56)
	b = append(b, '{')
	for i, entry := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, entry)
		b = append(b, ":{"...)
		first := true
		for h := range s.gaps.last {
			if s.tags[h].plc != entry || !keep(h) {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONString(b, s.tags[h].Name)
			b = append(b, ':', '"')
			b = s.gaps.last[h].AppendFormat(b, time.RFC3339Nano)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string. Names come from the YAML
// configuration, so they are valid UTF-8.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
