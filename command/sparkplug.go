package command

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tagbridge/tagbridge/config"
)

// Sparkplug B datatypes a DCMD metric may carry, as OPC UA built-in types.
var spTypes = map[uint64]string{1: "SByte", 2: "Int16", 3: "Int32", 4: "Int64", 5: "Byte", 6: "UInt16", 7: "UInt32",
	8: "UInt64", 9: "Float", 10: "Double", 11: "Boolean", 12: "String", 13: "DateTime", 14: "String", 17: "ByteString"}

// spArray is added to a numeric datatype for its array (Int8Array = 22 ... DoubleArray = 31).
const spArray = 21

// Field numbers of Payload and Payload.Metric.
const (
	spPayloadTimestamp = 1
	spPayloadMetrics   = 2
	spPayloadSeq       = 3
	spMetricName       = 1
	spMetricAlias      = 2
	spMetricTimestamp  = 3
	spMetricDatatype   = 4
	spMetricNull       = 7
	spMetricProperties = 9
	spPropertyKeys     = 1
	spPropertyValues   = 2
	spPropertyString   = 8
	spMetricInt        = 10
	spMetricLong       = 11
	spMetricFloat      = 12
	spMetricDouble     = 13
	spMetricBool       = 14
	spMetricString     = 15
	spMetricBytes      = 16
)

// AliasFunc resolves a metric alias of a device's DBIRTH to its tag name.
type AliasFunc func(plc string, alias uint64) (tag string, ok bool)

// sparkplugRoutes maps DCMD topics (spBv1.0/<group>/DCMD/<node>/<device>)
// to PLC entries; a device is a PLC entry, a metric a tag. The node's NCMD
// writes a device's tag by a metric named <device>/<tag>.
type sparkplugRoutes struct {
	prefix   string                       // spBv1.0/<group>/DCMD/<node>/
	filter   string                       // prefix + "+"
	ncmd     string                       // spBv1.0/<group>/NCMD/<node>
	nodeAck  string                       // where node-level NCMD results go
	devices  map[string]string            // device id -> PLC entry
	replies  map[string]map[string]string // result topics by PLC entry and tag
	agent    string
	template string // mqtt.topic
	aliases  atomic.Pointer[AliasFunc]
}

func newSparkplugRoutes(cfg *config.Config) *sparkplugRoutes {
	prefix := "spBv1.0/" + cfg.MQTT.Sparkplug.GroupID + "/DCMD/" + cfg.Agent.ID + "/"
	sp := &sparkplugRoutes{prefix: prefix, filter: prefix + "+", devices: map[string]string{}, replies: map[string]map[string]string{},
		agent: cfg.Agent.ID, template: cfg.MQTT.Topic,
		ncmd: "spBv1.0/" + cfg.MQTT.Sparkplug.GroupID + "/NCMD/" + cfg.Agent.ID, nodeAck: NodeCommandResults(cfg.Agent.ID)}
	for _, p := range cfg.PLCs {
		sp.devices[p.Name] = p.Name
		sp.replies[p.Name] = map[string]string{}
		for _, t := range p.Tags {
			sp.replies[p.Name][t.Name] = render(cmp.Or(t.Topic, cfg.MQTT.Topic), cfg.Agent.ID, p.Name, t.Name) + "/set/result"
		}
	}
	return sp
}

// reply is where the result of a write to a metric goes: the tag's topic
// plus /set/result, as in the json format; none for a name that cannot
// stand in a topic.
func (sp *sparkplugRoutes) reply(plc, metric string) string {
	if r, ok := sp.replies[plc][metric]; ok {
		return r
	}
	if metric == "" || strings.ContainsAny(metric, "/+#\x00") {
		return ""
	}
	return render(sp.template, sp.agent, plc, metric) + "/set/result"
}

// SetAliases tells the handler how to resolve Sparkplug metric aliases
// (the publisher assigns them in its births).
func (h *Handler) SetAliases(f AliasFunc) {
	if h.sp != nil {
		h.sp.aliases.Store(&f)
	}
}

