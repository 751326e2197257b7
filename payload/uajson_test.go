package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// uaCase is a sample, the DataValue Part 6 JSON tagbridge writes for it (in
// testdata/uajson/datavalues.golden) and what node-opcua-json 2.182.2
// decodes from that: built-in type, status code and value in decode.js's
// canonical form (64-bit integers and non-finite numbers as strings,
// ByteStrings as "b64:…", dates in ISO form).
type uaCase struct {
	name   string
	s      collectors.Sample
	typ    int    // decoded Variant's built-in type
	status uint32 // decoded status code
	value  string // decoded value, canonical JSON
}

func uaCases() []uaCase {
	ts := time.Date(2026, 11, 22, 10, 15, 30, 123456000, time.UTC)
	smp := func(typ string, v any) collectors.Sample {
		return collectors.Sample{Type: typ, Value: v, Status: "Good"}
	}
	bad := collectors.Sample{Type: "Null", Status: "BadCommunicationError", StatusCode: 0x80050000, SourceTime: ts}
	uncertain := collectors.Sample{Type: "Double", Value: 1.25, Status: "UncertainLastUsableValue", StatusCode: 0x40900000, SourceTime: ts, ServerTime: ts.Add(time.Millisecond)}
	unknown := collectors.Sample{Type: "Double", Value: 1.0, Status: "Bad (0x80FF0000)", StatusCode: 0x80FF0000}
	return []uaCase{
		{"boolean", smp("Boolean", true), 1, 0, `true`},
		{"boolean false", smp("Boolean", false), 1, 0, `false`},
		{"boolean array", smp("Boolean", []any{true, false, nil}), 1, 0, `[true,false,null]`},
		{"sbyte", smp("SByte", int8(-128)), 2, 0, `-128`},
		{"byte", smp("Byte", uint8(255)), 3, 0, `255`},
		{"byte array", smp("Byte", []any{uint8(0), uint8(7)}), 3, 0, `[0,7]`},
		{"int16", smp("Int16", int16(-32768)), 4, 0, `-32768`},
		{"uint16", smp("UInt16", uint16(65535)), 5, 0, `65535`},
		{"int32 zero", smp("Int32", int32(0)), 6, 0, `0`},
		{"int32 array", smp("Int32", []any{int32(math.MinInt32), int32(math.MaxInt32)}), 6, 0, `[-2147483648,2147483647]`},
		{"uint32", smp("UInt32", uint32(math.MaxUint32)), 7, 0, `4294967295`},
		{"int64 past 2^53", smp("Int64", int64(1<<53+1)), 8, 0, `"9007199254740993"`},
		{"int64 min", smp("Int64", int64(math.MinInt64)), 8, 0, `"-9223372036854775808"`},
		{"int64 array", smp("Int64", []any{int64(-(1<<53 + 1)), int64(math.MaxInt64)}), 8, 0, `["-9007199254740993","9223372036854775807"]`},
		{"uint64 max", smp("UInt64", uint64(math.MaxUint64)), 9, 0, `"18446744073709551615"`},
		{"uint64 array", smp("UInt64", []any{uint64(1<<53 + 1), uint64(0)}), 9, 0, `["9007199254740993","0"]`},
		{"float", smp("Float", float32(1.5)), 10, 0, `1.5`},
		{"float -inf", smp("Float", float32(math.Inf(-1))), 10, 0, `"-Infinity"`},
		{"double", smp("Double", 21.5), 11, 0, `21.5`},
		{"double nan", smp("Double", math.NaN()), 11, 0, `"NaN"`},
		{"double +inf", smp("Double", math.Inf(1)), 11, 0, `"Infinity"`},
		{"double array with nan", smp("Double", []any{1.5, math.NaN(), math.Inf(-1)}), 11, 0, `[1.5,"NaN","-Infinity"]`},
		{"string", smp("String", "a\"b\nü"), 12, 0, `"a\"b\nü"`},
		{"string array", smp("String", []any{"x", ""}), 12, 0, `["x",""]`},
		{"datetime", smp("DateTime", ts), 13, 0, `"2026-11-22T10:15:30.123Z"`},
		{"datetime min", smp("DateTime", nil), 13, 0, `"0001-01-01T00:00:00.000Z"`},
		{"datetime array", smp("DateTime", []any{ts, nil}), 13, 0, `["2026-11-22T10:15:30.123Z","0001-01-01T00:00:00.000Z"]`},
		{"guid", smp("Guid", "72962B91-FA75-4AE6-8D28-B404DC7DAF63"), 14, 0, `"72962B91-FA75-4AE6-8D28-B404DC7DAF63"`},
		{"bytestring", smp("ByteString", []byte{1, 2, 3}), 15, 0, `"b64:AQID"`},
		{"bytestring empty", smp("ByteString", []byte{}), 15, 0, `null`},
		{"bytestring null", smp("ByteString", nil), 15, 0, `null`},
		{"nodeid", smp("NodeId", "ns=2;s=Line1.Temp"), 17, 0, `"ns=2;s=Line1.Temp"`},
		{"expandednodeid", smp("ExpandedNodeId", "ns=2;i=5"), 18, 0, `"ns=2;i=5"`},
		{"statuscode", smp("StatusCode", "BadTimeout"), 19, 0, `2148139008`},
		{"statuscode good", smp("StatusCode", "Good"), 19, 0, `0`},
		// node-opcua-json keeps only the severity of a code it does not know.
		{"statuscode unknown", smp("StatusCode", "Bad (0x80FF0000)"), 19, 0, `2147483648`},
		{"qualifiedname", smp("QualifiedName", "2:Foo"), 20, 0, `"2:Foo"`},
		{"qualifiedname ns0", smp("QualifiedName", "Bar"), 20, 0, `"0:Bar"`},
		{"localizedtext", smp("LocalizedText", "Hallo"), 21, 0, `{"text":"Hallo","locale":null}`},
		{"localizedtext array", smp("LocalizedText", []any{"a", "b"}), 21, 0, `[{"text":"a","locale":null},{"text":"b","locale":null}]`},
		{"structure", smp("ExtensionObject", collectors.Structure{TypeID: "i=884", Fields: []collectors.Field{{Name: "Low", Value: -1.5}, {Name: "High", Value: 99.0}}}), 22, 0, `{"low":-1.5,"high":99}`},
		{"variant", smp("Variant", int32(5)), 24, 0, `{"type":6,"value":5}`},
		{"matrix", smp("Int16", []any{[]any{int16(1), int16(2), int16(3)}, []any{int16(4), int16(5), int16(6)}}), 4, 0, `[1,2,3,4,5,6]`},
		{"bad, no value", bad, 0, 0x80050000, `null`},
		{"uncertain with value", uncertain, 11, 0x40900000, `1.25`},
		{"bad, unknown code", unknown, 11, 0x80000000, `1`},
	}
}

