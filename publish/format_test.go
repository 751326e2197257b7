package publish

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/publish/brokertest"
	"github.com/tagbridge/tagbridge/scripts/faultproxy"
)

func TestStatusPrefix(t *testing.T) {
	for _, tc := range []struct{ template, want string }{
		{"tagbridge/{agent}/{plc}/{tag}", "tagbridge/ipc1"},
		{"plant/site/{agent}/{plc}/{tag}", "plant/site/ipc1"},
		{"{agent}/{plc}/{tag}", "ipc1"},
		{"plant/{plc}/{tag}", "plant/ipc1"},
		{"plant/x-{agent}/{tag}", "plant/x-ipc1"},
		{"{plc}/{tag}", "ipc1"},
	} {
		if got := statusPrefix(tc.template, "ipc1"); got != tc.want {
			t.Errorf("statusPrefix(%q) = %q, want %q", tc.template, got, tc.want)
		}
	}
}

func TestStatusTopicClash(t *testing.T) {
	cfg := testConfig("tcp://127.0.0.1:1", 1)
	cfg.PLCs[0].Tags = append(cfg.PLCs[0].Tags, config.Tag{Name: "status"})
	cfg.Agent.SpoolDir = t.TempDir()
	_, err := New(cfg, newNopLog())
	if err == nil || !strings.Contains(err.Error(), `status topic "tagbridge/a1/press1/status" is also the topic of a tag`) {
		t.Fatalf("New with a tag named status: %v", err)
	}
}

