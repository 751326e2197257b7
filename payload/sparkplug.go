package payload

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tagbridge/tagbridge/collectors"
)

// Sparkplug B (mqtt.payload: sparkplug_b, Eclipse Sparkplug 3.0): tagbridge
// is one edge node, agent.id, in group mqtt.sparkplug.group_id, and each
// PLC entry is one device. Topics are spBv1.0/<group>/<type>/<node>[/<plc>].
//
//   - Every message goes out at QoS 0 on a clean session (the publisher
//     sees to it), the NDEATH will at QoS 1; NCMD and DCMD are subscribed
//     at QoS 1. A record leaves the spool once the broker has answered a
//     PINGREQ written after it (the publisher's fences), so none is lost to
//     a connection that breaks.
//   - NBIRTH (seq 0, the bdSeq metric, Node Control/Rebirth) goes out after
//     every connect, before any spooled record, followed by a DBIRTH for
//     every device that is born at that point of the spooled stream.
//   - NDEATH with the same bdSeq is the MQTT will, and is sent on a clean
//     stop. bdSeq is 0 for the node's first MQTT session and one more for
//     each later one (wrapping after 255), across restarts: a CONNECT the
//     broker never accepted uses none up.
//   - DBIRTH, DDATA and DDEATH are spooled records, in order with the data:
//     a device is born before its first DDATA, again when a value's datatype
//     differs from its latest DBIRTH, and dies when its PLC leaves streaming.
//     A spooled DDATA of a device not born on the connection (a restart
//     after a crash) has its DBIRTH sent first.
//   - A birth lists only the metrics whose datatype is known (from a value,
//     or from the node's DataType for a null value); a null value of a tag
//     whose datatype was never known is left out of DDATA too.
//   - seq counts 0..255 per connection over NBIRTH and every later message;
//     outgoing appends it to a spooled record as it is handed to the broker.
//   - DDATA metrics carry only their alias (unique over the node, in
//     configuration order from 1), a timestamp (source time, else server
//     time, else now) and is_historical when taken while the link was down;
//     they go in time order. The payload's timestamp is the send time.
//   - Device ids, and metric names within a device, that differ only in
//     case are refused (validate too).
//   - A DBIRTH is encoded anew as it goes out, with the latest values; the
//     spooled DDATA that follow leave each of those values out once.
//   - An NCMD with Node Control/Rebirth = true repeats the NBIRTH and DBIRTHs.
//   - With sparkplug.primary_host_id, the node is born on a connection only
//     once the host's STATE says online, and values wait in the spool until
//     then (historical); a STATE offline ends the connection, so that the
//     broker sends the NDEATH will, and the next waits again.
//
// The encoder is hand-written with protowire; publish/sparkplugb holds the
// generated code that the tests decode with.

// Sparkplug B datatypes (sparkplugb.DataType).
const (
	spUnknown  = 0
	spInt8     = 1
	spInt16    = 2
	spInt32    = 3
	spInt64    = 4
	spUInt8    = 5
	spUInt16   = 6
	spUInt32   = 7
	spUInt64   = 8
	spFloat    = 9
	spDouble   = 10
	spBoolean  = 11
	spString   = 12
	spDateTime = 13
	spBytes    = 17
	// Arrays: the scalar type + spArray, from Int8Array (22) to DateTimeArray (34).
	spArray = 21
)

// Field numbers of Payload and Payload.Metric.
const (
	spPayloadTimestamp = 1
	spPayloadMetrics   = 2
	spPayloadSeq       = 3

	spMetricName       = 1
	spMetricAlias      = 2
	spMetricTimestamp  = 3
	spMetricDatatype   = 4
	spMetricHistorical = 5
	spMetricNull       = 7
	spMetricProperties = 9
	spMetricInt        = 10
	spMetricLong       = 11
	spMetricFloat      = 12
	spMetricDouble     = 13
	spMetricBool       = 14
	spMetricString     = 15
	spMetricBytes      = 16
	spMetricExtension  = 19
)

const (
	spNamespace = "spBv1.0"
	spRebirth   = "Node Control/Rebirth"
	spBDSeq     = "bdSeq"
	// bdSeqFile, in agent.spool_dir, holds the bdSeq of the latest MQTT
	// session; the next one uses one more.
	bdSeqFile = "sparkplug_bdseq"
	// typesFile, in agent.spool_dir, holds the datatype of every metric
	// announced so far, so that after a crash the spooled DDATA can be
	// preceded by a DBIRTH that announces them.
	typesFile = "sparkplug_types"
)

// sparkplugFormat is mqtt.payload sparkplug_b; see above.
type sparkplugFormat struct {
	none
	prefix string // spBv1.0/<group>/
	node   string
	dir    string        // agent.spool_dir, where open keeps the state files
	bdSeq  atomic.Uint64 // of the current or next CONNECT's will
	// began is set once the broker has accepted a CONNECT with bdSeq: the
	// next CONNECT takes one more.
	began atomic.Bool
	// Aliases of the node's own metrics, after the configured tags'.
	bdSeqAlias, rebirthAlias uint64

	// With sparkplug.primary_host_id: the host's STATE topic, and what
	// its latest STATE said, reset by every new session.
	hostTopic   string
	hostMu      sync.Mutex
	hostOnline  bool
	hostStamp   int64         // timestamp of the latest STATE taken
	hostChanged chan struct{} // closed and replaced when hostOnline changes

	mu        sync.Mutex // guards devices and their metrics, read by Run's goroutine
	devices   map[string]*spDevice
	byID      map[string]*spDevice // by device id (topic level)
	order     []*spDevice
	nextAlias uint64

	buf, mbuf []byte // intake goroutine only
	idx       []int  // intake goroutine only: a device's samples of a batch, in time order
	maxPacket int    // mqtt.max_packet_size: a DDATA is split to fit

	// Run's goroutine only.
	seq  uint64          // of the next message on this connection
	live map[string]bool // device ids born at the point of the stream handed to the broker
	// echo holds, per device id, the values of the DBIRTH last sent, in
	// their DDATA encodings (online and historical) with their aliases:
	// the spooled DDATA that follow leave each out once, as the birth has
	// given it already.
	echo map[string]map[string]uint64
}