func (sp *sparkplugRoutes) matches(topic string) bool {
	return strings.HasPrefix(topic, sp.prefix) && !strings.Contains(topic[len(sp.prefix):], "/")
}

// NodeCommandResults is where the results of NCMD node controls other
// than Rebirth go (Node Control/Reboot, ...): tagbridge takes none of them.
func NodeCommandResults(agent string) string { return "tagbridge/" + agent + "/ncmd/result" }

// spPayload is a DCMD or NCMD payload's timestamp, seq and metrics.
func spPayload(payload []byte) (ts, seq uint64, metrics [][]byte, err error) {
	if !walk(payload, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) bool {
		switch {
		case num == spPayloadTimestamp && typ == protowire.VarintType:
			ts = n
		case num == spPayloadSeq && typ == protowire.VarintType:
			seq = n
		case num == spPayloadMetrics && typ == protowire.BytesType:
			metrics = append(metrics, v)
		}
		return true
	}) {
		return 0, 0, nil, refuse(BadRequest, "not a Sparkplug B payload")
	}
	if len(metrics) == 0 {
		return 0, 0, nil, refuse(BadRequest, "command without metrics")
	}
	return ts, seq, metrics, nil
}

// decode turns a DCMD into one write per metric. The id of each is the
// payload's timestamp and seq with the metric, so a redelivered DCMD is a
// duplicate; the payload's timestamp is the time it was sent.
func (sp *sparkplugRoutes) decode(topic string, payload []byte) ([]pending, error) {
	plc, ok := sp.devices[topic[len(sp.prefix):]]
	if !ok {
		return nil, refuse(NotAllowed, "device %q is not a PLC entry", topic[len(sp.prefix):])
	}
	ts, seq, metrics, err := spPayload(payload)
	if err != nil {
		return nil, err
	}
	var out []pending
	for _, m := range metrics {
		sm, err := sp.metric(plc, m)
		req := sm.Request
		req.PLC, req.Kind = plc, Write
		sp.identify(&req, topic, "dcmd", cmp.Or(ts, sm.stamp), seq, req.Target, sm.signed)
		req.Reply = sp.reply(plc, req.Target)
		out = append(out, pending{req, err})
	}
	return out, nil
}

// identify gives a Sparkplug write its id, sent time and signed bytes.
func (sp *sparkplugRoutes) identify(req *Request, topic, kind string, stamp, seq uint64, name string, signed []byte) {
	req.ID = fmt.Sprintf("%s/%d/%d/%s", kind, stamp, seq, name)
	if stamp > 0 && stamp < math.MaxInt64 {
		req.Sent = time.UnixMilli(int64(stamp))
	}
	if req.MAC != nil {
		req.Signed = SignedBytes(topic, req.ID, signed, "")
	}
}

// spRebirth is the node control the publisher's format answers itself.
const spRebirth = "Node Control/Rebirth"

// decodeNCMD turns an NCMD into writes of metrics named <device>/<tag>,
// and refusals of the node controls tagbridge does not take; Rebirth is
// left to the format, which answers it with new births.
func (sp *sparkplugRoutes) decodeNCMD(topic string, payload []byte) ([]pending, error) {
	ts, seq, metrics, err := spPayload(payload)
	if err != nil {
		return nil, err
	}
	var out []pending
	for _, m := range metrics {
		name := spName(m)
		stamp := ts
		switch {
		case name == spRebirth:
			continue
		case strings.HasPrefix(name, "Node Control/"):
			req := Request{Kind: Write, Target: name, Reply: sp.nodeAck}
			sp.identify(&req, topic, "ncmd", stamp, seq, name, nil)
			out = append(out, pending{req, refuse(NotAllowed, "%s is not supported: tagbridge takes Node Control/Rebirth only (it restarts through its service manager)", name)})
			continue
		case name == "":
			req := Request{Kind: Write, Reply: sp.nodeAck}
			sp.identify(&req, topic, "ncmd", stamp, seq, "", nil)
			out = append(out, pending{req, refuse(BadRequest, "an NCMD metric is named device/tag or Node Control/...; aliases are a device's (DCMD)")})
			continue
		}
		device, tag, _ := strings.Cut(name, "/")
		plc, ok := sp.devices[device]
		if !ok || tag == "" {
			req := Request{Kind: Write, Target: name, Reply: sp.nodeAck}
			sp.identify(&req, topic, "ncmd", stamp, seq, name, nil)
			out = append(out, pending{req, refuse(NotAllowed, "metric %q names no device/tag of this node", name)})
			continue
		}
		sm, err := sp.metric(plc, m)
		req := sm.Request
		req.PLC, req.Kind, req.Target = plc, Write, tag
		sp.identify(&req, topic, "ncmd", cmp.Or(ts, sm.stamp), seq, name, sm.signed)
		req.Reply = sp.reply(plc, tag)
		out = append(out, pending{req, err})
	}
	return out, nil
}

