package command

import (
	"cmp"
	"encoding/binary"
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
// to PLC entries; a device is a PLC entry, a metric a tag.
type sparkplugRoutes struct {
	prefix   string                       // spBv1.0/<group>/DCMD/<node>/
	filter   string                       // prefix + "+"
	devices  map[string]string            // device id -> PLC entry
	replies  map[string]map[string]string // result topics by PLC entry and tag
	agent    string
	template string // mqtt.topic
	aliases  atomic.Pointer[AliasFunc]
}

func newSparkplugRoutes(cfg *config.Config) *sparkplugRoutes {
	prefix := "spBv1.0/" + cfg.MQTT.Sparkplug.GroupID + "/DCMD/" + cfg.Agent.ID + "/"
	sp := &sparkplugRoutes{prefix: prefix, filter: prefix + "+", devices: map[string]string{}, replies: map[string]map[string]string{},
		agent: cfg.Agent.ID, template: cfg.MQTT.Topic}
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

// decode turns a DCMD into one write per metric. The id of each is the
// payload's timestamp and seq with the metric, so a redelivered DCMD is a
// duplicate; the payload's timestamp is the time it was sent.
func (sp *sparkplugRoutes) decode(topic string, payload []byte) ([]pending, error) {
	plc, ok := sp.devices[topic[len(sp.prefix):]]
	if !ok {
		return nil, refuse(NotAllowed, "device %q is not a PLC entry", topic[len(sp.prefix):])
	}
	var ts, seq uint64
	var metrics [][]byte
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
		return nil, refuse(BadRequest, "not a Sparkplug B payload")
	}
	if len(metrics) == 0 {
		return nil, refuse(BadRequest, "DCMD without metrics")
	}
	var out []pending
	for _, m := range metrics {
		sm, err := sp.metric(plc, m)
		req := sm.Request
		req.PLC, req.Kind = plc, Write
		stamp := cmp.Or(ts, sm.stamp)
		req.ID = fmt.Sprintf("dcmd/%d/%d/%s", stamp, seq, req.Target)
		if stamp > 0 && stamp < math.MaxInt64 {
			req.Sent = time.UnixMilli(int64(stamp))
		}
		req.Reply = sp.reply(plc, req.Target)
		out = append(out, pending{req, err})
	}
	return out, nil
}

type spMetric struct {
	Request
	stamp uint64 // the metric's own timestamp
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
		}
		return true
	})
	if !ok {
		return m, refuse(BadRequest, "malformed metric")
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