// A shared session's batch holds several PLC entries: one array each, in
// order of first appearance, each in the batch's order.
func TestBatchEncodeGroupsByPLC(t *testing.T) {
	cfg := testConfig("tcp://127.0.0.1:1", 1)
	cfg.MQTT.Batch = true
	cfg.MQTT.BatchTopic = "b/{agent}/{plc}"
	cfg.PLCs = append(cfg.PLCs, config.PLC{Name: "press2", Tags: []config.Tag{{Name: "t"}}})
	tp, err := newTopics(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f, err := newJSONFormat(cfg, tp, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b := collectors.Batch{
		{PLC: "press1", Tag: "temperature", Value: int32(1)},
		{PLC: "press2", Tag: "t", Value: int32(2)},
		{PLC: "press1", Tag: "pressure", Value: int32(3)},
	}
	var got []string
	f.encode(b, true, func(topic string, payload []byte) {
		var arr []map[string]any
		if err := json.Unmarshal(payload, &arr); err != nil {
			t.Fatalf("%s: %v: %s", topic, err, payload)
		}
		var vals []string
		for _, o := range arr {
			vals = append(vals, o["tag"].(string)+"="+string(mustJSON(t, o["value"])))
		}
		got = append(got, topic+" "+strings.Join(vals, ","))
	})
	want := []string{"b/a1/press1 temperature=1,pressure=3", "b/a1/press2 t=2"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("batches:\n got %q\nwant %q", got, want)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Status topics on a real broker: online with version on connect, each PLC
// entry's state as it changes, all retained, and offline on a clean stop.
func TestStatusTopics(t *testing.T) {
	b := brokertest.Start(t)
	cfg := testConfig(b.URL(), 1)
	cfg.Agent.Version = "1.2.3-test"
	log, _ := newLog(t)
	p := newPublisher(t, cfg, log)
	msgs := brokertest.SubscribeAll(t, b.URL(), "tagbridge/a1/#", 1)
	in := make(chan collectors.Batch)
	done := start(t, p, in)

	online := receive(t, msgs, 1)[0]
	var st map[string]any
	if err := json.Unmarshal(online.Payload, &st); err != nil {
		t.Fatal(err)
	}
	if online.Topic != "tagbridge/a1/status" || st["state"] != "online" || st["version"] != "1.2.3-test" || st["started"] == nil {
		t.Fatalf("online message: %s %s", online.Topic, online.Payload)
	}

	p.PLCStatus(collectors.PLCStatus{PLC: "press1", State: collectors.StateDisconnected, Reason: "connection refused", Since: time.Now()})
	m := receive(t, msgs, 1)[0]
	if m.Topic != "tagbridge/a1/press1/status" || !strings.Contains(string(m.Payload), `"state":"disconnected","reason":"connection refused"`) {
		t.Fatalf("plc status: %s %s", m.Topic, m.Payload)
	}
	// A value after the state change, then streaming again.
	in <- collectors.Batch{{PLC: "press1", Tag: "temperature", Value: 1.5, Type: "Double", Status: "Good"}}
	p.PLCStatus(collectors.PLCStatus{PLC: "press1", State: collectors.StateStreaming, Since: time.Now()})
	got := receive(t, msgs, 2)
	topics := got[0].Topic + " " + got[1].Topic
	if !strings.Contains(topics, "tagbridge/a1/press1/temperature") || !strings.Contains(topics, "tagbridge/a1/press1/status") {
		t.Fatalf("got %s", topics)
	}

	// A late subscriber sees the retained state.
	late := brokertest.Subscribe(t, b.URL(), "tagbridge/a1/+/status", 1)
	r := receive(t, late, 1)[0]
	if !r.Retained || !strings.Contains(string(r.Payload), `"state":"streaming"`) {
		t.Fatalf("retained plc status: %+v %s", r, r.Payload)
	}

	close(in)
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	bye := receive(t, msgs, 2)
	if bye[0].Topic != "tagbridge/a1/status" || string(bye[0].Payload) != `{"state":"offline"}` {
		t.Fatalf("offline: %s %s", bye[0].Topic, bye[0].Payload)
	}
	if bye[1].Topic != "tagbridge/a1/press1/status" || !strings.Contains(string(bye[1].Payload), `"state":"stopped"`) {
		t.Fatalf("plc stopped: %s %s", bye[1].Topic, bye[1].Payload)
	}
}

// After every reconnect the online message and the latest PLC states are
// published again, before any spooled value. The link is cut at a proxy, so
// the subscriber, connected straight to the broker, misses nothing.
func TestStatusTopicsAfterReconnect(t *testing.T) {
	b := brokertest.Start(t)
	proxy := faultproxy.Start(t, strings.TrimPrefix(b.URL(), "tcp://"))
	cfg := testConfig("tcp://"+proxy.Addr(), 1)
	log, sink := newLog(t)
	p := newPublisher(t, cfg, log)
	msgs := brokertest.SubscribeAll(t, b.URL(), "#", 1)
	in := make(chan collectors.Batch, 16)
	done := start(t, p, in)
	t.Cleanup(func() { close(in); result(t, done) })
	p.PLCStatus(collectors.PLCStatus{PLC: "press1", State: collectors.StateStreaming, Since: time.Now()})
	receive(t, msgs, 2) // online, streaming

	proxy.Refuse(true)
	proxy.Cut()
	sink.waitFor(t, "connection to broker lost")
	in <- collectors.Batch{{PLC: "press1", Tag: "temperature", Value: 7.0, Type: "Double", Status: "Good"}}
	proxy.Refuse(false)
	var seen []string
	for {
		m := receive(t, msgs, 1)[0]
		if m.Topic == "tagbridge/a1/press1/temperature" {
			break
		}
		seen = append(seen, m.Topic+" "+string(m.Payload))
	}
	// The broker sends the will when the link is cut.
	for len(seen) > 0 && seen[0] == `tagbridge/a1/status {"state":"offline"}` {
		seen = seen[1:]
	}
	if len(seen) != 2 || !strings.HasPrefix(seen[0], `tagbridge/a1/status {"state":"online"`) ||
		!strings.HasPrefix(seen[1], `tagbridge/a1/press1/status {"state":"streaming"`) {
		t.Fatalf("before the spooled value after the reconnect: %q", seen)
	}
}

func newNopLog() zerolog.Logger { return zerolog.Nop() }

func TestFirstOfPLC(t *testing.T) {
	b := collectors.Batch{{PLC: "a"}, {PLC: "a"}, {PLC: "b"}, {PLC: "a"}, {PLC: "c"}, {PLC: "b"}}
	var firsts []int
	for i := range b {
		if firstOfPLC(b, i) {
			firsts = append(firsts, i)
		}
	}
	if fmt.Sprint(firsts) != "[0 2 4]" {
		t.Fatalf("first samples of each PLC entry at %v, want [0 2 4]", firsts)
	}
}