// spName is a metric's name, "" when it has none.
func spName(b []byte) (name string) {
	walk(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) bool {
		if num == spMetricName && typ == protowire.BytesType {
			name = string(v)
		}
		return true
	})
	return name
}

type spMetric struct {
	Request
	stamp  uint64 // the metric's own timestamp
	signed []byte // the metric without its properties: what its hmac covers
}

func (sp *sparkplugRoutes) metric(plc string, b []byte) (spMetric, error) {
	var m spMetric
	var alias uint64
	var hasAlias, isNull bool
	var dt uint64
	var value any
	var raw []byte
	ok := walk(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) bool {
		switch {
		case num == spMetricName && typ == protowire.BytesType:
			m.Target = string(v)
		case num == spMetricAlias && typ == protowire.VarintType:
			alias, hasAlias = n, true
		case num == spMetricTimestamp && typ == protowire.VarintType:
			m.stamp = n
		case num == spMetricDatatype && typ == protowire.VarintType:
			dt = n
		case num == spMetricNull && typ == protowire.VarintType:
			isNull = n != 0
		case num == spMetricInt && typ == protowire.VarintType, num == spMetricLong && typ == protowire.VarintType:
			value = n
		case num == spMetricFloat && typ == protowire.Fixed32Type:
			value = math.Float32frombits(uint32(n))
		case num == spMetricDouble && typ == protowire.Fixed64Type:
			value = math.Float64frombits(n)
		case num == spMetricBool && typ == protowire.VarintType:
			value = n != 0
		case num == spMetricString && typ == protowire.BytesType:
			value = string(v)
		case num == spMetricBytes && typ == protowire.BytesType:
			raw = v
		case num == spMetricProperties && typ == protowire.BytesType:
			mac, err := spHMAC(v)
			if err != nil {
				m.MAC = []byte{} // signed, badly: never matches
				return true
			}
			m.MAC = mac
		}
		return true
	})
	if !ok {
		return m, refuse(BadRequest, "malformed metric")
	}
	if m.MAC != nil {
		m.signed = withoutField(b, spMetricProperties)
	}
	if m.Target == "" && hasAlias {
		if f := sp.aliases.Load(); f != nil {
			m.Target, _ = (*f)(plc, alias)
		}
		if m.Target == "" {
			return m, refuse(NotAllowed, "alias %d of device %q names no tag", alias, plc)
		}
	}
	if m.Target == "" {
		return m, refuse(BadRequest, "metric without name or alias")
	}
	if isNull {
		return m, refuse(WrongType, "value required (null is not written)")
	}
	if dt > spArray && dt <= spArray+10 {
		arr, err := spNumericArray(dt-spArray, raw)
		if err != nil {
			return m, err
		}
		m.Value, m.Type = arr, spTypes[dt-spArray]+"[]"
		return m, nil
	}
	typ, known := spTypes[dt]
	if !known {
		return m, refuse(WrongType, "Sparkplug datatype %d is not writable", dt)
	}
	if dt == 17 {
		value = raw
	}
	v, err := spScalar(dt, value)
	if err != nil {
		return m, err
	}
	m.Value, m.Type = v, typ
	return m, nil
}