type spDevice struct {
	id                 string // PLC name as a topic level
	birth, data, death string // topics
	metrics            []*spMetric
	byTag              map[string]*spMetric
	born               bool // at the intake: its latest record was a DBIRTH or DDATA
	pending            bool // streaming without a DBIRTH yet: born on its first batch
}

type spMetric struct {
	name      string
	alias     uint64
	datatype  uint32 // of the latest non-null value; spUnknown before one
	announced uint32 // datatype in the latest DBIRTH appended at the intake
	last      collectors.Sample
	has       bool
}

func newSparkplugFormat(o Options) (*sparkplugFormat, error) {
	group := o.SparkplugGroupID
	if group == "" || strings.ContainsAny(group, "/+#") {
		return nil, fmt.Errorf("sparkplug.group_id %q: must be one topic level, without / + #", group)
	}
	if o.Retain {
		return nil, errors.New("retain: Sparkplug B messages must not be retained; set mqtt.retain to false")
	}
	f := &sparkplugFormat{
		prefix:    spNamespace + "/" + group + "/",
		node:      o.AgentID,
		devices:   map[string]*spDevice{},
		byID:      map[string]*spDevice{},
		nextAlias: 1,
		live:      map[string]bool{},
		echo:      map[string]map[string]uint64{},
		maxPacket: o.MaxPacketSize,
	}
	if err := CheckTopic(f.nodeTopic("NBIRTH")); err != nil {
		return nil, fmt.Errorf("sparkplug topic: %w", err)
	}
	// Ids and names that differ only in case are refused: hosts such as
	// Ignition keep tags by case-insensitive paths, and one would hide the other.
	folded := map[string]string{} // device id, lower case -> plc
	for _, plc := range o.PLCs {
		id := level(plc.Name)
		if other, clash := f.byID[id]; clash {
			return nil, fmt.Errorf("plc %q: sparkplug device id %q is also the id of another plc (%q has / + # replaced); rename one", plc.Name, id, other.id)
		}
		if other, clash := folded[strings.ToLower(id)]; clash {
			return nil, fmt.Errorf("plc %q: sparkplug device id %q differs only in case from that of plc %q; rename one", plc.Name, id, other)
		}
		folded[strings.ToLower(id)] = plc.Name
		d := f.device(plc.Name)
		names := map[string]string{} // metric name, lower case -> tag
		for _, tag := range plc.Tags {
			if other, clash := names[strings.ToLower(tag.Name)]; clash && other != tag.Name {
				return nil, fmt.Errorf("plc %q: tag %q: sparkplug metric name differs only in case from tag %q; rename one", plc.Name, tag.Name, other)
			}
			names[strings.ToLower(tag.Name)] = tag.Name
			f.metric(d, tag.Name)
		}
	}
	if id := o.SparkplugPrimaryHost; id != "" {
		if strings.ContainsAny(id, "/+#") {
			return nil, fmt.Errorf("sparkplug.primary_host_id %q: must be one topic level, without / + #", id)
		}
		f.hostTopic = spNamespace + "/STATE/" + id
		f.hostChanged = make(chan struct{})
	}
	f.bdSeqAlias, f.rebirthAlias = f.nextAlias, f.nextAlias+1
	f.nextAlias += 2
	if o.StateDir == "" {
		return nil, errors.New("sparkplug: agent.spool_dir must be set (it keeps bdSeq)")
	}
	f.dir = o.StateDir
	return f, nil
}

// open reads the state files that run keeps in agent.spool_dir: the bdSeq
// of the latest session and the datatypes announced. Only run calls it
// (through New), never validate: the files are made by the user that runs.
func (f *sparkplugFormat) Open() error {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fmt.Errorf("sparkplug state directory: %w", err)
	}
	seq, err := readBDSeq(filepath.Join(f.dir, bdSeqFile))
	if err != nil {
		return err
	}
	f.bdSeq.Store(seq)
	return f.readTypes()
}

// readBDSeq returns the bdSeq for the first CONNECT: 0 without a file,
// else one more than the latest session's.
func readBDSeq(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("sparkplug bdSeq: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		// Start again at 0: hosts only compare an NDEATH's bdSeq with the
		// NBIRTH's of the same connection.
		return 0, nil
	}
	return (n + 1) % 256, nil
}