// uaExtraCases have no decoder expectation: node-opcua-json 2.182.2 does
// not decode XmlElement ("Unsupported yet"), nor an ExtensionObject of a
// type it has no schema for.
func uaExtraCases() []uaCase {
	return []uaCase{
		{name: "xmlelement", s: collectors.Sample{Type: "XmlElement", Value: "<a/>"}},
		{name: "structure undecoded", s: collectors.Sample{Type: "ExtensionObject", Value: map[string]any{"type_id": "ns=2;i=5001", "encoding": "binary", "body": []byte{1, 2}}}},
		{name: "structure without type", s: collectors.Sample{Type: "ExtensionObject", Value: map[string]any{"b": int32(2), "a": "x"}}},
		{name: "datavalue", s: collectors.Sample{Type: "DataValue", Value: map[string]any{"value": int64(7), "type": "Int64", "status": "BadTimeout", "status_code": uint32(0x800A0000)}}},
	}
}

// TestUADataValueGolden holds the Part 6 JSON of every case to the golden
// file and to the schema.
func TestUADataValueGolden(t *testing.T) {
	data, _ := testkit.UASchemas(t)
	var out bytes.Buffer
	for _, c := range append(uaCases(), uaExtraCases()...) {
		dv := appendUADataValue(nil, &c.s)
		msg := fmt.Appendf(nil, `{"MessageId":"x-1","MessageType":"ua-data","PublisherId":"a1","WriterGroupName":"g","Messages":[`+
			`{"DataSetWriterId":1,"DataSetWriterName":"p","SequenceNumber":1,"Timestamp":"2026-11-22T10:15:30Z","MessageType":"ua-deltaframe","Payload":{"v":%s}}]}`, dv)
		if err := testkit.SchemaErr(data, msg); err != nil {
			t.Errorf("%s: %s does not match the schema: %v", c.name, dv, err)
		}
		fmt.Fprintf(&out, "%s\t%s\n", c.name, dv)
	}
	golden(t, "testdata/uajson/datavalues.golden", out.Bytes())
}

