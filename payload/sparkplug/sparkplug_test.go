package sparkplug

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
	"github.com/tagbridge/tagbridge/payload/sparkplugb"
)

// Every value type the collectors produce, in a DBIRTH and a DDATA.
func TestSparkplugEncode(t *testing.T) {
	cfg := testkit.SparkplugConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	cfg.PLCs[0].Tags = nil
	ts := time.Date(2026, 11, 22, 10, 15, 30, 123000000, time.UTC)
	samples := collectors.Batch{
		{Tag: "bool", Value: true, Type: collectors.TypeBoolean},
		{Tag: "sbyte", Value: int8(-2), Type: collectors.TypeSByte},
		{Tag: "int16", Value: int16(-300), Type: collectors.TypeInt16},
		{Tag: "int32", Value: int64(-70000), Type: collectors.TypeInt32}, // widened by the collector
		{Tag: "int64", Value: int64(math.MinInt64), Type: collectors.TypeInt64},
		{Tag: "byte", Value: uint8(200), Type: collectors.TypeByte},
		{Tag: "uint32", Value: uint32(math.MaxUint32), Type: collectors.TypeUInt32},
		{Tag: "uint64", Value: uint64(math.MaxUint64), Type: collectors.TypeUInt64},
		{Tag: "float", Value: float32(1.5), Type: collectors.TypeFloat},
		{Tag: "double", Value: -2.25, Type: collectors.TypeDouble},
		{Tag: "string", Value: "ü", Type: collectors.TypeString},
		{Tag: "time", Value: ts, Type: collectors.TypeDateTime},
		{Tag: "bytes", Value: []byte{0, 1, 255}, Type: collectors.TypeByteString},
		{Tag: "array", Value: []any{int64(1), int64(2)}, Type: collectors.TypeInt32},
		{Tag: "null", Value: nil, Type: collectors.TypeDouble, StatusCode: 0x80340000}, // the node's DataType, from the collector
		{Tag: "uncertain", Value: 1.0, Type: collectors.TypeDouble, StatusCode: 0x40900000},
		{Tag: "bools", Value: []any{true, false, true, false, false, false, false, false, true}, Type: collectors.TypeBoolean},
		{Tag: "strings", Value: []any{"a", "", "bc"}, Type: collectors.TypeString},
		{Tag: "matrix", Value: []any{[]any{int64(1)}, []any{int64(2)}}, Type: collectors.TypeInt64},
		{Tag: "times", Value: []any{ts}, Type: collectors.TypeDateTime},
		{Tag: "sbytes", Value: []any{int8(-1), int8(2)}, Type: collectors.TypeSByte},
		{Tag: "untyped", Value: nil, Type: collectors.TypeNull, StatusCode: 0x80340000}, // no DataType known: left out
	}
	for i := range samples {
		cfg.PLCs[0].Tags = append(cfg.PLCs[0].Tags, config.Tag{Name: samples[i].Tag})
		samples[i].PLC = "press1"
		samples[i].SourceTime = ts.Add(time.Duration(i) * time.Millisecond)
	}
	f, err := newSparkplugFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		topic   string
		payload []byte
	}
	var recs []rec
	f.Encode(samples, false, func(topic string, payload []byte) {
		recs = append(recs, rec{topic, slices.Clone(payload)})
	})
	if len(recs) != 2 || recs[0].topic != "spBv1.0/plant1/DBIRTH/a1/press1" || recs[1].topic != "spBv1.0/plant1/DDATA/a1/press1" {
		t.Fatalf("records: %v", recs)
	}
	birth, data := testkit.DecodeSparkplug(t, recs[0].payload), testkit.DecodeSparkplug(t, recs[1].payload)
	if len(birth.Metrics) != len(samples)-1 || len(data.Metrics) != len(samples)-1 {
		t.Fatalf("metrics: %d in DBIRTH, %d in DDATA, want %d (all but the untyped null)", len(birth.Metrics), len(data.Metrics), len(samples)-1)
	}
	if data.Seq != nil || birth.Seq != nil {
		t.Errorf("spooled records carry a seq; outgoing adds it")
	}
	D := sparkplugb.DataType_value
	wantType := []string{"Boolean", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt32", "UInt64", "Float", "Double", "String", "DateTime", "Bytes", "Int32Array", "Double", "Double",
		"BooleanArray", "StringArray", "String", "DateTimeArray", "Int8Array"}
	for i, m := range birth.Metrics {
		s := &samples[i]
		d := data.Metrics[i]
		if m.GetName() != s.Tag || m.GetAlias() != uint64(i+1) || m.GetDatatype() != uint32(D[wantType[i]]) {
			t.Errorf("DBIRTH metric %d: name %q alias %d datatype %d, want %q %d %s", i, m.GetName(), m.GetAlias(), m.GetDatatype(), s.Tag, i+1, wantType[i])
		}
		if d.Name != nil || d.Datatype != nil || d.GetAlias() != uint64(i+1) || !d.GetIsHistorical() {
			t.Errorf("DDATA metric %d: %v; want alias %d only, historical", i, d, i+1)
		}
		if want := uint64(s.SourceTime.UnixMilli()); d.GetTimestamp() != want || m.GetTimestamp() != want {
			t.Errorf("metric %d: timestamps %d, %d, want %d", i, m.GetTimestamp(), d.GetTimestamp(), want)
		}
		// Both carry the same value.
		if !proto.Equal(&sparkplugb.Payload_Metric{Value: m.Value, IsNull: m.IsNull, Properties: m.Properties},
			&sparkplugb.Payload_Metric{Value: d.Value, IsNull: d.IsNull, Properties: d.Properties}) {
			t.Errorf("metric %d: DBIRTH value %v, DDATA %v", i, m, d)
		}
	}
	m := data.Metrics
	checks := []struct {
		name    string
		ok      bool
		got     any
		wantVal any
	}{
		{"bool", m[0].GetBooleanValue(), m[0].Value, true},
		{"sbyte", m[1].GetIntValue() == 0xFFFFFFFE, m[1].Value, "uint32 sign-extended"},
		{"int16", int32(m[2].GetIntValue()) == -300, m[2].Value, -300},
		{"int32", int32(m[3].GetIntValue()) == -70000, m[3].Value, -70000},
		{"int64", int64(m[4].GetLongValue()) == math.MinInt64, m[4].Value, int64(math.MinInt64)},
		{"byte", m[5].GetIntValue() == 200, m[5].Value, 200},
		{"uint32", m[6].GetIntValue() == math.MaxUint32, m[6].Value, uint32(math.MaxUint32)},
		{"uint64", m[7].GetLongValue() == math.MaxUint64, m[7].Value, uint64(math.MaxUint64)},
		{"float", m[8].GetFloatValue() == 1.5, m[8].Value, 1.5},
		{"double", m[9].GetDoubleValue() == -2.25, m[9].Value, -2.25},
		{"string", m[10].GetStringValue() == "ü", m[10].Value, "ü"},
		{"time", m[11].GetLongValue() == uint64(ts.UnixMilli()), m[11].Value, ts.UnixMilli()},
		{"bytes", string(m[12].GetBytesValue()) == "\x00\x01\xff", m[12].Value, "00 01 ff"},
		{"array", string(m[13].GetBytesValue()) == "\x01\x00\x00\x00\x02\x00\x00\x00", m[13].Value, "1, 2 as 4-byte little endian"},
		{"null", m[14].GetIsNull() && m[14].Value == nil && quality(m[14]) == 0 && birth.Metrics[14].GetIsNull(), m[14], "null, Quality 0"},
		{"uncertain", m[15].GetDoubleValue() == 1 && quality(m[15]) == 500, m[15], "1, Quality 500 (Stale)"},
		{"bools", string(m[16].GetBytesValue()) == "\x09\x00\x00\x00\xa0\x80", m[16].Value, "count 9, bits 10100000 10000000"},
		{"strings", string(m[17].GetBytesValue()) == "a\x00\x00bc\x00", m[17].Value, "NUL-terminated"},
		{"matrix", m[18].GetStringValue() == "[[1],[2]]", m[18].Value, "JSON"},
		{"times", string(m[19].GetBytesValue()) == string(binary.LittleEndian.AppendUint64(nil, uint64(ts.UnixMilli()))), m[19].Value, "ms, 8-byte little endian"},
		{"sbytes", string(m[20].GetBytesValue()) == "\xff\x02", m[20].Value, "ff 02"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.wantVal)
		}
	}
	if quality(m[0]) != -1 {
		t.Errorf("a Good value has a Quality property: %v", m[0])
	}

	// Online, a known datatype: DDATA alone, not historical. A new datatype
	// (a Double that turns String): DBIRTH first.
	recs = nil
	f.Encode(collectors.Batch{{PLC: "press1", Tag: "double", Value: 3.5, Type: collectors.TypeDouble}}, true, func(topic string, payload []byte) {
		recs = append(recs, rec{topic, slices.Clone(payload)})
	})
	if len(recs) != 1 || testkit.DecodeSparkplug(t, recs[0].payload).Metrics[0].IsHistorical != nil {
		t.Fatalf("online DDATA: %v", recs)
	}
	recs = nil
	f.Encode(collectors.Batch{{PLC: "press1", Tag: "double", Value: "x", Type: collectors.TypeString}}, true, func(topic string, payload []byte) {
		recs = append(recs, rec{topic, slices.Clone(payload)})
	})
	if len(recs) != 2 || !strings.Contains(recs[0].topic, "/DBIRTH/") || testkit.DecodeSparkplug(t, recs[0].payload).Metrics[9].GetDatatype() != uint32(D["String"]) {
		t.Fatalf("after a datatype change: %v", recs)
	}
}

