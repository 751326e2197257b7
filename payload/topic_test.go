package payload

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
)

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
			tp, err := newTopics(FromConfig(cfg))
			if err != nil {
				t.Fatal(err)
			}
			f, err := newFormat(FromConfig(cfg), tp, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			var b collectors.Batch
			for i := range 500 {
				b = append(b, collectors.Sample{PLC: "press1", Tag: "temperature", Value: int64(i), Type: "Int64", Status: "Good"})
			}
			b = append(b, collectors.Sample{PLC: "press1", Tag: "temperature", Value: strings.Repeat("x", 5000), Type: "String", Status: "Good"})
			var values, messages, over int
			f.Encode(b, true, func(topic string, payload []byte) {
				vs := tc.values(t, topic, payload)
				if vs == nil {
					return
				}
				messages++
				payload = f.Outgoing(topic, payload)
				if size := PacketSize(topic, len(payload), 1); size > limit {
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

// checkTopic refuses what a broker may drop the connection for; validate
// runs it on every rendered topic (CheckTopics).
func TestCheckTopicRefuses(t *testing.T) {
	for _, tc := range []struct {
		topic string
		ok    bool
	}{
		{"tagbridge/a1/press1/Temperatur-ü", true},
		{"tagbridge/a1/press1/tab\there", false},
		{"tagbridge/a1/press1/del\x7f", false},
		{"tagbridge/a1/press1/c1\u0085", false},
		{"tagbridge/a1/press1/\uffff", false},
		{"tagbridge/a1/press1/\ufdd0", false},
		{"tagbridge/a1/press1/\U0010fffe", false},
		{"tagbridge/a1/press1/\xff", false},
		{"$SYS/broker/x", false},
	} {
		if err := CheckTopic(tc.topic); (err == nil) != tc.ok {
			t.Errorf("CheckTopic(%q) = %v, want ok %v", tc.topic, err, tc.ok)
		}
		if l := level(tc.topic[1:]); CheckTopic("x/"+strings.ReplaceAll(l, "/", "_")) != nil {
			t.Errorf("level(%q) = %q: still refused", tc.topic[1:], l)
		}
	}
}