// golden compares got with the file, or rewrites it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			g, w := "", ""
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Errorf("%s line %d:\n got  %s\n want %s", path, i+1, g, w)
			}
		}
	}
}

// TestUADataValueNodeOPCUA: what node-opcua-json decodes from tagbridge's
// DataValues is the sample: every built-in type and arrays, 64-bit
// integers past 2^53, NaN and ±Inf, Bad and Uncertain statuses.
func TestUADataValueNodeOPCUA(t *testing.T) {
	cases := uaCases()
	fields := map[string][]byte{}
	var order []string
	for _, c := range cases {
		fields[c.name] = appendUADataValue(nil, &c.s)
		order = append(order, c.name)
	}
	got := testkit.DecodeWithNode(t, fields, order)
	for _, c := range cases {
		r, ok := got[c.name]
		switch {
		case !ok:
			t.Errorf("%s: not decoded", c.name)
			continue
		case r.Error != "":
			t.Errorf("%s: node-opcua-json: %s\n  from %s", c.name, r.Error, fields[c.name])
			continue
		}
		var gv, wv any
		if err := json.Unmarshal(r.Value, &gv); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(c.value), &wv); err != nil {
			t.Fatalf("%s: expectation: %v", c.name, err)
		}
		if r.Type != c.typ || r.Status != c.status || !reflect.DeepEqual(gv, wv) {
			t.Errorf("%s: decoded type %d status 0x%08X value %s, want type %d status 0x%08X value %s\n  from %s",
				c.name, r.Type, r.Status, r.Value, c.typ, c.status, c.value, fields[c.name])
		}
		if !c.s.SourceTime.IsZero() && (r.Source == nil || *r.Source != c.s.SourceTime.Format("2006-01-02T15:04:05.000Z")) {
			t.Errorf("%s: decoded source timestamp %v, want %v", c.name, r.Source, c.s.SourceTime)
		}
	}
}

