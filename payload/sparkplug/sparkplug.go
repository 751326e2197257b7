package sparkplug

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/payload"
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
	payload.None
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
	// retired are tags a reload removed: values still on their way are
	// dropped, as no birth names them (retag.go).
	retired map[string]bool
}

type spMetric struct {
	name      string
	alias     uint64
	datatype  uint32 // of the latest non-null value; spUnknown before one
	announced uint32 // datatype in the latest DBIRTH appended at the intake
	last      collectors.Sample
	has       bool
}

// New builds the format from o; it opens no file (see Open).
func New(o payload.Options) (payload.Format, error) {
	f, err := newSparkplugFormat(o)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func newSparkplugFormat(o payload.Options) (*sparkplugFormat, error) {
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
	if err := payload.CheckTopic(f.nodeTopic("NBIRTH")); err != nil {
		return nil, fmt.Errorf("sparkplug topic: %w", err)
	}
	// Ids and names that differ only in case are refused: hosts such as
	// Ignition keep tags by case-insensitive paths, and one would hide the other.
	folded := map[string]string{} // device id, lower case -> plc
	for _, plc := range o.PLCs {
		id := payload.Level(plc.Name)
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

func (f *sparkplugFormat) nodeTopic(kind string) string {
	return f.prefix + kind + "/" + f.node
}

// device returns the PLC entry's device, made on first use; f.mu is held
// or the format not yet shared.
func (f *sparkplugFormat) device(plc string) *spDevice {
	if d, ok := f.devices[plc]; ok {
		return d
	}
	id := payload.Level(plc)
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

func isHeartbeat(s collectors.Sample) bool { return s.Heartbeat }

// TagOfAlias names the tag of a metric alias of a PLC entry's device.
func (f *sparkplugFormat) TagOfAlias(plc string, alias uint64) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devices[plc]
	if !ok {
		return "", false
	}
	for _, m := range d.metrics {
		if m.alias == alias {
			return m.name, true
		}
	}
	return "", false
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
	if slices.ContainsFunc(b, isHeartbeat) {
		// Heartbeats are not sent: the births carry every value, and a PLC
		// that is away is a DDEATH, after which a DDATA must not come.
		b = slices.DeleteFunc(slices.Clone(b), isHeartbeat)
	}
	now := time.Now()
	// One DDATA per device, in order of first appearance: a shared
	// session's batch may hold several.
	for i := range b {
		if !payload.FirstOfPLC(b, i) {
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
		slices.SortStableFunc(f.idx, func(x, y int) int { return payload.SampleTime(&b[x], now).Compare(payload.SampleTime(&b[y], now)) })
		f.mu.Lock()
		d := f.device(plc)
		if len(d.retired) > 0 {
			f.idx = slices.DeleteFunc(f.idx, func(j int) bool { return d.retired[b[j].Tag] })
		}
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
			f.mbuf = f.appendDataMetric(f.mbuf[:0], m.alias, s, now, !online || s.Historical)
			end := len(f.buf)
			f.buf = protowire.AppendTag(f.buf, spPayloadMetrics, protowire.BytesType)
			f.buf = protowire.AppendBytes(f.buf, f.mbuf)
			// outgoing adds the seq, 11 bytes at most.
			if end > start && payload.PacketSize(d.data, len(f.buf)+11, 1) > f.maxPacket {
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
func (f *sparkplugFormat) PLCState(st collectors.PLCState, add func(topic string, payload []byte)) []payload.Message {
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
			ts = payload.SampleTime(&m.last, now)
		}
		mb = appendSpTimestamp(mb, spMetricTimestamp, ts)
		mb = protowire.AppendTag(mb, spMetricDatatype, protowire.VarintType)
		mb = protowire.AppendVarint(mb, uint64(m.datatype))
		switch {
		case !m.has || spType(&m.last) == spUnknown:
			mb = appendSpBool(mb, spMetricNull, true)
			if m.has {
				mb = appendSpQuality(mb, m.last.StatusCode)
			}
		default:
			mb = appendSpQuality(mb, m.last.StatusCode)
			mb = appendSpSample(mb, spType(&m.last), &m.last)
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
	mb = appendSpTimestamp(mb, spMetricTimestamp, payload.SampleTime(s, now))
	if historical {
		mb = appendSpBool(mb, spMetricHistorical, true)
	}
	dt := spType(s)
	if dt == spUnknown {
		mb = appendSpBool(mb, spMetricNull, true)
	}
	mb = appendSpQuality(mb, s.StatusCode)
	if dt != spUnknown {
		mb = appendSpSample(mb, dt, s)
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

// prelude returns what must go out before a spooled record: the DBIRTH of
// a device whose DDATA comes on a connection that has not born it, as the
// spool's first records after a crash do.
func (f *sparkplugFormat) Prelude(topic string) []payload.Message {
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
	return []payload.Message{{Topic: d.birth, Payload: f.sendBirth(d, time.Now(), f.nextSeq())}}
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
