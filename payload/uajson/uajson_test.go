package uajson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
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
	"github.com/tagbridge/tagbridge/payload"
)

// TestUADataValueGolden holds the Part 6 JSON of every case to the golden
// file and to the schema.
func TestUADataValueGolden(t *testing.T) {
	data, _ := testkit.UASchemas(t)
	var out bytes.Buffer
	for _, c := range append(testkit.ValueCases(), testkit.ExtraValueCases()...) {
		dv := appendUADataValue(nil, &c.Sample)
		msg := fmt.Appendf(nil, `{"MessageId":"x-1","MessageType":"ua-data","PublisherId":"a1","WriterGroupName":"g","Messages":[`+
			`{"DataSetWriterId":1,"DataSetWriterName":"p","SequenceNumber":1,"Timestamp":"2026-11-22T10:15:30Z","MessageType":"ua-deltaframe","Payload":{"v":%s}}]}`, dv)
		if err := testkit.SchemaErr(data, msg); err != nil {
			t.Errorf("%s: %s does not match the schema: %v", c.Name, dv, err)
		}
		fmt.Fprintf(&out, "%s\t%s\n", c.Name, dv)
	}
	testkit.Golden(t, "testdata/uajson/datavalues.golden", out.Bytes())
}

// TestUADataValueNodeOPCUA: what node-opcua-json decodes from tagbridge's
// DataValues is the sample: every built-in type and arrays, 64-bit
// integers past 2^53, NaN and ±Inf, Bad and Uncertain statuses.
func TestUADataValueNodeOPCUA(t *testing.T) {
	cases := testkit.ValueCases()
	fields := map[string][]byte{}
	var order []string
	for _, c := range cases {
		fields[c.Name] = appendUADataValue(nil, &c.Sample)
		order = append(order, c.Name)
	}
	got := testkit.DecodeWithNode(t, fields, order)
	for _, c := range cases {
		r, ok := got[c.Name]
		switch {
		case !ok:
			t.Errorf("%s: not decoded", c.Name)
			continue
		case r.Error != "":
			t.Errorf("%s: node-opcua-json: %s\n  from %s", c.Name, r.Error, fields[c.Name])
			continue
		}
		var gv, wv any
		if err := json.Unmarshal(r.Value, &gv); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(c.Value), &wv); err != nil {
			t.Fatalf("%s: expectation: %v", c.Name, err)
		}
		if r.Type != c.Type || r.Status != c.Status || !reflect.DeepEqual(gv, wv) {
			t.Errorf("%s: decoded type %d status 0x%08X value %s, want type %d status 0x%08X value %s\n  from %s",
				c.Name, r.Type, r.Status, r.Value, c.Type, c.Status, c.Value, fields[c.Name])
		}
		if !c.Sample.SourceTime.IsZero() && (r.Source == nil || *r.Source != c.Sample.SourceTime.Format("2006-01-02T15:04:05.000Z")) {
			t.Errorf("%s: decoded source timestamp %v, want %v", c.Name, r.Source, c.Sample.SourceTime)
		}
	}
}