// writeState replaces a state file in the spool directory.
func (f *sparkplugFormat) writeState(name string, b []byte) error {
	path := filepath.Join(f.dir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("sparkplug state %s: %w", name, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("sparkplug state %s: %w", name, err)
	}
	return nil
}

// sessionStarted records that the broker accepted the CONNECT whose will
// holds the current bdSeq: the next CONNECT takes one more, and so does
// the next start.
func (f *sparkplugFormat) SessionStarted() error {
	f.began.Store(true)
	f.setHost(false, -1) // until the session's STATE (retained) says otherwise
	return f.writeState(bdSeqFile, []byte(strconv.FormatUint(f.bdSeq.Load(), 10)+"\n"))
}

// reconnecting returns the will for the next CONNECT: one bdSeq more if
// the broker accepted the previous one, else the same.
func (f *sparkplugFormat) Reconnecting() Message {
	if f.began.Swap(false) {
		f.bdSeq.Store((f.bdSeq.Load() + 1) % 256)
	}
	w, _ := f.Will()
	return w
}

// readTypes sets the datatypes announced by earlier runs, as known but not
// yet announced by this one.
func (f *sparkplugFormat) readTypes() error {
	b, err := os.ReadFile(filepath.Join(f.dir, typesFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("sparkplug datatypes: %w", err)
	}
	var types map[string]map[string]uint32
	if json.Unmarshal(b, &types) != nil {
		return nil // a later birth rewrites it; datatypes come with values
	}
	for plc, d := range f.devices {
		for _, m := range d.metrics {
			if dt := types[plc][m.name]; dt != spUnknown && m.datatype == spUnknown {
				m.datatype = dt
			}
		}
	}
	return nil
}

// writeTypes stores every known datatype; f.mu is held.
func (f *sparkplugFormat) writeTypes() error {
	types := map[string]map[string]uint32{}
	for plc, d := range f.devices {
		for _, m := range d.metrics {
			if m.datatype != spUnknown {
				if types[plc] == nil {
					types[plc] = map[string]uint32{}
				}
				types[plc][m.name] = m.datatype
			}
		}
	}
	b, err := json.Marshal(types)
	if err != nil {
		return fmt.Errorf("sparkplug datatypes: %w", err)
	}
	return f.writeState(typesFile, b)
}

func (f *sparkplugFormat) nodeTopic(kind string) string {
	return f.prefix + kind + "/" + f.node
}

// device returns the PLC entry's device, made on first use; f.mu is held
// or the format not yet shared.
func (f *sparkplugFormat) device(plc string) *spDevice {
	if d, ok := f.devices[plc]; ok {
		return d
	}
	id := level(plc)
	if _, clash := f.byID[id]; clash { // an unconfigured PLC: keep ids apart
		for i := 2; ; i++ {
			if _, clash := f.byID[id+"_"+strconv.Itoa(i)]; !clash {
				id += "_" + strconv.Itoa(i)
				break
			}
		}
	}
	d := &spDevice{
		id:    id,
		birth: f.nodeTopic("DBIRTH") + "/" + id,
		data:  f.nodeTopic("DDATA") + "/" + id,
		death: f.nodeTopic("DDEATH") + "/" + id,
		byTag: map[string]*spMetric{},
	}
	f.devices[plc] = d
	f.byID[id] = d
	f.order = append(f.order, d)
	return d
}

func (f *sparkplugFormat) metric(d *spDevice, tag string) *spMetric {
	if m, ok := d.byTag[tag]; ok {
		return m
	}
	m := &spMetric{name: tag, alias: f.nextAlias}
	f.nextAlias++
	d.byTag[tag] = m
	d.metrics = append(d.metrics, m)
	return m
}

func (f *sparkplugFormat) Encode(b collectors.Batch, online bool, add func(topic string, payload []byte)) {
	now := time.Now()
	// One DDATA per device, in order of first appearance: a shared
	// session's batch may hold several.
	for i := range b {
		if !firstOfPLC(b, i) {
			continue
		}
		plc := b[i].PLC
		// Metrics in time order, as hosts store them (a batch is in the
		// server's order, which need not be).
		f.idx = f.idx[:0]
		for j := i; j < len(b); j++ {
			if b[j].PLC == plc {
				f.idx = append(f.idx, j)
			}
		}
		slices.SortStableFunc(f.idx, func(x, y int) int { return sampleTime(&b[x], now).Compare(sampleTime(&b[y], now)) })
		f.mu.Lock()
		d := f.device(plc)
		rebirth := !d.born || d.pending
		for _, j := range f.idx {
			s := &b[j]
			m := f.metric(d, s.Tag)
			m.last, m.has = *s, true
			if dt := spDeclaredType(s); dt != spUnknown {
				m.datatype = dt
				if dt != m.announced {
					rebirth = true
				}
			}
		}
		var birth []byte
		if rebirth {
			birth = f.appendBirth(nil, d, now, false, 0)
		}
		f.mu.Unlock()
		if birth != nil {
			add(d.birth, birth)
		}

		f.buf = appendSpTimestamp(f.buf[:0], spPayloadTimestamp, now)
		start := len(f.buf)
		for _, j := range f.idx {
			s := &b[j]
			m := d.byTag[s.Tag]
			if m.announced == spUnknown {
				continue // a null value of a tag never typed: not in the birth, so no alias to send
			}
			f.mbuf = f.appendDataMetric(f.mbuf[:0], m.alias, s, now, !online)
			end := len(f.buf)
			f.buf = protowire.AppendTag(f.buf, spPayloadMetrics, protowire.BytesType)
			f.buf = protowire.AppendBytes(f.buf, f.mbuf)
			// outgoing adds the seq, 11 bytes at most.
			if end > start && PacketSize(d.data, len(f.buf)+11, 1) > f.maxPacket {
				add(d.data, f.buf[:end]) // a DDATA without this metric, which starts the next
				f.buf = appendSpTimestamp(f.buf[:0], spPayloadTimestamp, now)
				f.buf = protowire.AppendTag(f.buf, spPayloadMetrics, protowire.BytesType)
				f.buf = protowire.AppendBytes(f.buf, f.mbuf)
			}
		}
		if len(f.buf) > start {
			add(d.data, f.buf)
		}
	}
}

// plcStatus kills the device when its PLC leaves streaming, and has it born
// again once it streams: at once if the datatype of every tag is known,
// else with its first batch, which brings them.
func (f *sparkplugFormat) PLCStatus(st collectors.PLCStatus, add func(topic string, payload []byte)) []Message {
	now := time.Now()
	f.mu.Lock()
	d := f.device(st.PLC)
	var topic string
	var payload []byte
	switch {
	case st.State == collectors.StateStreaming && d.born:
		// Born already by a batch taken before this news: the intake
		// takes the batches in the channel first.
	case st.State == collectors.StateStreaming:
		d.pending = true
		known := true
		for _, m := range d.metrics {
			known = known && m.datatype != spUnknown
		}
		if known && len(d.metrics) > 0 {
			topic, payload = d.birth, f.appendBirth(nil, d, now, false, 0)
		}
	case d.born || d.pending:
		d.born, d.pending = false, false
		topic, payload = d.death, appendSpTimestamp(nil, spPayloadTimestamp, now)
	}
	f.mu.Unlock()
	if payload != nil {
		add(topic, payload)
	}
	return nil
}

// appendBirth appends a DBIRTH payload listing every metric of d whose
// datatype is known, with its latest value, and marks the datatypes as
// announced (at the intake) unless resend. f.mu is held.
func (f *sparkplugFormat) appendBirth(b []byte, d *spDevice, now time.Time, resend bool, seq uint64) []byte {
	b = appendSpTimestamp(b, spPayloadTimestamp, now)
	var mb []byte
	changed := false
	for _, m := range d.metrics {
		if !resend {
			changed = changed || m.announced != m.datatype
			m.announced = m.datatype
		}
		if m.datatype == spUnknown {
			continue // Unknown makes hosts drop the metric, and then the DDATA that name it
		}
		mb = protowire.AppendTag(mb[:0], spMetricName, protowire.BytesType)
		mb = protowire.AppendString(mb, m.name)
		mb = protowire.AppendTag(mb, spMetricAlias, protowire.VarintType)
		mb = protowire.AppendVarint(mb, m.alias)
		ts := now
		if m.has {
			ts = sampleTime(&m.last, now)
		}
		mb = appendSpTimestamp(mb, spMetricTimestamp, ts)
		mb = protowire.AppendTag(mb, spMetricDatatype, protowire.VarintType)
		mb = protowire.AppendVarint(mb, uint64(m.datatype))
		switch {
		case !m.has || spType(&m.last) == spUnknown:
			mb = appendSpBool(mb, spMetricNull, true)
			if m.has {
				mb = appendSpQuality(mb, m.last.Status)
			}
		default:
			mb = appendSpQuality(mb, m.last.Status)
			mb = appendSpValue(mb, spType(&m.last), m.last.Value)
		}
		b = protowire.AppendTag(b, spPayloadMetrics, protowire.BytesType)
		b = protowire.AppendBytes(b, mb)
	}
	if !resend {
		d.born, d.pending = true, false
		if changed {
			// A failure only matters after a crash, when the DBIRTH that
			// comes before the spooled DDATA lacks these metrics until
			// values bring their types again.
			_ = f.writeTypes()
		}
	} else {
		b = appendSpSeq(b, seq)
	}
	return b
}

// appendDataMetric appends a DDATA metric: alias, timestamp, value.
func (f *sparkplugFormat) appendDataMetric(mb []byte, alias uint64, s *collectors.Sample, now time.Time, historical bool) []byte {
	mb = protowire.AppendTag(mb, spMetricAlias, protowire.VarintType)
	mb = protowire.AppendVarint(mb, alias)
	mb = appendSpTimestamp(mb, spMetricTimestamp, sampleTime(s, now))
	if historical {
		mb = appendSpBool(mb, spMetricHistorical, true)
	}
	dt := spType(s)
	if dt == spUnknown {
		mb = appendSpBool(mb, spMetricNull, true)
	}
	mb = appendSpQuality(mb, s.Status)
	if dt != spUnknown {
		mb = appendSpValue(mb, dt, s.Value)
	}
	return mb
}

// outgoing adds the connection's seq to a spooled record. A DBIRTH is
// encoded anew from the latest values, so that a birth spooled long ago
// does not set a host's tags back.
func (f *sparkplugFormat) Outgoing(topic string, payload []byte) []byte {
	kind, id := f.splitTopic(topic)
	switch kind {
	case "DBIRTH":
		f.live[id] = true
		seq := f.nextSeq()
		f.mu.Lock()
		defer f.mu.Unlock()
		if d, ok := f.byID[id]; ok {
			return f.sendBirth(d, time.Now(), seq)
		}
		return appendSpSeq(payload, seq)
	case "DDATA":
		f.live[id] = true
		if echo := f.echo[id]; len(echo) > 0 {
			if payload = withoutEchoes(payload, echo); payload == nil {
				return nil // every value is in the DBIRTH sent before
			}
		}
		payload = withSpTimestamp(payload, time.Now())
	case "DDEATH":
		f.live[id] = false
		delete(f.echo, id)
	default: // not ours: spooled by another payload format before a change
		return payload
	}
	return appendSpSeq(payload, f.nextSeq())
}

// sendBirth encodes d's DBIRTH as it goes out, with the latest values,
// and keeps them for the device's next DDATA, which need not repeat them.
// f.mu is held.
func (f *sparkplugFormat) sendBirth(d *spDevice, now time.Time, seq uint64) []byte {
	echo := map[string]uint64{}
	for _, m := range d.metrics {
		if m.has && m.datatype != spUnknown {
			echo[string(f.appendDataMetric(nil, m.alias, &m.last, now, false))] = m.alias
			echo[string(f.appendDataMetric(nil, m.alias, &m.last, now, true))] = m.alias
		}
	}
	f.echo[d.id] = echo
	return f.appendBirth(nil, d, now, true, seq)
}

// withoutEchoes returns a spooled DDATA payload without the metrics in
// echo (byte for byte a value of the DBIRTH sent before: same alias,
// timestamp, status and value), which it takes out of echo, or nil if no
// metric is left.
func withoutEchoes(payload []byte, echo map[string]uint64) []byte {
	out := make([]byte, 0, len(payload))
	kept := 0
	walkFields(payload, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) {
		switch {
		case num == spPayloadMetrics && typ == protowire.BytesType:
			if alias, ok := echo[string(v)]; ok {
				for k, a := range echo { // its other encoding too: once only
					if a == alias {
						delete(echo, k)
					}
				}
				return
			}
			kept++
			out = protowire.AppendTag(out, num, typ)
			out = protowire.AppendBytes(out, v)
		case typ == protowire.VarintType:
			out = protowire.AppendTag(out, num, typ)
			out = protowire.AppendVarint(out, n)
		case typ == protowire.BytesType:
			out = protowire.AppendTag(out, num, typ)
			out = protowire.AppendBytes(out, v)
		}
	})
	if kept == 0 {
		return nil
	}
	return out
}

// prelude returns what must go out before a spooled record: the DBIRTH of
// a device whose DDATA comes on a connection that has not born it, as the
// spool's first records after a crash do.
func (f *sparkplugFormat) Prelude(topic string) []Message {
	kind, id := f.splitTopic(topic)
	if kind != "DDATA" || f.live[id] {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.byID[id]
	if !ok {
		return nil
	}
	f.live[id] = true
	return []Message{{Topic: d.birth, Payload: f.sendBirth(d, time.Now(), f.nextSeq())}}
}

// withSpTimestamp returns a DDATA payload whose Payload.timestamp is t,
// the time it is sent (its metrics keep the source times): encode puts the
// timestamp first.
func withSpTimestamp(payload []byte, t time.Time) []byte {
	num, typ, n := protowire.ConsumeTag(payload)
	if n < 0 || num != spPayloadTimestamp || typ != protowire.VarintType {
		return payload
	}
	_, m := protowire.ConsumeVarint(payload[n:])
	if m < 0 {
		return payload
	}
	b := appendSpTimestamp(make([]byte, 0, len(payload)+12), spPayloadTimestamp, t)
	return append(b, payload[n+m:]...)
}

// splitTopic returns the message type and device id of one of our topics.
func (f *sparkplugFormat) splitTopic(topic string) (kind, id string) {
	rest, ok := strings.CutPrefix(topic, f.prefix)
	if !ok {
		return "", ""
	}
	kind, rest, _ = strings.Cut(rest, "/")
	_, id, _ = strings.Cut(rest, "/")
	return kind, id
}

func (f *sparkplugFormat) nextSeq() uint64 {
	s := f.seq
	f.seq = (f.seq + 1) % 256
	return s
}

func (f *sparkplugFormat) Will() (Message, bool) {
	return Message{Topic: f.nodeTopic("NDEATH"), Payload: f.appendDeath(nil, time.Time{})}, true
}

// appendDeath appends an NDEATH payload: bdSeq, no seq; the will's has no
// timestamp, as it is made long before the broker sends it.
func (f *sparkplugFormat) appendDeath(b []byte, now time.Time) []byte {
	if !now.IsZero() {
		b = appendSpTimestamp(b, spPayloadTimestamp, now)
	}
	return f.appendBDSeq(b, now)
}

func (f *sparkplugFormat) appendBDSeq(b []byte, now time.Time) []byte {
	var mb []byte
	mb = protowire.AppendTag(mb, spMetricName, protowire.BytesType)
	mb = protowire.AppendString(mb, spBDSeq)
	mb = protowire.AppendTag(mb, spMetricAlias, protowire.VarintType)
	mb = protowire.AppendVarint(mb, f.bdSeqAlias)
	if !now.IsZero() {
		mb = appendSpTimestamp(mb, spMetricTimestamp, now)
	}
	mb = protowire.AppendTag(mb, spMetricDatatype, protowire.VarintType)
	mb = protowire.AppendVarint(mb, spInt64)
	mb = protowire.AppendTag(mb, spMetricLong, protowire.VarintType)
	mb = protowire.AppendVarint(mb, f.bdSeq.Load())
	b = protowire.AppendTag(b, spPayloadMetrics, protowire.BytesType)
	return protowire.AppendBytes(b, mb)
}

// connected starts the connection's seq at 0 with the NBIRTH, followed by
// the DBIRTH of every device born at the point of the spooled stream where
// sending resumes (devices born later are born by their spooled DBIRTH).
func (f *sparkplugFormat) Connected() []Message {
	now := time.Now()
	f.seq = 0
	b := appendSpTimestamp(nil, spPayloadTimestamp, now)
	b = f.appendBDSeq(b, now)
	var mb []byte
	mb = protowire.AppendTag(mb, spMetricName, protowire.BytesType)
	mb = protowire.AppendString(mb, spRebirth)
	mb = protowire.AppendTag(mb, spMetricAlias, protowire.VarintType)
	mb = protowire.AppendVarint(mb, f.rebirthAlias)
	mb = appendSpTimestamp(mb, spMetricTimestamp, now)
	mb = protowire.AppendTag(mb, spMetricDatatype, protowire.VarintType)
	mb = protowire.AppendVarint(mb, spBoolean)
	mb = appendSpValue(mb, spBoolean, false)
	b = protowire.AppendTag(b, spPayloadMetrics, protowire.BytesType)
	b = protowire.AppendBytes(b, mb)
	b = appendSpSeq(b, f.nextSeq())
	msgs := []Message{{Topic: f.nodeTopic("NBIRTH"), Payload: b}}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.order {
		if f.live[d.id] {
			msgs = append(msgs, Message{Topic: d.birth, Payload: f.sendBirth(d, now, f.nextSeq())})
		}
	}
	return msgs
}

func (f *sparkplugFormat) Stopping() []Message {
	return []Message{{Topic: f.nodeTopic("NDEATH"), Payload: f.appendDeath(nil, time.Now())}}
}

// commandTopics are the node's NCMD topic and its devices' DCMD topics,
// which an edge node subscribes to (tagbridge writes nothing: a DCMD is
// taken and ignored).
func (f *sparkplugFormat) CommandTopics() []string {
	topics := []string{f.nodeTopic("NCMD"), f.nodeTopic("DCMD") + "/+"}
	if f.hostTopic != "" {
		topics = append(topics, f.hostTopic)
	}
	return topics
}

// gate reports whether the node may be born and send: always, or with
// sparkplug.primary_host_id while its host is online; changed is closed
// when that changes.
func (f *sparkplugFormat) Gate() (open bool, changed <-chan struct{}) {
	if f.hostTopic == "" {
		return true, nil
	}
	f.hostMu.Lock()
	defer f.hostMu.Unlock()
	return f.hostOnline, f.hostChanged
}

// setHost takes a STATE of the primary host, unless it is older than
// the latest taken (stamp -1: a new session, which forgets the host).
func (f *sparkplugFormat) setHost(online bool, stamp int64) {
	if f.hostTopic == "" {
		return
	}
	f.hostMu.Lock()
	defer f.hostMu.Unlock()
	if stamp >= 0 && stamp < f.hostStamp {
		return
	}
	if stamp >= 0 {
		f.hostStamp = stamp
	}
	if online != f.hostOnline {
		f.hostOnline = online
		close(f.hostChanged)
		f.hostChanged = make(chan struct{})
	}
}

// hostState takes a STATE payload (Sparkplug 3.0: JSON, {"online": true,
// "timestamp": ms}); anything else is ignored.
func (f *sparkplugFormat) hostState(payload []byte) {
	var st struct {
		Online    *bool `json:"online"`
		Timestamp int64 `json:"timestamp"`
	}
	if json.Unmarshal(payload, &st) != nil || st.Online == nil || st.Timestamp < 0 {
		return
	}
	f.setHost(*st.Online, st.Timestamp)
}

// command reports whether an NCMD payload asks for a rebirth: a metric
// named Node Control/Rebirth with the boolean value true.
func (f *sparkplugFormat) Command(topic string, payload []byte) bool {
	if f.hostTopic != "" && topic == f.hostTopic {
		f.hostState(payload)
		return false
	}
	if topic != f.nodeTopic("NCMD") {
		return false
	}
	rebirth := false
	walkFields(payload, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		if num != spPayloadMetrics || typ != protowire.BytesType {
			return
		}
		var name string
		var value, isBool bool
		walkFields(v, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) {
			switch {
			case num == spMetricName && typ == protowire.BytesType:
				name = string(v)
			case num == spMetricBool && typ == protowire.VarintType:
				value, isBool = n != 0, true
			case num >= spMetricInt && num <= spMetricExtension && typ == spValueWireType[num-spMetricInt]:
				isBool = false // the value oneof: the last one counts
			}
		})
		if name == spRebirth && isBool && value {
			rebirth = true
		}
	})
	return rebirth
}