// One NetworkMessage per PLC entry and cycle; a tag twice in one cycle
// starts a second DataSetMessage; sequence numbers count per writer.
func TestUAJSONEncode(t *testing.T) {
	data, _ := testkit.UASchemas(t)
	cfg := testkit.UAJSONConfig("tcp://127.0.0.1:1")
	f, err := newUAJSONFormat(FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		topic string
		m     testkit.UANetworkMessage
	}
	var got []rec
	add := func(topic string, payload []byte) {
		testkit.SchemaCheck(t, data, payload)
		got = append(got, rec{topic, testkit.DecodeUA[testkit.UANetworkMessage](t, payload)})
	}
	f.Encode(collectors.Batch{
		{PLC: "press1", Tag: "temperature", Value: 1.5, Type: "Double"},
		{PLC: "press2", Tag: "t", Value: int64(2), Type: "Int64"},
		{PLC: "press1", Tag: "pressure", Value: int32(3), Type: "Int32"},
		{PLC: "press1", Tag: "temperature", Value: 1.75, Type: "Double"},
	}, true, add)
	f.Encode(collectors.Batch{{PLC: "press2", Tag: "t", Value: int64(3), Type: "Int64"}}, true, add)

	if len(got) != 3 {
		t.Fatalf("%d records, want 3", len(got))
	}
	want := []struct {
		topic  string
		writer int
		seqs   []uint32
		fields []string
	}{
		{"opcua/json/data/a1/tagbridge/press1", 1, []uint32{1, 2}, []string{"pressure,temperature", "temperature"}},
		{"opcua/json/data/a1/tagbridge/press2", 2, []uint32{1}, []string{"t"}},
		{"opcua/json/data/a1/tagbridge/press2", 2, []uint32{2}, []string{"t"}},
	}
	ids := map[string]bool{}
	for i, w := range want {
		r := got[i]
		if r.topic != w.topic || r.m.MessageType != "ua-data" || r.m.PublisherID != "a1" || r.m.WriterGroupName != "tagbridge" {
			t.Errorf("record %d: %s %+v", i, r.topic, r.m)
		}
		if ids[r.m.MessageID] {
			t.Errorf("record %d: MessageId %s used twice", i, r.m.MessageID)
		}
		ids[r.m.MessageID] = true
		if len(r.m.Messages) != len(w.seqs) {
			t.Fatalf("record %d: %d DataSetMessages, want %d", i, len(r.m.Messages), len(w.seqs))
		}
		for j, dm := range r.m.Messages {
			var names []string
			for k := range dm.Payload {
				names = append(names, k)
			}
			slices.Sort(names)
			if dm.DataSetWriterID != w.writer || dm.SequenceNumber != w.seqs[j] || dm.MessageType != "ua-deltaframe" ||
				strings.Join(names, ",") != w.fields[j] || dm.Status != nil {
				t.Errorf("record %d message %d: writer %d seq %d type %s fields %v status %v", i, j,
					dm.DataSetWriterID, dm.SequenceNumber, dm.MessageType, names, dm.Status)
			}
		}
	}
	if v := string(got[0].m.Messages[1].Payload["temperature"]); v != `{"UaType":11,"Value":1.75}` {
		t.Errorf("second temperature: %s", v)
	}
	if v := string(got[1].m.Messages[0].Payload["t"]); v != `{"UaType":8,"Value":"2"}` {
		t.Errorf("press2 t: %s", v)
	}
}