// quality is the metric's Quality property, -1 if none.
func quality(m *sparkplugb.Payload_Metric) int {
	ps := m.GetProperties()
	for i, k := range ps.GetKeys() {
		if k == "Quality" && i < len(ps.GetValues()) {
			return int(ps.GetValues()[i].GetIntValue())
		}
	}
	return -1
}

// DDATA metrics go in time order, whatever the batch's order; the DBIRTH
// holds each tag's latest value in time.
func TestSparkplugTimeOrder(t *testing.T) {
	cfg := testkit.SparkplugConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	f, err := newSparkplugFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	at := func(tag string, v float64, ms int) collectors.Sample {
		s := testkit.Sample(tag, v, collectors.TypeDouble)
		s.SourceTime = t0.Add(time.Duration(ms) * time.Millisecond)
		return s
	}
	var recs [][]byte
	f.Encode(collectors.Batch{at("temperature", 3, 30), at("pressure", 1, 10), at("temperature", 2, 20), at("temperature", 4, 30)}, true,
		func(_ string, p []byte) { recs = append(recs, slices.Clone(p)) })
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	var got []float64
	var last uint64
	for _, m := range testkit.DecodeSparkplug(t, recs[1]).Metrics {
		if m.GetTimestamp() < last {
			t.Errorf("DDATA metric at %d after one at %d", m.GetTimestamp(), last)
		}
		last = m.GetTimestamp()
		got = append(got, m.GetDoubleValue())
	}
	if !slices.Equal(got, []float64{1, 2, 3, 4}) {
		t.Errorf("DDATA values %v, want 1 2 3 4 (time order, ties in batch order)", got)
	}
	if v := testkit.MetricNamed(t, testkit.DecodeSparkplug(t, recs[0]), "temperature").GetDoubleValue(); v != 4 {
		t.Errorf("DBIRTH temperature %v, want the latest, 4", v)
	}
}