// spValueWireType is the wire type of Metric's value fields, from int_value.
var spValueWireType = [...]protowire.Type{
	protowire.VarintType, protowire.VarintType, protowire.Fixed32Type, protowire.Fixed64Type,
	protowire.VarintType, protowire.BytesType, protowire.BytesType, protowire.BytesType,
	protowire.BytesType, protowire.BytesType,
}

// walkFields calls fn for each field of a protobuf message, with the bytes
// of a length-delimited field or the number of a varint; it stops at the
// first malformed field.
func walkFields(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, n uint64)) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return
		}
		fn(num, typ, v, x)
		b = b[n:]
	}
}

// spType is the Sparkplug datatype of a sample's value: by its Go type,
// narrowed by the OPC UA type name where the collector widened it;
// spUnknown for no value. A one-dimensional array of a scalar type is that
// type's array; other arrays, structures and composite values go as String,
// holding their JSON text.
func spType(s *collectors.Sample) uint32 {
	return spValueType(s.Value, s.Type)
}

// spDeclaredType is the datatype a sample announces: its value's, or for
// a null value the node's DataType, which the collector gives in Type
// (a trailing "[]" for an array), when it knows it.
func spDeclaredType(s *collectors.Sample) uint32 {
	if s.Value != nil {
		return spType(s)
	}
	name, array := strings.CutSuffix(s.Type, "[]")
	switch name {
	case "", "Null", "BaseDataType", "Variant", "Number", "Integer", "UInteger", "Structure", "DataValue", "DiagnosticInfo":
		return spUnknown // no type, or one that names no Sparkplug datatype yet
	}
	if array {
		return spArrayType([]any{}, name)
	}
	var zero any
	switch name {
	case "Boolean":
		zero = false
	case "SByte":
		zero = int8(0)
	case "Int16":
		zero = int16(0)
	case "Int32":
		zero = int32(0)
	case "Int64":
		zero = int64(0)
	case "Byte":
		zero = uint8(0)
	case "UInt16":
		zero = uint16(0)
	case "UInt32":
		zero = uint32(0)
	case "UInt64":
		zero = uint64(0)
	case "Float":
		zero = float32(0)
	case "Double":
		zero = float64(0)
	case "DateTime":
		zero = time.Time{}
	case "ByteString":
		zero = []byte{}
	default:
		zero = "" // String, LocalizedText, NodeId, Guid, structures...: String
	}
	return spValueType(zero, name)
}