// One NetworkMessage per PLC entry and cycle; a tag twice in one cycle
// starts a second DataSetMessage; sequence numbers count per writer.
func TestUAJSONEncode(t *testing.T) {
	data, _ := testkit.UASchemas(t)
	cfg := testkit.UAJSONConfig("tcp://127.0.0.1:1")
	f, err := newUAJSONFormat(payload.FromConfig(cfg))
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
		{PLC: "press1", Tag: "temperature", Value: 1.5, Type: collectors.TypeDouble},
		{PLC: "press2", Tag: "t", Value: int64(2), Type: collectors.TypeInt64},
		{PLC: "press1", Tag: "pressure", Value: int32(3), Type: collectors.TypeInt32},
		{PLC: "press1", Tag: "temperature", Value: 1.75, Type: collectors.TypeDouble},
	}, true, add)
	f.Encode(collectors.Batch{{PLC: "press2", Tag: "t", Value: int64(3), Type: collectors.TypeInt64}}, true, add)

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
		f, err := newUAJSONFormat(payload.FromConfig(cfg))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Open(); err != nil {
			t.Fatal(err)
		}
		out := map[string]uaMetadata{}
		for _, m := range f.Connected()[1:] {
			if !strings.HasPrefix(m.Topic, "opcua/json/metadata/") {
				continue
			}
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
	f, err := newUAJSONFormat(payload.FromConfig(cfg))
	if err != nil {
		b.Fatal(err)
	}
	ts := time.Now()
	batch := make(collectors.Batch, 1000)
	for i := range batch {
		batch[i] = collectors.Sample{PLC: "press1", Tag: fmt.Sprintf("tag_%04d", i), Value: float64(i) / 3,
			Type: collectors.TypeDouble, SourceTime: ts, ServerTime: ts}
		batch[i].Unbox() // as the collector's fast path delivers it
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
	fm, err := newUAJSONFormat(payload.FromConfig(cfg))
	if err != nil {
		f.Fatal(err)
	}
	// The last argument, a status name the samples once carried, stays for
	// the corpus in testdata/fuzz; the name now comes from the code.
	f.Fuzz(func(t *testing.T, tag, str string, fl float64, i int64, code uint32, _ string) {
		b := collectors.Batch{
			{PLC: "press1", Tag: tag, Value: fl, Type: collectors.TypeDouble, StatusCode: collectors.StatusCode(code)},
			{PLC: "press1", Tag: tag + "i", Value: i, Type: collectors.TypeInt64},
			{PLC: "press1", Tag: tag + "s", Value: str, Type: collectors.TypeString},
			{PLC: "press1", Tag: tag, Value: []any{str, nil}, Type: collectors.TypeString},
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
	f, err := newUAJSONFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if msgs := f.KeepAlives(t0); len(msgs) != 0 {
		t.Fatalf("keep-alives at start: %d", len(msgs))
	}
	f.Encode(collectors.Batch{{PLC: "press1", Tag: "temperature", Value: int32(1), Type: collectors.TypeInt32}}, true, func(string, []byte) {})
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
// keep-alive, the ua-status of each state, the ua-metadata and the
// ua-connection.
func TestUAJSONMessagesGolden(t *testing.T) {
	data, status := testkit.UASchemas(t)
	cfg := testkit.UAJSONConfig("tcp://127.0.0.1:1")
	f, err := newUAJSONFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	add := func(name string, sch *jsonschema.Schema) func(string, []byte) {
		return func(topic string, payload []byte) {
			if sch != nil {
				testkit.SchemaCheck(t, sch, payload)
			}
			fmt.Fprintf(&out, "%s\t%s\t%s\n", name, topic, payload)
		}
	}
	ts := time.Date(2026, 11, 22, 10, 15, 30, 0, time.UTC)
	f.Encode(collectors.Batch{
		{PLC: "press1", Tag: "temperature", Value: 21.5, Type: collectors.TypeDouble, SourceTime: ts},
		{PLC: "press1", Tag: "pressure", Type: collectors.TypeNull, StatusCode: 0x808B0000, ServerTime: ts},
		{PLC: "press2", Tag: "t", Value: int64(1<<53 + 1), Type: collectors.TypeInt64, StatusCode: 0x40900000, SourceTime: ts},
	}, true, add("data", data))
	f.PLCState(collectors.PLCState{PLC: "press1", State: collectors.StateDisconnected}, add("key frame", data))
	f.PLCState(collectors.PLCState{PLC: "press2", State: collectors.StateStopped}, add("key frame stopped", data))
	for _, m := range f.KeepAlives(time.Now().Add(time.Hour)) {
		add("keep-alive", data)(m.Topic, m.Payload)
	}
	for _, m := range f.Connected() {
		if strings.Contains(m.Topic, "/metadata/") {
			add("metadata", testkit.UAMetaSchema(t))(m.Topic, m.Payload)
			continue
		}
		if strings.Contains(m.Topic, "/connection/") {
			add("connection", nil)(m.Topic, m.Payload) // decoded field by field in TestUAJSONConnection
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
	testkit.Golden(t, "testdata/uajson/messages.golden", masked)
}

// SequenceNumber goes on across restarts: exactly after a clean stop,
// past every number used after a crash. validate writes nothing.
func TestUAJSONSequenceAcrossRestarts(t *testing.T) {
	data, _ := testkit.UASchemas(t)
	cfg := testkit.UAJSONConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	if _, err := New(payload.FromConfig(cfg)); err != nil { // what validate does
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Agent.SpoolDir, seqFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("validate left %s: %v", seqFile, err)
	}
	start := func() *uaJSONFormat {
		f, err := newUAJSONFormat(payload.FromConfig(cfg))
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
			f.Encode(collectors.Batch{{PLC: "press1", Tag: "temperature", Value: int32(i), Type: collectors.TypeInt32}}, true, func(_ string, payload []byte) {
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

// With keyframe_count 3 every third DataSetMessage of a writer is followed
// by a ua-keyframe holding every tag's last DataValue, the configured tags
// first; after the Bad key frame of a lost PLC no old value is repeated.
func TestUAJSONKeyFrameCount(t *testing.T) {
	data, _ := testkit.UASchemas(t)
	cfg := testkit.UAJSONConfig("tcp://127.0.0.1:1")
	cfg.MQTT.UAJSON.KeyFrameCount = 3
	f, err := newUAJSONFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	var got []testkit.UANetworkMessage
	add := func(topic string, p []byte) {
		testkit.SchemaCheck(t, data, p)
		if topic == "opcua/json/data/a1/tagbridge/press1" {
			got = append(got, testkit.DecodeUA[testkit.UANetworkMessage](t, p))
		}
	}
	tags := cfg.PLCs[0].Tags
	for i := range 3 {
		f.Encode(collectors.Batch{{PLC: "press1", Tag: tags[i%len(tags)].Name, Value: int32(i), Type: collectors.TypeInt32}}, true, add)
	}
	if len(got) != 4 {
		t.Fatalf("%d messages, want 3 deltas and a key frame", len(got))
	}
	key := got[3].Messages[0]
	if key.MessageType != "ua-keyframe" || key.SequenceNumber != 4 {
		t.Fatalf("fourth message %+v, want the key frame with SequenceNumber 4", key)
	}
	var names []string
	for _, tg := range tags {
		if _, ok := key.Payload[tg.Name]; ok {
			names = append(names, tg.Name)
		}
	}
	if len(names) != min(3, len(tags)) || len(key.Payload) != len(names) {
		t.Errorf("key frame fields %v, want the %d tags that have values", slices.Collect(maps.Keys(key.Payload)), min(3, len(tags)))
	}
	last := tags[2%len(tags)].Name
	if dv := string(key.Payload[last]); dv != `{"UaType":6,"Value":2}` {
		t.Errorf("key frame %s: %s, want its last value", last, dv)
	}

	got = nil
	f.PLCState(collectors.PLCState{PLC: "press1", State: collectors.StateDisconnected}, add)
	for i := range 3 {
		f.Encode(collectors.Batch{{PLC: "press1", Tag: tags[0].Name, Value: int32(10 + i), Type: collectors.TypeInt32, Heartbeat: true}}, true, add)
	}
	for _, m := range got[1:] {
		if m.Messages[0].MessageType == "ua-keyframe" {
			if len(m.Messages[0].Payload) != 1 {
				t.Errorf("key frame after the loss %v, want only the value since", m.Messages[0].Payload)
			}
			return
		}
	}
	t.Errorf("no key frame after 3 more messages: %+v", got)
}