// The schemas reject what Part 14 and Part 6 do not allow, so a passing
// check means something.
func TestUAJSONSchemaRejects(t *testing.T) {
	data, status := testkit.UASchemas(t)
	okData := `{"MessageId":"x-1","MessageType":"ua-data","PublisherId":"a1","WriterGroupName":"g","Messages":[` +
		`{"DataSetWriterId":1,"DataSetWriterName":"p","SequenceNumber":1,"Timestamp":"2026-11-22T10:15:30Z","MessageType":"ua-deltaframe","Payload":{"v":%s}}]}`
	okStatus := `{"MessageId":"x-2","MessageType":"ua-status","PublisherId":"a1","IsCyclic":false,"Status":%s}`
	if err := testkit.SchemaErr(data, fmt.Appendf(nil, okData, `{"UaType":8,"Value":"5"}`)); err != nil {
		t.Fatalf("valid data message rejected: %v", err)
	}
	if err := testkit.SchemaErr(status, fmt.Appendf(nil, okStatus, `2`)); err != nil {
		t.Fatalf("valid status message rejected: %v", err)
	}
	for _, tc := range []struct {
		name string
		sch  *jsonschema.Schema
		msg  string
	}{
		{"int64 as number", data, fmt.Sprintf(okData, `{"UaType":8,"Value":5}`)},
		{"int32 out of range", data, fmt.Sprintf(okData, `{"UaType":6,"Value":3000000000}`)},
		{"double as string", data, fmt.Sprintf(okData, `{"UaType":11,"Value":"1.5"}`)},
		{"status as number", data, fmt.Sprintf(okData, `{"UaType":11,"Value":1,"Status":2147811328}`)},
		{"good status written", data, fmt.Sprintf(okData, `{"UaType":11,"Value":1,"Status":{"Code":0}}`)},
		{"value without UaType", data, fmt.Sprintf(okData, `{"Value":1.5}`)},
		{"Status without StatusCode", data, fmt.Sprintf(okData, `{"UaType":11,"Value":1,"Status":{"Code":2147811328}}`)},
		{"structure without UaBody object", data, fmt.Sprintf(okData, `{"UaType":22,"Value":{"a":1}}`)},
		{"old reversible variant", data, fmt.Sprintf(okData, `{"Value":{"Type":11,"Body":1.5}},"x":{"Type":11}`)},
		{"local time", data, strings.Replace(fmt.Sprintf(okData, `{}`), "30Z", "30+01:00", 1)},
		{"no MessageId", data, strings.Replace(fmt.Sprintf(okData, `{}`), `"MessageId":"x-1",`, "", 1)},
		{"wrong MessageType", data, strings.Replace(fmt.Sprintf(okData, `{}`), "ua-data", "ua-metadata", 1)},
		{"writer id 0", data, strings.Replace(fmt.Sprintf(okData, `{}`), `"DataSetWriterId":1`, `"DataSetWriterId":0`, 1)},
		{"state by name", status, fmt.Sprintf(okStatus, `"Operational"`)},
		{"state out of range", status, fmt.Sprintf(okStatus, `5`)},
		{"timestamp while not cyclic", status, strings.Replace(fmt.Sprintf(okStatus, `2`), `"IsCyclic":false`, `"IsCyclic":false,"Timestamp":"2026-11-22T10:15:30Z"`, 1)},
		{"cyclic without next report", status, strings.Replace(fmt.Sprintf(okStatus, `2`), `"IsCyclic":false`, `"IsCyclic":true,"Timestamp":"2026-11-22T10:15:30Z"`, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testkit.SchemaErr(tc.sch, []byte(tc.msg)) == nil {
				t.Fatalf("accepted: %s", tc.msg)
			}
		})
	}
}

// uaMetadata is a ua-metadata message as a consumer decodes it.
type uaMetadata struct {
	MessageID         string `json:"MessageId"`
	MessageType       string
	PublisherID       string `json:"PublisherId"`
	DataSetWriterID   int    `json:"DataSetWriterId"`
	WriterGroupName   string
	DataSetWriterName string
	Timestamp         time.Time
	MetaData          struct {
		Name   string
		Fields []struct {
			Name           string
			DataType       string
			ValueRank      int
			DataSetFieldID string `json:"DataSetFieldId"`
		}
		ConfigurationVersion struct{ MajorVersion, MinorVersion uint32 }
	}
}