func spValueType(v any, typ string) uint32 {
	switch v := v.(type) {
	case nil:
		return spUnknown
	case []any:
		return spArrayType(v, typ)
	case bool:
		return spBoolean
	case int8:
		return spInt8
	case int16:
		return spInt16
	case int32:
		return spInt32
	case int, int64:
		switch typ {
		case "SByte":
			return spInt8
		case "Int16":
			return spInt16
		case "Int32":
			return spInt32
		}
		return spInt64
	case uint8:
		return spUInt8
	case uint16:
		return spUInt16
	case uint32:
		return spUInt32
	case uint, uint64:
		switch typ {
		case "Byte":
			return spUInt8
		case "UInt16":
			return spUInt16
		case "UInt32":
			return spUInt32
		}
		return spUInt64
	case float32:
		return spFloat
	case float64:
		return spDouble
	case string:
		return spString
	case []byte:
		return spBytes
	case time.Time:
		return spDateTime
	}
	return spString
}

// spArrayType is the array datatype of a []any whose elements are all of
// the scalar type typ names, or String (JSON) if there is none.
func spArrayType(v []any, typ string) uint32 {
	var dt uint32
	switch typ {
	case "SByte", "Int16", "Int32", "Int64", "Byte", "UInt16", "UInt32", "UInt64", "Float", "Double", "Boolean", "String", "DateTime":
	default:
		return spString
	}
	for i, e := range v {
		et := spValueType(e, typ)
		if s, ok := e.(string); ok && strings.IndexByte(s, 0) >= 0 {
			return spString // StringArray ends each string with a NUL
		}
		if i == 0 {
			dt = et
		}
		if et != dt || et < spInt8 || et > spDateTime || et == spString && typ != "String" {
			return spString
		}
	}
	if dt == spUnknown { // empty: the element type from the name
		dt = spValueType(map[string]any{
			"SByte": int8(0), "Int16": int16(0), "Int32": int32(0), "Int64": int64(0),
			"Byte": uint8(0), "UInt16": uint16(0), "UInt32": uint32(0), "UInt64": uint64(0),
			"Float": float32(0), "Double": float64(0), "Boolean": false, "String": "", "DateTime": time.Time{},
		}[typ], typ)
	}
	return dt + spArray
}