// command agrees with the generated decoder on whether a payload asks for
// a rebirth.
func FuzzSparkplugCommand(f *testing.F) {
	for _, p := range []*sparkplugb.Payload{
		{Metrics: []*sparkplugb.Payload_Metric{{Name: proto.String(spRebirth), Value: &sparkplugb.Payload_Metric_BooleanValue{BooleanValue: true}}}},
		{Metrics: []*sparkplugb.Payload_Metric{{Name: proto.String(spRebirth), Value: &sparkplugb.Payload_Metric_BooleanValue{BooleanValue: false}}}},
		{Metrics: []*sparkplugb.Payload_Metric{{Name: proto.String("other"), Value: &sparkplugb.Payload_Metric_BooleanValue{BooleanValue: true}}}},
	} {
		b, err := proto.Marshal(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	sp := &sparkplugFormat{}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p sparkplugb.Payload
		if proto.Unmarshal(b, &p) != nil {
			sp.Command(sp.nodeTopic("NCMD"), b) // must not panic
			return
		}
		want := false
		for _, m := range p.Metrics {
			if m.GetName() == spRebirth && m.GetBooleanValue() {
				want = true
			}
		}
		if got := sp.Command(sp.nodeTopic("NCMD"), b); got != want {
			t.Errorf("command(%x) = %v, generated decoder says %v", b, got, want)
		}
		if sp.Command(sp.nodeTopic("DCMD")+"/press1", b) {
			t.Errorf("a DCMD asked for a rebirth")
		}
	})
}