// Every connect publishes a retained ua-metadata per writer, its fields the
// configured tags in order; the ConfigurationVersion stays across restarts
// and changes when the writer's tags do.
func TestUAJSONMetadata(t *testing.T) {
	cfg := testkit.UAJSONConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	meta := func() map[string]uaMetadata {
		f, err := newUAJSONFormat(FromConfig(cfg))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Open(); err != nil {
			t.Fatal(err)
		}
		out := map[string]uaMetadata{}
		for _, m := range f.Connected()[1:] {
			testkit.SchemaCheck(t, testkit.UAMetaSchema(t), m.Payload)
			if !m.Retain {
				t.Errorf("%s not retained", m.Topic)
			}
			out[m.Topic] = testkit.DecodeUA[uaMetadata](t, m.Payload)
		}
		return out
	}
	first := meta()
	p1 := first["opcua/json/metadata/a1/tagbridge/press1"]
	var names []string
	for _, fd := range p1.MetaData.Fields {
		names = append(names, fd.Name)
	}
	if len(first) != 2 || p1.DataSetWriterID != 1 || p1.DataSetWriterName != "press1" || p1.MessageType != "ua-metadata" ||
		strings.Join(names, ",") != "temperature,pressure" || p1.MetaData.ConfigurationVersion.MajorVersion == 0 {
		t.Fatalf("metadata: %+v", first)
	}
	// A version from an earlier start is kept while the tags are the same.
	path := filepath.Join(cfg.Agent.SpoolDir, metaFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var saved map[string]metaState
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	st := saved["press1"]
	st.Version = 1000
	saved["press1"] = st
	if b, err = json.Marshal(saved); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p1.MetaData.ConfigurationVersion.MajorVersion, p1.MetaData.ConfigurationVersion.MinorVersion = 1000, 1000
	again := meta()
	if v := again["opcua/json/metadata/a1/tagbridge/press1"].MetaData.ConfigurationVersion; v != p1.MetaData.ConfigurationVersion {
		t.Errorf("version %+v on a restart with the same tags, want the saved %+v", v, p1.MetaData.ConfigurationVersion)
	}
	if again["opcua/json/metadata/a1/tagbridge/press1"].MetaData.Fields[0].DataSetFieldID != p1.MetaData.Fields[0].DataSetFieldID {
		t.Errorf("DataSetFieldId changed on a restart")
	}
	cfg.PLCs[0].Tags = append(cfg.PLCs[0].Tags, config.Tag{Name: "speed"})
	changed := meta()
	if v := changed["opcua/json/metadata/a1/tagbridge/press1"].MetaData.ConfigurationVersion; v.MajorVersion <= p1.MetaData.ConfigurationVersion.MajorVersion {
		t.Errorf("version %+v after a tag was added, want above %+v", v, p1.MetaData.ConfigurationVersion)
	}
	if changed["opcua/json/metadata/a1/tagbridge/press2"].MetaData.ConfigurationVersion != first["opcua/json/metadata/a1/tagbridge/press2"].MetaData.ConfigurationVersion {
		t.Errorf("press2's version changed with press1's tags")
	}
}

func BenchmarkUAJSONEncode(b *testing.B) {
	cfg := testkit.UAJSONConfig("tcp://127.0.0.1:1")
	f, err := newUAJSONFormat(FromConfig(cfg))
	if err != nil {
		b.Fatal(err)
	}
	ts := time.Now()
	batch := make(collectors.Batch, 1000)
	for i := range batch {
		batch[i] = collectors.Sample{PLC: "press1", Tag: fmt.Sprintf("tag_%04d", i), Value: float64(i) / 3,
			Type: "Double", Status: "Good", SourceTime: ts, ServerTime: ts}
	}
	var size int
	add := func(_ string, p []byte) { size += len(p) }
	b.ReportAllocs()
	for b.Loop() {
		f.Encode(batch, true, add)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/value")
}

// Whatever the values and names, the output is JSON that the schema accepts
// and that gives the values back.
func FuzzUAJSONEncode(f *testing.F) {
	f.Add("temperature", "v1", 21.5, int64(-3), uint32(0), "Good")
	f.Add("a\"b\\c\u2028", "\xff\x00", math.Inf(1), int64(math.MinInt64), uint32(0x80050000), "BadCommunicationError")
	f.Add("", "", math.NaN(), int64(0), uint32(0x40000000), "Uncertain (0x40000000)")
	data, _ := testkit.UASchemas(f)
	cfg := testkit.UAJSONConfig("tcp://127.0.0.1:1")
	fm, err := newUAJSONFormat(FromConfig(cfg))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tag, str string, fl float64, i int64, code uint32, status string) {
		b := collectors.Batch{
			{PLC: "press1", Tag: tag, Value: fl, Type: "Double", StatusCode: code, Status: status},
			{PLC: "press1", Tag: tag + "i", Value: i, Type: "Int64"},
			{PLC: "press1", Tag: tag + "s", Value: str, Type: "String"},
			{PLC: "press1", Tag: tag, Value: []any{str, nil}, Type: "String"},
		}
		fm.Encode(b, true, func(_ string, payload []byte) {
			testkit.SchemaCheck(t, data, payload)
			nm := testkit.DecodeUA[testkit.UANetworkMessage](t, payload)
			if !utf8.ValidString(tag) {
				return // the field name has U+FFFD for the invalid bytes
			}
			var got struct {
				Value any
			}
			if err := json.Unmarshal(nm.Messages[0].Payload[tag+"i"], &got); err != nil || got.Value != strconv.FormatInt(i, 10) {
				t.Fatalf("int64 %d came back as %v (%v)", i, got.Value, err)
			}
		})
	})
}