// appendSpArray appends an array's bytes_value (Sparkplug 3.0, 6.4.17):
// elements little-endian at their width, DateTime as int64 ms; booleans as
// a uint32 count and then the bits, most significant first; strings each
// followed by a NUL.
func appendSpArray(b []byte, dt uint32, v []any) []byte {
	var a []byte
	switch dt - spArray {
	case spBoolean:
		a = binary.LittleEndian.AppendUint32(a, uint32(len(v)))
		bits := make([]byte, (len(v)+7)/8)
		for i, e := range v {
			if e.(bool) {
				bits[i/8] |= 0x80 >> (i % 8)
			}
		}
		a = append(a, bits...)
	case spString:
		for _, e := range v {
			a = append(append(a, e.(string)...), 0)
		}
	default:
		for _, e := range v {
			switch dt - spArray {
			case spInt8:
				a = append(a, byte(toInt64(e)))
			case spUInt8:
				a = append(a, byte(toUint64(e)))
			case spInt16:
				a = binary.LittleEndian.AppendUint16(a, uint16(toInt64(e)))
			case spUInt16:
				a = binary.LittleEndian.AppendUint16(a, uint16(toUint64(e)))
			case spInt32:
				a = binary.LittleEndian.AppendUint32(a, uint32(toInt64(e)))
			case spUInt32:
				a = binary.LittleEndian.AppendUint32(a, uint32(toUint64(e)))
			case spInt64:
				a = binary.LittleEndian.AppendUint64(a, uint64(toInt64(e)))
			case spUInt64:
				a = binary.LittleEndian.AppendUint64(a, toUint64(e))
			case spFloat:
				a = binary.LittleEndian.AppendUint32(a, math.Float32bits(e.(float32)))
			case spDouble:
				a = binary.LittleEndian.AppendUint64(a, math.Float64bits(e.(float64)))
			case spDateTime:
				a = binary.LittleEndian.AppendUint64(a, uint64(e.(time.Time).UnixMilli()))
			}
		}
	}
	b = protowire.AppendTag(b, spMetricBytes, protowire.BytesType)
	return protowire.AppendBytes(b, a)
}

