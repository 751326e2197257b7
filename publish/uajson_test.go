package publish

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/publish/brokertest"
	"github.com/tagbridge/tagbridge/scripts/faultproxy"
)

// The schemas are written from the Part 14 and Part 6 text, independently
// of the encoder; the tests decode with encoding/json.
func uaSchemas(t testing.TB) (data, status *jsonschema.Schema) {
	t.Helper()
	c := jsonschema.NewCompiler()
	var err error
	if data, err = c.Compile("testdata/opcua-json-data.schema.json"); err != nil {
		t.Fatal(err)
	}
	if status, err = c.Compile("testdata/opcua-json-status.schema.json"); err != nil {
		t.Fatal(err)
	}
	return data, status
}

func schemaCheck(t *testing.T, sch *jsonschema.Schema, payload []byte) {
	t.Helper()
	if err := schemaErr(sch, payload); err != nil {
		t.Fatalf("%s\ndoes not match %s: %v", payload, sch.Location, err)
	}
}

func schemaErr(sch *jsonschema.Schema, payload []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return err
	}
	return sch.Validate(v)
}

// uaNetworkMessage and uaStatus are what a consumer decodes.
type uaNetworkMessage struct {
	MessageID       string `json:"MessageId"`
	MessageType     string
	PublisherID     string `json:"PublisherId"`
	WriterGroupName string
	Messages        []struct {
		DataSetWriterID   int `json:"DataSetWriterId"`
		DataSetWriterName string
		SequenceNumber    uint32
		Timestamp         time.Time
		Status            *struct {
			Code   uint32
			Symbol string
		}
		MessageType string
		Payload     map[string]json.RawMessage
	}
}

type uaStatus struct {
	MessageID   string `json:"MessageId"`
	MessageType string
	PublisherID string `json:"PublisherId"`
	IsCyclic    bool
	Status      int
}

func decodeUA[T any](t *testing.T, payload []byte) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", payload, err)
	}
	return v
}

func uaConfig(url string) *config.Config {
	cfg := testConfig(url, 1)
	cfg.MQTT.Payload = config.PayloadOPCUAJSON
	cfg.PLCs = append(cfg.PLCs, config.PLC{Name: "press2", Tags: []config.Tag{{Name: "t"}}})
	return cfg
}