// A writer quiet for its KeepAliveTime (the watchdog: 10 intervals of 1 s)
// sends a ua-keepalive with the SequenceNumber its next message will have.
func TestUAJSONKeepAlive(t *testing.T) {
	data, _ := testkit.UASchemas(t)
	cfg := testkit.UAJSONConfig("tcp://127.0.0.1:1")
	for i := range cfg.PLCs {
		cfg.PLCs[i].PublishingInterval = config.Duration(time.Second)
		cfg.PLCs[i].WatchdogIntervals = 10
	}
	f, err := newUAJSONFormat(FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if msgs := f.KeepAlives(t0); len(msgs) != 0 {
		t.Fatalf("keep-alives at start: %d", len(msgs))
	}
	f.Encode(collectors.Batch{{PLC: "press1", Tag: "temperature", Value: int32(1), Type: "Int32"}}, true, func(string, []byte) {})
	sent := time.Now()
	msgs := f.KeepAlives(t0.Add(10 * time.Second))
	if len(msgs) != 1 || msgs[0].Topic != "opcua/json/data/a1/tagbridge/press2" {
		t.Fatalf("keep-alives 10 s after start: %+v, want press2's only", msgs)
	}
	msgs = f.KeepAlives(sent.Add(10 * time.Second))
	if len(msgs) != 1 || msgs[0].Topic != "opcua/json/data/a1/tagbridge/press1" || msgs[0].Retain {
		t.Fatalf("keep-alives 10 s after press1's data: %+v", msgs)
	}
	testkit.SchemaCheck(t, data, msgs[0].Payload)
	dm := testkit.DecodeUA[testkit.UANetworkMessage](t, msgs[0].Payload).Messages[0]
	if dm.MessageType != "ua-keepalive" || dm.SequenceNumber != 2 || dm.Payload != nil || dm.DataSetWriterName != "press1" {
		t.Fatalf("keep-alive: %s", msgs[0].Payload)
	}
	if msgs := f.KeepAlives(sent.Add(19 * time.Second)); len(msgs) != 0 {
		t.Fatalf("keep-alive again before KeepAliveTime: %+v", msgs)
	}
}

// TestUAJSONMessagesGolden holds the other message forms to a golden file
// (MessageIds, times and versions, which change per run, masked): a data
// message with a Bad and an Uncertain value, the Bad key frame, a
// keep-alive, the ua-status of each state and the ua-metadata.
func TestUAJSONMessagesGolden(t *testing.T) {
	data, status := testkit.UASchemas(t)
	cfg := testkit.UAJSONConfig("tcp://127.0.0.1:1")
	f, err := newUAJSONFormat(FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	add := func(name string, sch *jsonschema.Schema) func(string, []byte) {
		return func(topic string, payload []byte) {
			testkit.SchemaCheck(t, sch, payload)
			fmt.Fprintf(&out, "%s\t%s\t%s\n", name, topic, payload)
		}
	}
	ts := time.Date(2026, 11, 22, 10, 15, 30, 0, time.UTC)
	f.Encode(collectors.Batch{
		{PLC: "press1", Tag: "temperature", Value: 21.5, Type: "Double", Status: "Good", SourceTime: ts},
		{PLC: "press1", Tag: "pressure", Type: "Null", Status: "BadSensorFailure", StatusCode: 0x808B0000, ServerTime: ts},
		{PLC: "press2", Tag: "t", Value: int64(1<<53 + 1), Type: "Int64", Status: "UncertainLastUsableValue", StatusCode: 0x40900000, SourceTime: ts},
	}, true, add("data", data))
	f.PLCStatus(collectors.PLCStatus{PLC: "press1", State: collectors.StateDisconnected}, add("key frame", data))
	f.PLCStatus(collectors.PLCStatus{PLC: "press2", State: collectors.StateStopped}, add("key frame stopped", data))
	for _, m := range f.KeepAlives(time.Now().Add(time.Hour)) {
		add("keep-alive", data)(m.Topic, m.Payload)
	}
	for _, m := range f.Connected() {
		if strings.Contains(m.Topic, "/metadata/") {
			add("metadata", testkit.UAMetaSchema(t))(m.Topic, m.Payload)
			continue
		}
		add("status connected", status)(m.Topic, m.Payload)
	}
	w, _ := f.Will()
	add("will", status)(w.Topic, w.Payload)
	for _, m := range f.Stopping() {
		add("status stopping", status)(m.Topic, m.Payload)
	}
	masked := regexp.MustCompile(`"MessageId":"[0-9a-f]{32}-[0-9]+"`).ReplaceAll(out.Bytes(), []byte(`"MessageId":"…"`))
	masked = regexp.MustCompile(`"Timestamp":"[^"]*"`).ReplaceAll(masked, []byte(`"Timestamp":"…"`))
	masked = regexp.MustCompile(`"(Major|Minor)Version":[0-9]+`).ReplaceAll(masked, []byte(`"${1}Version":…`))
	golden(t, "testdata/uajson/messages.golden", masked)
}

// SequenceNumber goes on across restarts: exactly after a clean stop,
// past every number used after a crash. validate writes nothing.
func TestUAJSONSequenceAcrossRestarts(t *testing.T) {
	data, _ := testkit.UASchemas(t)
	cfg := testkit.UAJSONConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	if err := Check(FromConfig(cfg)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Agent.SpoolDir, seqFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("validate left %s: %v", seqFile, err)
	}
	start := func() *uaJSONFormat {
		f, err := newUAJSONFormat(FromConfig(cfg))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Open(); err != nil {
			t.Fatal(err)
		}
		return f
	}
	seqs := func(f *uaJSONFormat, n int) []uint32 {
		var got []uint32
		for i := range n {
			f.Encode(collectors.Batch{{PLC: "press1", Tag: "temperature", Value: int32(i), Type: "Int32"}}, true, func(_ string, payload []byte) {
				testkit.SchemaCheck(t, data, payload)
				got = append(got, testkit.DecodeUA[testkit.UANetworkMessage](t, payload).Messages[0].SequenceNumber)
			})
		}
		return got
	}
	f := start()
	if got := seqs(f, 3); !slices.Equal(got, []uint32{1, 2, 3}) {
		t.Fatalf("first run: %v", got)
	}
	f.Stopping()
	f = start()
	if got := seqs(f, 2); !slices.Equal(got, []uint32{4, 5}) {
		t.Fatalf("after a clean stop: %v, want 4 5", got)
	}
	// A crash: no stopping. The next run starts past the reservation.
	f = start()
	if got := seqs(f, 1); got[0] <= 5 {
		t.Fatalf("after a crash: %v, want past 5", got)
	}
	f = start()
	got := seqs(f, 1)
	if got[0] <= 6 || got[0] > 6+2*seqReserve {
		t.Fatalf("after a second crash: %v, want past 6 by at most the reservation", got)
	}
}