// outgoing numbers the node's messages and re-encodes a DBIRTH with the
// latest values; a record of another format passes untouched.
func TestSparkplugOutgoing(t *testing.T) {
	cfg := testkit.SparkplugConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	f, err := newSparkplugFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	var topics []string
	var payloads [][]byte
	add := func(topic string, payload []byte) {
		topics = append(topics, topic)
		payloads = append(payloads, slices.Clone(payload))
	}
	f.Encode(collectors.Batch{testkit.Sample("temperature", 1.0, collectors.TypeDouble)}, true, add)
	f.Encode(collectors.Batch{testkit.Sample("temperature", 2.0, collectors.TypeDouble)}, true, add)
	if len(topics) != 3 {
		t.Fatalf("records: %q", topics)
	}
	if seq := testkit.DecodeSparkplug(t, f.Connected()[0].Payload).GetSeq(); seq != 0 {
		t.Fatalf("NBIRTH seq %d", seq)
	}
	birth := testkit.DecodeSparkplug(t, f.Outgoing(topics[0], payloads[0]))
	if birth.GetSeq() != 1 || testkit.MetricNamed(t, birth, "temperature").GetDoubleValue() != 2 {
		t.Errorf("DBIRTH as sent: %v, want seq 1 and the latest value, 2", birth)
	}
	spooled := testkit.DecodeSparkplug(t, payloads[1])
	sent := time.Now()
	d := testkit.DecodeSparkplug(t, f.Outgoing(topics[1], payloads[1]))
	if d.GetSeq() != 2 || d.Metrics[0].GetDoubleValue() != 1 {
		t.Errorf("DDATA as sent: %v", d)
	}
	// The payload's timestamp is the send time, the metric's the source time.
	if d.GetTimestamp() < uint64(sent.UnixMilli()) || d.Metrics[0].GetTimestamp() != spooled.Metrics[0].GetTimestamp() {
		t.Errorf("DDATA as sent: timestamp %d, metric %d; spooled %d, %d; sent at %d",
			d.GetTimestamp(), d.Metrics[0].GetTimestamp(), spooled.GetTimestamp(), spooled.Metrics[0].GetTimestamp(), sent.UnixMilli())
	}
	// The DDATA of 2 repeats the DBIRTH, which holds it: it need not go out.
	if out := f.Outgoing(topics[2], payloads[2]); out != nil {
		t.Errorf("DDATA repeating the DBIRTH as sent: %v", testkit.DecodeSparkplug(t, out))
	}
	if got := f.Outgoing("tagbridge/a1/press1/temperature", []byte(`{"v":1}`)); string(got) != `{"v":1}` {
		t.Errorf("a JSON record came out as %q", got)
	}
	// A reconnect births the device again, as it is live at this point.
	msgs := f.Connected()
	if len(msgs) != 2 || msgs[1].Topic != "spBv1.0/plant1/DBIRTH/a1/press1" || testkit.DecodeSparkplug(t, msgs[1].Payload).GetSeq() != 1 {
		t.Errorf("connected after data: %v", msgs)
	}
}

