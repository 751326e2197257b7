package publish

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
	"github.com/tagbridge/tagbridge/scripts/faultproxy"
)

func TestStatusTopicClash(t *testing.T) {
	cfg := testkit.Config("tcp://127.0.0.1:1", 1)
	cfg.PLCs[0].Tags = append(cfg.PLCs[0].Tags, config.Tag{Name: "status"})
	cfg.Agent.SpoolDir = t.TempDir()
	_, err := New(cfg, newNopLog(), nil)
	if err == nil || !strings.Contains(err.Error(), `status topic "tagbridge/a1/press1/status" is also the topic of a tag`) {
		t.Fatalf("New with a tag named status: %v", err)
	}
}

// Status topics on a real broker: online with version on connect, each PLC
// entry's state as it changes, all retained, and offline on a clean stop.
func TestStatusTopics(t *testing.T) {
	b := testkit.StartBroker(t)
	cfg := testkit.Config(b.URL(), 1)
	cfg.Agent.Version = "1.2.3-test"
	log, _ := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, cfg, log)
	msgs := testkit.SubscribeAll(t, b.URL(), "tagbridge/a1/#", 1)
	in := make(chan collectors.Event)
	done := start(t, p, in)

	online := receive(t, msgs, 1)[0]
	var st map[string]any
	if err := json.Unmarshal(online.Payload, &st); err != nil {
		t.Fatal(err)
	}
	if online.Topic != "tagbridge/a1/status" || st["state"] != "online" || st["version"] != "1.2.3-test" || st["started"] == nil {
		t.Fatalf("online message: %s %s", online.Topic, online.Payload)
	}

	in <- collectors.Event{State: &collectors.PLCState{PLC: "press1", State: collectors.StateDisconnected, Reason: "connection refused", Since: time.Now()}}
	m := receive(t, msgs, 1)[0]
	if m.Topic != "tagbridge/a1/press1/status" || !strings.Contains(string(m.Payload), `"state":"disconnected","reason":"connection refused"`) {
		t.Fatalf("plc status: %s %s", m.Topic, m.Payload)
	}
	// A value after the state change, then streaming again.
	in <- collectors.Event{Batch: collectors.Batch{{PLC: "press1", Tag: "temperature", Value: 1.5, Type: collectors.TypeDouble}}}
	in <- collectors.Event{State: &collectors.PLCState{PLC: "press1", State: collectors.StateStreaming, Since: time.Now()}}
	got := receive(t, msgs, 2)
	topics := got[0].Topic + " " + got[1].Topic
	if !strings.Contains(topics, "tagbridge/a1/press1/temperature") || !strings.Contains(topics, "tagbridge/a1/press1/status") {
		t.Fatalf("got %s", topics)
	}

	// A late subscriber sees the retained state.
	late := testkit.Subscribe(t, b.URL(), "tagbridge/a1/+/status", 1)
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
	b := testkit.StartBroker(t)
	proxy := faultproxy.Start(t, strings.TrimPrefix(b.URL(), "tcp://"))
	cfg := testkit.Config("tcp://"+proxy.Addr(), 1)
	log, sink := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, cfg, log)
	msgs := testkit.SubscribeAll(t, b.URL(), "#", 1)
	in := make(chan collectors.Event, 16)
	done := start(t, p, in)
	t.Cleanup(func() { close(in); result(t, done) })
	in <- collectors.Event{State: &collectors.PLCState{PLC: "press1", State: collectors.StateStreaming, Since: time.Now()}}
	receive(t, msgs, 2) // online, streaming

	proxy.Refuse(true)
	proxy.Cut()
	sink.WaitFor(t, wait, "connection to broker lost")
	in <- collectors.Event{Batch: collectors.Batch{{PLC: "press1", Tag: "temperature", Value: 7.0, Type: collectors.TypeDouble}}}
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

// Every format that puts a PLC's batch in one message (json with
// mqtt.batch, sparkplug_b, opcua_json) splits it so that each packet fits
// mqtt.max_packet_size; together the messages hold every value in order.
// A single value larger than the limit goes alone (set aside at
// publishing).
func TestBatchSplitToMaxPacket(t *testing.T) {
	const limit = 4 << 10
	for _, tc := range []struct {
		name   string
		cfg    func() *config.Config
		values func(t *testing.T, topic string, payload []byte) []any // nil for messages that hold no values
	}{
		{"json batch", func() *config.Config {
			cfg := testkit.Config("tcp://127.0.0.1:1", 1)
			cfg.MQTT.Batch, cfg.MQTT.BatchTopic = true, "b/{agent}/{plc}"
			return cfg
		}, func(t *testing.T, _ string, payload []byte) []any {
			var arr []map[string]any
			if err := json.Unmarshal(payload, &arr); err != nil {
				t.Fatal(err)
			}
			var vs []any
			for _, o := range arr {
				v := o["value"]
				if str, ok := v.(string); ok { // Int64 (see AppendJSON)
					if n, err := strconv.ParseInt(str, 10, 64); err == nil {
						v = float64(n)
					}
				}
				vs = append(vs, v)
			}
			return vs
		}},
		{"sparkplug_b", func() *config.Config {
			cfg := testkit.SparkplugConfig("tcp://127.0.0.1:1")
			cfg.Agent.SpoolDir = t.TempDir()
			return cfg
		}, func(t *testing.T, topic string, payload []byte) []any {
			if !strings.Contains(topic, "/DDATA/") {
				return nil
			}
			var vs []any
			for _, m := range testkit.DecodeSparkplug(t, payload).Metrics {
				if m.GetStringValue() != "" {
					vs = append(vs, m.GetStringValue())
				} else {
					vs = append(vs, float64(m.GetLongValue()))
				}
			}
			return vs
		}},
		{"opcua_json", func() *config.Config { return testkit.UAJSONConfig("tcp://127.0.0.1:1") }, func(t *testing.T, _ string, payload []byte) []any {
			var nm struct {
				Messages []struct {
					Payload map[string]struct{ Value any }
				}
			}
			if err := json.Unmarshal(payload, &nm); err != nil {
				t.Fatal(err)
			}
			var vs []any
			for _, m := range nm.Messages {
				for _, v := range m.Payload {
					vs = append(vs, v.Value) // one value per tag and DataSetMessage
				}
			}
			return vs
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg()
			cfg.MQTT.MaxPacketSize = limit
			f, err := newFormat(payload.FromConfig(cfg), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			var b collectors.Batch
			for i := range 500 {
				b = append(b, collectors.Sample{PLC: "press1", Tag: "temperature", Value: int64(i), Type: collectors.TypeInt64})
			}
			b = append(b, collectors.Sample{PLC: "press1", Tag: "temperature", Value: strings.Repeat("x", 5000), Type: collectors.TypeString})
			var values, messages, over int
			f.Encode(b, true, func(topic string, record []byte) {
				vs := tc.values(t, topic, record)
				if vs == nil {
					return
				}
				messages++
				record = f.Outgoing(topic, record)
				if size := payload.PacketSize(topic, len(record), 1); size > limit {
					if len(vs) != 1 {
						t.Errorf("packet of %d bytes with %d values, over the limit", size, len(vs))
					}
					over++
				}
				for _, v := range vs {
					if n, ok := v.(float64); ok && int(n) != values {
						t.Fatalf("value %v in place %d", v, values)
					}
					values++
				}
			})
			if values != len(b) || messages < 2 || over != 1 {
				t.Errorf("%d values in %d messages (%d over the limit), want %d in several, 1 over", values, messages, over, len(b))
			}
		})
	}
}