// appendSpValue appends the value field for datatype dt, which spType gave v.
func appendSpValue(b []byte, dt uint32, v any) []byte {
	if dt > spArray {
		return appendSpArray(b, dt, v.([]any))
	}
	switch dt {
	case spInt8, spInt16, spInt32:
		// Sign-extended to 32 bits, as the specification's uint32 holds it.
		b = protowire.AppendTag(b, spMetricInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(uint32(int32(toInt64(v)))))
	case spUInt8, spUInt16, spUInt32:
		b = protowire.AppendTag(b, spMetricInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(uint32(toUint64(v))))
	case spInt64:
		b = protowire.AppendTag(b, spMetricLong, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(toInt64(v)))
	case spUInt64:
		b = protowire.AppendTag(b, spMetricLong, protowire.VarintType)
		return protowire.AppendVarint(b, toUint64(v))
	case spFloat:
		b = protowire.AppendTag(b, spMetricFloat, protowire.Fixed32Type)
		return protowire.AppendFixed32(b, math.Float32bits(v.(float32)))
	case spDouble:
		b = protowire.AppendTag(b, spMetricDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v.(float64)))
	case spBoolean:
		return appendSpBool(b, spMetricBool, v.(bool))
	case spDateTime:
		b = protowire.AppendTag(b, spMetricLong, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(v.(time.Time).UnixMilli()))
	case spBytes:
		b = protowire.AppendTag(b, spMetricBytes, protowire.BytesType)
		return protowire.AppendBytes(b, v.([]byte))
	}
	b = protowire.AppendTag(b, spMetricString, protowire.BytesType)
	if s, ok := v.(string); ok {
		return protowire.AppendString(b, s)
	}
	return protowire.AppendBytes(b, appendValue(nil, v))
}