func TestUADataValue(t *testing.T) {
	ts := time.Date(2026, 11, 22, 10, 15, 30, 123456000, time.UTC)
	for _, tc := range []struct {
		name string
		s    collectors.Sample
		want string
	}{
		{"double", collectors.Sample{Value: 21.5, Type: "Double", Status: "Good", SourceTime: ts, ServerTime: ts.Add(time.Millisecond)},
			`{"UaType":11,"Value":21.5,"SourceTimestamp":"2026-11-22T10:15:30.123456Z","ServerTimestamp":"2026-11-22T10:15:30.124456Z"}`},
		{"int64 as string", collectors.Sample{Value: int64(-3), Type: "Int64"}, `{"UaType":8,"Value":"-3"}`},
		{"uint64 max", collectors.Sample{Value: uint64(math.MaxUint64), Type: "UInt64"}, `{"UaType":9,"Value":"18446744073709551615"}`},
		{"int32", collectors.Sample{Value: int32(7), Type: "Int32"}, `{"UaType":6,"Value":7}`},
		{"nan", collectors.Sample{Value: math.NaN(), Type: "Double"}, `{"UaType":11,"Value":"NaN"}`},
		{"float -inf", collectors.Sample{Value: float32(math.Inf(-1)), Type: "Float"}, `{"UaType":10,"Value":"-Infinity"}`},
		{"bool", collectors.Sample{Value: true, Type: "Boolean"}, `{"UaType":1,"Value":true}`},
		{"string escaped", collectors.Sample{Value: "a\"b\n", Type: "String"}, `{"UaType":12,"Value":"a\"b\n"}`},
		{"bytestring", collectors.Sample{Value: []byte{1, 2, 3}, Type: "ByteString"}, `{"UaType":15,"Value":"AQID"}`},
		{"datetime", collectors.Sample{Value: ts, Type: "DateTime"}, `{"UaType":13,"Value":"2026-11-22T10:15:30.123456Z"}`},
		{"localized text", collectors.Sample{Value: "Hallo", Type: "LocalizedText"}, `{"UaType":21,"Value":{"Text":"Hallo"}}`},
		{"int64 array with null", collectors.Sample{Value: []any{int64(1), nil, int64(-2)}, Type: "Int64"}, `{"UaType":8,"Value":["1",null,"-2"]}`},
		{"matrix flattened", collectors.Sample{Value: []any{[]any{int16(1), int16(2), int16(3)}, []any{int16(4), int16(5), int16(6)}}, Type: "Int16"},
			`{"UaType":4,"Value":[1,2,3,4,5,6],"Dimensions":[2,3]}`},
		{"bad, no value", collectors.Sample{Value: nil, Type: "Null", Status: "BadCommunicationError", StatusCode: 0x80050000, SourceTime: ts},
			`{"Status":{"Code":2147811328,"Symbol":"BadCommunicationError"},"SourceTimestamp":"2026-11-22T10:15:30.123456Z"}`},
		{"uncertain with value", collectors.Sample{Value: 1.25, Type: "Double", Status: "UncertainLastUsableValue", StatusCode: 0x40900000},
			`{"UaType":11,"Value":1.25,"Status":{"Code":1083179008,"Symbol":"UncertainLastUsableValue"}}`},
		{"unknown code: no symbol", collectors.Sample{Value: 1.0, Type: "Double", Status: "Bad (0x80FF0000)", StatusCode: 0x80FF0000},
			`{"UaType":11,"Value":1,"Status":{"Code":2164195328}}`},
		{"structure: raw, no UaType", collectors.Sample{Value: map[string]any{"b": int32(2), "a": "x"}, Type: "ExtensionObject"}, `{"Value":{"a":"x","b":2}}`},
		{"status code value: raw", collectors.Sample{Value: "BadTimeout", Type: "StatusCode"}, `{"Value":"BadTimeout"}`},
		{"type and value disagree: raw", collectors.Sample{Value: "12", Type: "Int32"}, `{"Value":"12"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(appendUADataValue(nil, &tc.s))
			if got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// One NetworkMessage per PLC entry and cycle; a tag twice in one cycle
// starts a second DataSetMessage; sequence numbers count per writer.
func TestUAJSONEncode(t *testing.T) {
	data, _ := uaSchemas(t)
	cfg := uaConfig("tcp://127.0.0.1:1")
	f, err := newUAJSONFormat(cfg)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		topic string
		m     uaNetworkMessage
	}
	var got []rec
	add := func(topic string, payload []byte) {
		schemaCheck(t, data, payload)
		got = append(got, rec{topic, decodeUA[uaNetworkMessage](t, payload)})
	}
	f.encode(collectors.Batch{
		{PLC: "press1", Tag: "temperature", Value: 1.5, Type: "Double"},
		{PLC: "press2", Tag: "t", Value: int64(2), Type: "Int64"},
		{PLC: "press1", Tag: "pressure", Value: int32(3), Type: "Int32"},
		{PLC: "press1", Tag: "temperature", Value: 1.75, Type: "Double"},
	}, true, add)
	f.encode(collectors.Batch{{PLC: "press2", Tag: "t", Value: int64(3), Type: "Int64"}}, true, add)

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
	data, status := uaSchemas(t)
	okData := `{"MessageId":"x-1","MessageType":"ua-data","PublisherId":"a1","WriterGroupName":"g","Messages":[` +
		`{"DataSetWriterId":1,"DataSetWriterName":"p","SequenceNumber":1,"Timestamp":"2026-11-22T10:15:30Z","MessageType":"ua-deltaframe","Payload":{"v":%s}}]}`
	okStatus := `{"MessageId":"x-2","MessageType":"ua-status","PublisherId":"a1","IsCyclic":false,"Status":%s}`
	if err := schemaErr(data, fmt.Appendf(nil, okData, `{"UaType":8,"Value":"5"}`)); err != nil {
		t.Fatalf("valid data message rejected: %v", err)
	}
	if err := schemaErr(status, fmt.Appendf(nil, okStatus, `2`)); err != nil {
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
		{"UaType without value", data, fmt.Sprintf(okData, `{"UaType":11}`)},
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
			if schemaErr(tc.sch, []byte(tc.msg)) == nil {
				t.Fatalf("accepted: %s", tc.msg)
			}
		})
	}
}

// receiveUA takes the next message, checks it against its schema and
// returns it.
func receiveUA(t *testing.T, msgs <-chan brokertest.Message, data, status *jsonschema.Schema) brokertest.Message {
	t.Helper()
	m := receive(t, msgs, 1)[0]
	switch {
	case strings.HasPrefix(m.Topic, "opcua/json/status/"):
		schemaCheck(t, status, m.Payload)
	case strings.HasPrefix(m.Topic, "opcua/json/data/"):
		schemaCheck(t, data, m.Payload)
	default:
		t.Fatalf("unexpected topic %s", m.Topic)
	}
	return m
}

func wantStatus(t *testing.T, m brokertest.Message, state int) {
	t.Helper()
	if m.Topic != "opcua/json/status/a1" {
		t.Fatalf("want the status on opcua/json/status/a1, got %s %s", m.Topic, m.Payload)
	}
	st := decodeUA[uaStatus](t, m.Payload)
	if st.MessageType != "ua-status" || st.PublisherID != "a1" || st.IsCyclic || st.Status != state {
		t.Fatalf("want status %d, got %s", state, m.Payload)
	}
}

// On a real broker: the retained ua-status Operational before any data,
// every message valid, sequence numbers without gaps per writer, the Bad key
// frame in order with the data when a PLC is lost, Disabled on a clean stop.
func TestUAJSONOnBroker(t *testing.T) {
	data, status := uaSchemas(t)
	b := brokertest.Start(t)
	cfg := uaConfig(b.URL())
	log, _ := newLog(t)
	p := newPublisher(t, cfg, log)
	msgs := brokertest.SubscribeAll(t, b.URL(), "opcua/json/#", 1)
	in := make(chan collectors.Batch, 64)
	done := start(t, p, in)

	wantStatus(t, receiveUA(t, msgs, data, status), pubSubOperational)

	const n = 20
	for i := range n {
		in <- collectors.Batch{
			{PLC: "press1", Tag: "temperature", Value: int32(i), Type: "Int32", Status: "Good"},
			{PLC: "press2", Tag: "t", Value: int64(i), Type: "Int64", Status: "Good"},
		}
	}
	p.PLCStatus(collectors.PLCStatus{PLC: "press1", State: collectors.StateDisconnected, Reason: "EOF", Since: time.Now()})
	p.PLCStatus(collectors.PLCStatus{PLC: "press1", State: collectors.StateDisconnected, Reason: "connection refused", Since: time.Now()})

	seqs := map[string][]uint32{}
	badAt := -1
	take := func() {
		m := receiveUA(t, msgs, data, status)
		nm := decodeUA[uaNetworkMessage](t, m.Payload)
		if len(nm.Messages) != 1 || m.Topic != "opcua/json/data/a1/tagbridge/"+nm.Messages[0].DataSetWriterName {
			t.Fatalf("%s: %s", m.Topic, m.Payload)
		}
		dm := nm.Messages[0]
		seqs[dm.DataSetWriterName] = append(seqs[dm.DataSetWriterName], dm.SequenceNumber)
		if dm.MessageType == "ua-keyframe" {
			if badAt >= 0 {
				t.Fatalf("second Bad key frame for one loss: %s", m.Payload)
			}
			badAt = len(seqs["press1"])
			if dm.Status == nil || dm.Status.Code != badCommunicationError || dm.Status.Symbol != "BadCommunicationError" || len(dm.Payload) != 2 {
				t.Fatalf("PLC loss: %s", m.Payload)
			}
			for tag, dv := range dm.Payload {
				if string(dv) != `{"Status":{"Code":2147811328,"Symbol":"BadCommunicationError"}}` {
					t.Errorf("%s after the PLC loss: %s", tag, dv)
				}
			}
			return
		}
		if v := string(dm.Payload["temperature"]) + string(dm.Payload["t"]); !strings.Contains(v, `"Value":`) {
			t.Fatalf("data: %s", m.Payload)
		}
	}
	for range 2*n + 1 {
		take()
	}
	if badAt != n+1 {
		t.Errorf("Bad key frame is message %d of press1, want %d (after the data taken before it)", badAt, n+1)
	}
	// The same loss again with another reason adds nothing; values go on.
	in <- collectors.Batch{{PLC: "press1", Tag: "temperature", Value: int32(n), Type: "Int32", Status: "Good"}}
	take()
	for plc, s := range seqs {
		for i, q := range s {
			if q != uint32(i+1) {
				t.Fatalf("%s: sequence numbers %v, want 1, 2, ... without gaps", plc, s)
			}
		}
	}
	if len(seqs["press1"]) != n+2 || len(seqs["press2"]) != n {
		t.Fatalf("messages per writer: %v", seqs)
	}

	late := brokertest.SubscribeAll(t, b.URL(), "opcua/json/status/+", 1)
	r := receiveUA(t, late, data, status)
	if !r.Retained {
		t.Fatalf("status not retained: %+v", r)
	}
	wantStatus(t, r, pubSubOperational)

	close(in)
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, receiveUA(t, msgs, data, status), pubSubDisabled)
	late = brokertest.SubscribeAll(t, b.URL(), "opcua/json/status/+", 1)
	wantStatus(t, receiveUA(t, late, data, status), pubSubDisabled)
}

// runUA runs p until the test ends, and waits for Run to return before the
// spool's directory is removed.
func runUA(t *testing.T, p *Publisher, in <-chan collectors.Batch) {
	done := start(t, p, in)
	t.Cleanup(func() {
		if err := result(t, done); err != nil {
			t.Error(err)
		}
	})
}

// An unclean loss of the connection: the broker publishes the will, ua-status
// Error, retained; after the reconnect the agent is Operational again.
func TestUAJSONWill(t *testing.T) {
	data, status := uaSchemas(t)
	b := brokertest.Start(t)
	px := faultproxy.Start(t, strings.TrimPrefix(b.URL(), "tcp://"))
	cfg := uaConfig("tcp://" + px.Addr())
	log, sink := newLog(t)
	p := newPublisher(t, cfg, log)
	msgs := brokertest.SubscribeAll(t, b.URL(), "opcua/json/status/+", 1)
	runUA(t, p, make(chan collectors.Batch))
	wantStatus(t, receiveUA(t, msgs, data, status), pubSubOperational)

	px.Refuse(true)
	px.Cut()
	sink.waitFor(t, "connection to broker lost")
	will := receiveUA(t, msgs, data, status)
	wantStatus(t, will, pubSubError)
	late := brokertest.SubscribeAll(t, b.URL(), "opcua/json/status/+", 1)
	r := receiveUA(t, late, data, status)
	if !r.Retained || !bytes.Equal(r.Payload, will.Payload) {
		t.Fatalf("retained after the loss: %+v %s", r, r.Payload)
	}

	px.Refuse(false)
	wantStatus(t, receiveUA(t, msgs, data, status), pubSubOperational)
}

// Across a broker restart: the new ua-status Operational comes before the
// values spooled during the outage, and the sequence numbers go on. (A
// record already handed to paho when the connection died is resent by
// paho ahead of it; that is why the values are taken after the loss.)
func TestUAJSONBrokerRestart(t *testing.T) {
	data, status := uaSchemas(t)
	b := brokertest.Start(t)
	// The agent connects through a proxy, so that the test can hold it off
	// until the subscriber is back: a QoS 0 status published while the
	// subscriber is away is not queued for it.
	px := faultproxy.Start(t, strings.TrimPrefix(b.URL(), "tcp://"))
	cfg := uaConfig("tcp://" + px.Addr())
	log, sink := newLog(t)
	p := newPublisher(t, cfg, log)
	msgs := brokertest.SubscribeAll(t, b.URL(), "opcua/#", 1) // a persistent session
	in := make(chan collectors.Batch, 16)
	runUA(t, p, in)
	wantStatus(t, receiveUA(t, msgs, data, status), pubSubOperational)
	batch := func(i int) collectors.Batch {
		return collectors.Batch{{PLC: "press1", Tag: "temperature", Value: int32(i), Type: "Int32", Status: "Good"}}
	}
	in <- batch(1)
	if m := receiveUA(t, msgs, data, status); decodeUA[uaNetworkMessage](t, m.Payload).Messages[0].SequenceNumber != 1 {
		t.Fatalf("first value: %s", m.Payload)
	}

	px.Refuse(true)
	b.Stop()
	sink.waitFor(t, "connection to broker lost")
	for i := 2; i <= 4; i++ {
		in <- batch(i)
	}
	b.Restart()
	// The subscriber subscribes again when it reconnects, and gets the
	// retained status: it is back.
	for m := receiveUA(t, msgs, data, status); !m.Retained; m = receiveUA(t, msgs, data, status) {
		if strings.HasPrefix(m.Topic, "opcua/json/data/") &&
			decodeUA[uaNetworkMessage](t, m.Payload).Messages[0].SequenceNumber != 1 { // 1 may come again: at least once
			t.Fatalf("before the agent is back: %s %s", m.Topic, m.Payload)
		}
	}
	px.Refuse(false)
	var seen []string
	var seqs []uint32
	for len(seqs) < 3 {
		m := receiveUA(t, msgs, data, status)
		if m.Retained {
			continue // replayed from the broker's store, not published anew
		}
		if strings.HasPrefix(m.Topic, "opcua/json/status/") {
			st := decodeUA[uaStatus](t, m.Payload)
			if st.Status == pubSubError {
				continue // the will, which Mosquitto may deliver around its restart
			}
			seen = append(seen, "status="+strconv.Itoa(st.Status))
			continue
		}
		dm := decodeUA[uaNetworkMessage](t, m.Payload).Messages[0]
		if dm.SequenceNumber == 1 {
			continue // delivered again by the broker: at least once
		}
		if len(seqs) == 0 {
			seen = append(seen, "data")
		}
		seqs = append(seqs, dm.SequenceNumber)
	}
	if strings.Join(seen, " ") != "status=2 data" {
		t.Fatalf("after the restart: %q, want the Operational status before the spooled data", seen)
	}
	if seqs[0] != 2 || seqs[1] != 3 || seqs[2] != 4 {
		t.Fatalf("sequence numbers after the restart: %v, want 2 3 4", seqs)
	}
}

func BenchmarkUAJSONEncode(b *testing.B) {
	cfg := uaConfig("tcp://127.0.0.1:1")
	f, err := newUAJSONFormat(cfg)
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
		f.encode(batch, true, add)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/value")
}

// Whatever the values and names, the output is JSON that the schema accepts
// and that gives the values back.
func FuzzUAJSONEncode(f *testing.F) {
	f.Add("temperature", "v1", 21.5, int64(-3), uint32(0), "Good")
	f.Add("a\"b\\c\u2028", "\xff\x00", math.Inf(1), int64(math.MinInt64), uint32(0x80050000), "BadCommunicationError")
	f.Add("", "", math.NaN(), int64(0), uint32(0x40000000), "Uncertain (0x40000000)")
	data, _ := uaSchemas(f)
	cfg := uaConfig("tcp://127.0.0.1:1")
	fm, err := newUAJSONFormat(cfg)
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
		fm.encode(b, true, func(_ string, payload []byte) {
			schemaCheck(t, data, payload)
			nm := decodeUA[uaNetworkMessage](t, payload)
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
