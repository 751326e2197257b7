package publish

import (
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/internal/testkit"
)

// TestUAJSONKeyFrameOnDemandOnBroker: a message on
// opcua/json/keyframe/<agent id> brings, through Mosquitto, a ua-keyframe
// holding each tag's last value, and an event is its own ua-event
// DataSetMessage that stays out of it.
func TestUAJSONKeyFrameOnDemandOnBroker(t *testing.T) {
	data, _ := testkit.UASchemas(t)
	b := testkit.StartBroker(t)
	cfg := testkit.UAJSONConfig(b.URL())
	log, logs := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, cfg, log)
	msgs := testkit.SubscribeAll(t, b.URL(), "opcua/json/data/#", 1)
	in := make(chan collectors.Event, 8)
	start(t, p, in)
	event := collectors.Sample{PLC: "press1", Tag: "alarms", Type: collectors.TypeEvent, Value: collectors.Structure{TypeID: "i=2915", Fields: []collectors.Field{{Name: "Severity", Value: uint16(700)}}}}
	for i := range int32(3) {
		in <- collectors.Event{Batch: collectors.Batch{{PLC: "press1", Tag: "temperature", Value: i, Type: collectors.TypeInt32}}}
	}
	in <- collectors.Event{Batch: collectors.Batch{event}}
	next := func(what string) string {
		t.Helper()
		m := receive(t, msgs, 1)[0]
		testkit.SchemaCheck(t, data, m.Payload)
		if strings.Contains(string(m.Payload), `"ua-keepalive"`) {
			t.Fatalf("%s: a keep-alive came first", what)
		}
		return string(m.Payload)
	}
	for range 3 {
		if m := next("values"); !strings.Contains(m, `"ua-deltaframe"`) {
			t.Fatalf("want a delta frame: %s", m)
		}
	}
	if m := next("event"); !strings.Contains(m, `"MessageType":"ua-event","EventStream":"alarms","Payload":{"Severity":{"UaType":5,"Value":700}}`) {
		t.Fatalf("want the ua-event: %s", m)
	}
	// The subscription to the trigger follows the connect; ask until it is taken.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "rebirth requested") {
		if time.Now().After(deadline) {
			t.Fatal("key frame request not taken within 10 s")
		}
		publishRaw(t, b.URL(), "opcua/json/keyframe/a1", []byte("now"))
		testkit.Until(logs.Changed, 500*time.Millisecond, func() bool { return strings.Contains(logs.String(), "rebirth requested") })
	}
	m := next("key frame")
	if !strings.Contains(m, `"SequenceNumber":5,`) || !strings.Contains(m, `"MessageType":"ua-keyframe","Payload":{"temperature":{"UaType":6,"Value":2}}`) {
		t.Errorf("key frame on demand: %s; want number 5 with temperature's last value and no event", m)
	}
}