// spScalar gives a metric's value its datatype's Go type; int_value holds
// the signed types as two's complement of their width.
func spScalar(dt uint64, v any) (any, error) {
	n, isInt := v.(uint64)
	switch dt {
	case 1, 2, 3:
		if isInt {
			return int64(int32(uint32(n))), nil
		}
	case 4:
		if isInt {
			return int64(n), nil
		}
	case 5, 6, 7, 8:
		if isInt {
			return n, nil
		}
	case 13:
		if isInt {
			return time.UnixMilli(int64(n)).UTC(), nil
		}
	case 9:
		if f, ok := v.(float32); ok {
			return f, nil
		}
	case 10:
		if f, ok := v.(float64); ok {
			return f, nil
		}
	case 11:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case 12, 14:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case 17:
		if b, ok := v.([]byte); ok {
			return b, nil
		}
	}
	return nil, refuse(WrongType, "metric value does not match its datatype %d", dt)
}

// spNumericArray decodes a packed little-endian array of a numeric datatype.
func spNumericArray(dt uint64, b []byte) (any, error) {
	size := map[uint64]int{1: 1, 2: 2, 3: 4, 4: 8, 5: 1, 6: 2, 7: 4, 8: 8, 9: 4, 10: 8}[dt]
	if size == 0 || len(b)%size != 0 {
		return nil, refuse(WrongType, "array datatype %d is not writable or its bytes do not fit it", dt+spArray)
	}
	out := make([]any, len(b)/size)
	for i := range out {
		e := b[i*size:]
		switch dt {
		case 1:
			out[i] = int64(int8(e[0]))
		case 2:
			out[i] = int64(int16(binary.LittleEndian.Uint16(e)))
		case 3:
			out[i] = int64(int32(binary.LittleEndian.Uint32(e)))
		case 4:
			out[i] = int64(binary.LittleEndian.Uint64(e))
		case 5:
			out[i] = uint64(e[0])
		case 6:
			out[i] = uint64(binary.LittleEndian.Uint16(e))
		case 7:
			out[i] = uint64(binary.LittleEndian.Uint32(e))
		case 8:
			out[i] = binary.LittleEndian.Uint64(e)
		case 9:
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(e))
		case 10:
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(e))
		}
	}
	return out, nil
}

// walk calls fn for each field of a protobuf message; it reports false on
// a malformed one.
func walk(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, n uint64) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var y uint32
			y, n = protowire.ConsumeFixed32(b)
			x = uint64(y)
		case protowire.Fixed64Type:
			x, n = protowire.ConsumeFixed64(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return false
		}
		b = b[n:]
		if !fn(num, typ, v, x) {
			return false
		}
	}
	return true
}

// spHMAC reads the "hmac" property (a string of hex) of a metric's
// PropertySet; nil when there is none.
func spHMAC(set []byte) ([]byte, error) {
	var keys []string
	var values [][]byte
	walk(set, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) bool {
		switch {
		case num == spPropertyKeys && typ == protowire.BytesType:
			keys = append(keys, string(v))
		case num == spPropertyValues && typ == protowire.BytesType:
			values = append(values, v)
		}
		return true
	})
	for i, k := range keys {
		if k != "hmac" || i >= len(values) {
			continue
		}
		var text string
		walk(values[i], func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) bool {
			if num == spPropertyString && typ == protowire.BytesType {
				text = string(v)
			}
			return true
		})
		return hex.DecodeString(text)
	}
	return nil, nil
}

// withoutField is a message's bytes with every occurrence of field num
// left out, the others as they came.
func withoutField(b []byte, skip protowire.Number) []byte {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil
		}
		if num != skip {
			out = append(out, b[:n+m]...)
		}
		b = b[n+m:]
	}
	return out
}
