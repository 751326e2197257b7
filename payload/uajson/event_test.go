package uajson

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
)

// TestUAJSONEvent: an event goes out as its own NetworkMessage holding a
// ua-event DataSetMessage whose Payload has the selected fields as
// Variants, numbered in its writer's sequence after the values of the same
// batch, which stay in their ua-deltaframe; the event is in no key frame.
func TestUAJSONEvent(t *testing.T) {
	data, _ := testkit.UASchemas(t)
	cfg := testkit.UAJSONConfig("tcp://127.0.0.1:1")
	cfg.MQTT.UAJSON.KeyFrameCount = 2
	f, err := newUAJSONFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	event := collectors.Sample{PLC: "press1", Tag: "alarms", Node: "i=2253", Type: collectors.TypeEvent, SourceTime: at,
		Value: collectors.Structure{TypeID: "i=2915", Fields: []collectors.Field{
			{Name: "EventId", Value: []byte{1, 2, 3}},
			{Name: "Severity", Value: uint16(700)},
			{Name: "Message", Value: collectors.LocalizedText{Text: "level high"}},
			{Name: "AckedState/Id", Value: false},
			{Name: "ConditionId", Value: collectors.Typed{Type: collectors.TypeNodeID, Value: "ns=1;s=Tank.LevelHigh"}},
		}}}
	value := collectors.Sample{PLC: "press1", Tag: "count", Value: int32(7), Type: collectors.TypeInt32, SourceTime: at}
	var payloads [][]byte
	f.Encode(collectors.Batch{event, value}, true, func(_ string, p []byte) {
		testkit.SchemaCheck(t, data, p)
		payloads = append(payloads, append([]byte(nil), p...))
	})
	type dsm struct {
		SequenceNumber uint32
		MessageType    string
		EventStream    string
		Payload        map[string]json.RawMessage
	}
	decode := func(p []byte) dsm {
		var nm struct{ Messages []dsm }
		if err := json.Unmarshal(p, &nm); err != nil || len(nm.Messages) != 1 {
			t.Fatalf("want one DataSetMessage: %s", p)
		}
		return nm.Messages[0]
	}
	// The delta frame, then the event (keyframe_count 2: the next values
	// bring the key frame).
	if len(payloads) < 2 {
		t.Fatalf("%d NetworkMessages, want the values' and the event's", len(payloads))
	}
	delta, ev := decode(payloads[0]), decode(payloads[len(payloads)-1])
	if delta.MessageType != "ua-deltaframe" || len(delta.Payload) != 1 || delta.Payload["count"] == nil {
		t.Errorf("delta frame: %s", payloads[0])
	}
	if ev.MessageType != "ua-event" || ev.EventStream != "alarms" || ev.SequenceNumber != uint32(len(payloads)) {
		t.Errorf("event DataSetMessage: %s", payloads[len(payloads)-1])
	}
	want := map[string]string{
		"EventId":       `{"UaType":15,"Value":"AQID"}`,
		"Severity":      `{"UaType":5,"Value":700}`,
		"Message":       `{"UaType":21,"Value":{"Text":"level high"}}`,
		"AckedState/Id": `{"UaType":1,"Value":false}`,
		"ConditionId":   `{"UaType":17,"Value":"ns=1;s=Tank.LevelHigh"}`,
	}
	for name, w := range want {
		if got := string(ev.Payload[name]); got != w {
			t.Errorf("field %s = %s, want %s", name, got, w)
		}
	}
	if len(ev.Payload) != len(want) {
		t.Errorf("event payload has %d fields, want %d: %s", len(ev.Payload), len(want), payloads[len(payloads)-1])
	}
	for _, p := range payloads[:len(payloads)-1] {
		if m := decode(p); m.Payload["alarms"] != nil {
			t.Errorf("event in a %s: %s", m.MessageType, p)
		}
	}
}

// TestUAJSONKeyFrameOnDemand: a message on opcua/json/keyframe/<agent id>
// asks for the Connected messages again, now followed by each writer's
// ua-keyframe with every tag's last DataValue (without keyframe_count);
// the next connect brings none unless asked again.
func TestUAJSONKeyFrameOnDemand(t *testing.T) {
	data, _ := testkit.UASchemas(t)
	f, err := newUAJSONFormat(payload.FromConfig(testkit.UAJSONConfig("tcp://127.0.0.1:1")))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for v := range int32(3) {
		f.Encode(collectors.Batch{{PLC: "press1", Tag: "count", Value: v, Type: collectors.TypeInt32, SourceTime: at}}, true, func(string, []byte) {})
	}
	keyFrames := func(msgs []payload.Message) []string {
		var out []string
		for _, m := range msgs {
			if strings.Contains(string(m.Payload), `"ua-keyframe"`) {
				testkit.SchemaCheck(t, data, m.Payload)
				out = append(out, string(m.Payload))
			}
		}
		return out
	}
	if k := keyFrames(f.Connected()); len(k) != 0 {
		t.Errorf("key frames without a request: %v", k)
	}
	topics := f.CommandTopics()
	if len(topics) != 1 || topics[0] != "opcua/json/keyframe/a1" {
		t.Fatalf("command topics %v, want [opcua/json/keyframe/a1]", topics)
	}
	if f.Command("opcua/json/keyframe/other", nil) {
		t.Error("another agent's trigger taken")
	}
	if !f.Command(topics[0], nil) {
		t.Fatal("trigger not taken as a request for the Connected messages")
	}
	k := keyFrames(f.Connected())
	if len(k) != 1 || !strings.Contains(k[0], `"SequenceNumber":4,`) || !strings.Contains(k[0], `"count":{"UaType":6,"Value":2,`) {
		t.Errorf("key frames on demand: %v; want one, number 4, with count's last value 2", k)
	}
	if k := keyFrames(f.Connected()); len(k) != 0 {
		t.Errorf("key frames again without a request: %v", k)
	}
}