// Whatever the value, the DBIRTH and DDATA decode, and DDATA carries the
// value the DBIRTH announced the datatype of.
func FuzzSparkplugEncode(f *testing.F) {
	f.Add(uint8(0), int64(-1), uint64(1), 1.5, "x", []byte{1}, uint8(collectors.TypeInt32))
	f.Add(uint8(5), int64(0), uint64(0), math.Inf(-1), "a\x00b", []byte(nil), uint8(collectors.TypeString))
	f.Fuzz(func(t *testing.T, kind uint8, i int64, u uint64, fl float64, s string, b []byte, typ uint8) {
		var v any
		switch kind % 12 {
		case 0:
			v = i
		case 1:
			v = u
		case 2:
			v = fl
		case 3:
			v = float32(fl)
		case 4:
			v = s
		case 5:
			v = []any{s, s}
		case 6:
			v = b
		case 7:
			v = i%2 == 0
		case 8:
			v = []any{i, i / 2}
		case 9:
			v = []any{fl, i}
		case 10:
			v = map[string]any{s: i}
		case 11:
			v = []any{}
		}
		cfg := testkit.SparkplugConfig("tcp://127.0.0.1:1")
		cfg.Agent.SpoolDir = t.TempDir()
		sf, err := newSparkplugFormat(payload.FromConfig(cfg))
		if err != nil {
			t.Fatal(err)
		}
		var recs [][]byte
		sf.Encode(collectors.Batch{{PLC: "press1", Tag: "temperature", Value: v, Type: collectors.Type(typ)}}, true, func(_ string, p []byte) {
			recs = append(recs, slices.Clone(p))
		})
		if len(recs) != 2 {
			t.Fatalf("%d records", len(recs))
		}
		birth, data := testkit.DecodeSparkplug(t, recs[0]), testkit.DecodeSparkplug(t, recs[1])
		bm, dm := testkit.MetricNamed(t, birth, "temperature"), data.Metrics[0]
		if dm.GetAlias() != bm.GetAlias() || !proto.Equal(&sparkplugb.Payload_Metric{Value: bm.Value}, &sparkplugb.Payload_Metric{Value: dm.Value}) {
			t.Fatalf("DBIRTH %v, DDATA %v", bm, dm)
		}
		if dt := bm.GetDatatype(); dt == 0 || dt > uint32(sparkplugb.DataType_DateTimeArray) {
			t.Fatalf("datatype %d for %T %q", dt, v, typ)
		}
	})
}

// A null value is typed by the node's DataType, when the collector gives
// it in Type (with TypeArray for an array); an unknown or abstract type
// gives none.
func TestSparkplugDeclaredType(t *testing.T) {
	for typ, want := range map[collectors.Type]sparkplugb.DataType{
		collectors.TypeDouble:                         sparkplugb.DataType_Double,
		collectors.TypeSByte:                          sparkplugb.DataType_Int8,
		collectors.TypeUInt64:                         sparkplugb.DataType_UInt64,
		collectors.TypeDateTime:                       sparkplugb.DataType_DateTime,
		collectors.TypeByteString:                     sparkplugb.DataType_Bytes,
		collectors.TypeLocalizedText:                  sparkplugb.DataType_String,
		collectors.TypeStatusCode:                     sparkplugb.DataType_String,
		collectors.TypeInt32 | collectors.TypeArray:   sparkplugb.DataType_Int32Array,
		collectors.TypeBoolean | collectors.TypeArray: sparkplugb.DataType_BooleanArray,
		collectors.TypeNull:                           sparkplugb.DataType_Unknown,
		collectors.TypeVariant:                        sparkplugb.DataType_Unknown,
		collectors.TypeDataValue:                      sparkplugb.DataType_Unknown,
	} {
		s := collectors.Sample{Type: typ, StatusCode: 0x80320000}
		if got := spDeclaredType(&s); got != uint32(want) {
			t.Errorf("null value of %q: datatype %d, want %s", typ, got, want)
		}
	}
}

// Heartbeats are not sent in Sparkplug (the birth carries every value, a
// PLC away is a DDEATH); a LocalizedText is a String metric of its text.
func TestSparkplugHeartbeatsAndLocalizedText(t *testing.T) {
	cfg := testkit.SparkplugConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	cfg.PLCs[0].Tags = []config.Tag{{Name: "title"}, {Name: "level"}}
	f, err := newSparkplugFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	var topics []string
	var last []byte
	add := func(topic string, p []byte) { topics, last = append(topics, topic), slices.Clone(p) }
	title := collectors.Sample{PLC: "press1", Tag: "title", Type: collectors.TypeLocalizedText, Value: collectors.LocalizedText{Locale: "de-DE", Text: "Brot"}}
	level := collectors.Sample{PLC: "press1", Tag: "level", Type: collectors.TypeDouble, Value: 1.5}
	f.Encode(collectors.Batch{title, level}, true, add)
	if len(topics) != 2 {
		t.Fatalf("topics %v, want DBIRTH and DDATA", topics)
	}
	data := testkit.DecodeSparkplug(t, last)
	if !slices.ContainsFunc(data.Metrics, func(m *sparkplugb.Payload_Metric) bool { return m.GetStringValue() == "Brot" }) {
		t.Errorf("DDATA %v, want the LocalizedText as the String Brot", data.Metrics)
	}
	topics = nil
	hb := level
	hb.Heartbeat, hb.StatusCode = true, 0x80310000
	f.Encode(collectors.Batch{hb}, true, add)
	if len(topics) != 0 {
		t.Errorf("a heartbeat went out on %v", topics)
	}
}
