package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/publish/brokertest"
)

// A message the broker will never take is set aside in the dead-letter
// file, counted and logged once, and the values after it flow: before,
// paho resent it first on every connection, for ever.
func TestPublishRefused(t *testing.T) {
	big := strings.Repeat("x", 8<<10)
	tests := []struct {
		name string
		// spooled is a record an older configuration left in the spool.
		spooled   string
		bad       collectors.Sample // sent between the values, if spooled is ""
		maxPacket config.Size
		aside     int // -1: 0 or 1
	}{
		{name: "over the broker's max_packet_size", bad: collectors.Sample{PLC: "press1", Tag: "big", Value: big, Type: "String"}, aside: 1},
		{name: "over mqtt.max_packet_size", bad: collectors.Sample{PLC: "press1", Tag: "big", Value: big, Type: "String"}, maxPacket: 4 << 10, aside: 1},
		{name: "denied by the broker's ACL", bad: collectors.Sample{PLC: "press1", Tag: "denied", Value: int64(1), Type: "Int64"}, aside: -1}, // Mosquitto 2.0.11 acknowledges, then drops the connection
		{name: "control character in a spooled topic", spooled: "tagbridge/a1/press1/bad\x01tag", aside: 1},
		{name: "U+FFFF in a spooled topic", spooled: "tagbridge/a1/press1/bad\uffff", aside: 1},
		{name: "$SYS topic spooled", spooled: "$SYS/broker/x", aside: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			acl := filepath.Join(t.TempDir(), "acl")
			if err := os.WriteFile(acl, []byte("topic readwrite #\ntopic deny tagbridge/a1/press1/denied\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			b := brokertest.Start(t, brokertest.WithConfig("max_packet_size 4096", "acl_file "+acl))
			msgs := brokertest.Subscribe(t, b.URL(), "tagbridge/#", 1)
			cfg := testConfig(b.URL(), 1)
			cfg.MQTT.MaxPacketSize = tc.maxPacket
			cfg.PLCs[0].Tags = append(cfg.PLCs[0].Tags, config.Tag{Name: "big"}, config.Tag{Name: "denied"})
			cfg.Agent.SpoolDir = t.TempDir()
			const n = 20
			if tc.spooled != "" { // values 0..4 and the bad record, from before a restart
				s, _ := openSpool(t, cfg.Agent.SpoolDir, 1<<20)
				for i := range 5 {
					smp := seqSample(i)
					if err := s.Append("tagbridge/a1/press1/temperature", AppendJSON(nil, &smp)); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.Append(tc.spooled, []byte(`{"value":1}`)); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			log, sink := newLog(t)
			p := newPublisher(t, cfg, log)
			in := make(chan collectors.Batch, n+1)
			for i := range n {
				if i < 5 && tc.spooled != "" {
					continue
				}
				if i == 5 && tc.spooled == "" {
					in <- collectors.Batch{tc.bad}
				}
				in <- collectors.Batch{seqSample(i)}
			}
			close(in)
			done := start(t, p, in)
			// At least once: a value the broker had not acknowledged when
			// it dropped the connection comes again, after the later ones.
			next := 0
			timeout := time.After(wait)
			for next < n {
				select {
				case m := <-msgs:
					if !strings.HasSuffix(m.Topic, "/temperature") {
						t.Fatalf("message on %s: the broker should not have taken it", m.Topic)
					}
					switch got := seqOf(t, m); {
					case got == next:
						next++
					case got > next:
						t.Fatalf("value %d arrived before %d", got, next)
					}
				case <-timeout:
					t.Fatalf("received values 0..%d of %d within %v", next-1, n, wait)
				}
			}
			if err := result(t, done); err != nil {
				t.Fatalf("Run: %v", err)
			}
			st := p.Stats()
			if tc.aside < 0 && st.SetAside < 2 {
				tc.aside = int(st.SetAside)
			}
			if st.SetAside != uint64(tc.aside) || st.Dropped != uint64(tc.aside) {
				t.Errorf("Stats = %+v, want %d set aside and dropped", st, tc.aside)
			}
			if want := uint64(n + 1 - tc.aside); tc.spooled == "" && st.Published != want {
				t.Errorf("Stats.Published = %d, want %d", st.Published, want)
			}
			dead, err := os.ReadFile(filepath.Join(cfg.Agent.SpoolDir, "deadletter"))
			if tc.aside == 0 {
				if !errors.Is(err, os.ErrNotExist) {
					t.Errorf("dead-letter file: %v, want none", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("dead-letter file: %v", err)
			}
			topic := tc.spooled
			if topic == "" {
				topic = "tagbridge/a1/press1/" + tc.bad.Tag
			}
			if !bytes.HasPrefix(dead, []byte("TBDEAD01")) || !bytes.Contains(dead, []byte(topic)) {
				t.Errorf("dead-letter file does not hold %q: %.100q", topic, dead)
			}
			if c := strings.Count(sink.String(), "set a message the broker cannot take aside"); c != 1 {
				t.Errorf("set aside logged %d times, want once", c)
			}
		})
	}
}

// A broker that sends a 256 MB PUBLISH is cut off at its fixed header:
// paho, which has no limit, would allocate the whole packet.
func TestPublishHugePacketFromBroker(t *testing.T) {
	h := brokertest.StartHostile(t, brokertest.HugePublish)
	log, sink := newLog(t)
	p := newPublisher(t, testConfig(h.URL(), 1), log)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	in := make(chan collectors.Batch)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, in) }()
	sink.waitFor(t, "connection to broker lost", "larger than mqtt.max_packet_size")
	select {
	case <-h.Closed():
	case <-time.After(wait):
		t.Fatalf("the agent did not hang up on the huge packet within %v (%d bytes of it sent)", wait, h.Sent())
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	cancel()
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d MB while the broker sent %d MB", allocated>>20, h.Sent()>>20)
	if allocated > 32<<20 {
		t.Errorf("allocated %d MB: the packet was read", allocated>>20)
	}
}

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
			cfg := testConfig("tcp://127.0.0.1:1", 1)
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
			cfg := spConfig("tcp://127.0.0.1:1")
			cfg.Agent.SpoolDir = t.TempDir()
			return cfg
		}, func(t *testing.T, topic string, payload []byte) []any {
			if !strings.Contains(topic, "/DDATA/") {
				return nil
			}
			var vs []any
			for _, m := range decodeSp(t, payload).Metrics {
				if m.GetStringValue() != "" {
					vs = append(vs, m.GetStringValue())
				} else {
					vs = append(vs, float64(m.GetLongValue()))
				}
			}
			return vs
		}},
		{"opcua_json", func() *config.Config { return uaConfig("tcp://127.0.0.1:1") }, func(t *testing.T, _ string, payload []byte) []any {
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
			tp, err := newTopics(cfg)
			if err != nil {
				t.Fatal(err)
			}
			f, err := newFormat(cfg, tp, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			var b collectors.Batch
			for i := range 500 {
				b = append(b, collectors.Sample{PLC: "press1", Tag: "temperature", Value: int64(i), Type: "Int64", Status: "Good"})
			}
			b = append(b, collectors.Sample{PLC: "press1", Tag: "temperature", Value: strings.Repeat("x", 5000), Type: "String", Status: "Good"})
			var values, messages, over int
			f.encode(b, true, func(topic string, payload []byte) {
				vs := tc.values(t, topic, payload)
				if vs == nil {
					return
				}
				messages++
				payload = f.outgoing(topic, payload)
				if size := packetSize(topic, len(payload), 1); size > limit {
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
		if err := checkTopic(tc.topic); (err == nil) != tc.ok {
			t.Errorf("checkTopic(%q) = %v, want ok %v", tc.topic, err, tc.ok)
		}
		if l := level(tc.topic[1:]); checkTopic("x/"+strings.ReplaceAll(l, "/", "_")) != nil {
			t.Errorf("level(%q) = %q: still refused", tc.topic[1:], l)
		}
	}
}