func toInt64(v any) int64 {
	switch x := v.(type) {
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case int64:
		return x
	}
	return 0
}

func toUint64(v any) uint64 {
	switch x := v.(type) {
	case uint8:
		return uint64(x)
	case uint16:
		return uint64(x)
	case uint32:
		return uint64(x)
	case uint:
		return uint64(x)
	case uint64:
		return x
	}
	return 0
}

// Quality property values: the three Sparkplug 3.0 names (Ignition's codes).
const (
	spQualityBad   = 0
	spQualityGood  = 192
	spQualityStale = 500
)

// appendSpQuality appends, for a value whose status is not Good, the
// metric property "Quality" (Int32): 0 (Bad) for Bad, 500 (Stale) for
// Uncertain, which OPC UA uses for last usable, substituted and sensor-
// doubtful values. A Good value carries none, which hosts read as 192.
func appendSpQuality(b []byte, status string) []byte {
	var q uint64
	switch {
	case status == "" || strings.HasPrefix(status, "Good"):
		return b
	case strings.HasPrefix(status, "Uncertain"):
		q = spQualityStale
	default:
		q = spQualityBad
	}
	var pv []byte // PropertyValue{type: Int32, int_value: q}
	pv = protowire.AppendTag(pv, 1, protowire.VarintType)
	pv = protowire.AppendVarint(pv, spInt32)
	pv = protowire.AppendTag(pv, 3, protowire.VarintType)
	pv = protowire.AppendVarint(pv, q)
	var ps []byte // PropertySet{keys: ["Quality"], values: [pv]}
	ps = protowire.AppendTag(ps, 1, protowire.BytesType)
	ps = protowire.AppendString(ps, "Quality")
	ps = protowire.AppendTag(ps, 2, protowire.BytesType)
	ps = protowire.AppendBytes(ps, pv)
	b = protowire.AppendTag(b, spMetricProperties, protowire.BytesType)
	return protowire.AppendBytes(b, ps)
}

func appendSpBool(b []byte, num protowire.Number, v bool) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, protowire.EncodeBool(v))
}

func appendSpTimestamp(b []byte, num protowire.Number, t time.Time) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(t.UnixMilli()))
}

// appendSpSeq appends Payload.seq. Appending works on an encoded payload
// too: the fields of a protobuf message may come in any order.
func appendSpSeq(b []byte, seq uint64) []byte {
	b = protowire.AppendTag(b, spPayloadSeq, protowire.VarintType)
	return protowire.AppendVarint(b, seq)
}

// sampleTime is when a value was taken: source time, else server time, else now.
func sampleTime(s *collectors.Sample, now time.Time) time.Time {
	switch {
	case !s.SourceTime.IsZero():
		return s.SourceTime
	case !s.ServerTime.IsZero():
		return s.ServerTime
	}
	return now
}
