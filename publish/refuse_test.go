package publish

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
	"github.com/tagbridge/tagbridge/spool"
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
		{name: "over the broker's max_packet_size", bad: collectors.Sample{PLC: "press1", Tag: "big", Value: big, Type: collectors.TypeString}, aside: 1},
		{name: "over mqtt.max_packet_size", bad: collectors.Sample{PLC: "press1", Tag: "big", Value: big, Type: collectors.TypeString}, maxPacket: 4 << 10, aside: 1},
		{name: "denied by the broker's ACL", bad: collectors.Sample{PLC: "press1", Tag: "denied", Value: int64(1), Type: collectors.TypeInt64}, aside: -1}, // Mosquitto 2.0.11 acknowledges, then drops the connection
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
			b := testkit.StartBroker(t, testkit.WithConfig("max_packet_size 4096", "acl_file "+acl))
			msgs := testkit.Subscribe(t, b.URL(), "tagbridge/#", 1)
			cfg := testkit.Config(b.URL(), 1)
			cfg.MQTT.MaxPacketSize = tc.maxPacket
			cfg.PLCs[0].Tags = append(cfg.PLCs[0].Tags, config.Tag{Name: "big"}, config.Tag{Name: "denied"})
			cfg.Agent.SpoolDir = t.TempDir()
			const n = 20
			if tc.spooled != "" { // values 0..4 and the bad record, from before a restart
				s, err := spool.Open(cfg.Agent.SpoolDir, 1<<20, zerolog.Nop())
				if err != nil {
					t.Fatal(err)
				}
				for i := range 5 {
					smp := seqSample(i)
					if err := s.Append("tagbridge/a1/press1/temperature", payload.AppendJSON(nil, &smp)); err != nil {
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
			log, sink := testkit.NewLogger(t, "publisher")
			p := newPublisher(t, cfg, log)
			in := make(chan collectors.Event, n+1)
			for i := range n {
				if i < 5 && tc.spooled != "" {
					continue
				}
				if i == 5 && tc.spooled == "" {
					in <- collectors.Event{Batch: collectors.Batch{tc.bad}}
				}
				in <- collectors.Event{Batch: collectors.Batch{seqSample(i)}}
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
	h := testkit.StartHostileBroker(t, testkit.HugePublish)
	log, sink := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, testkit.Config(h.URL(), 1), log)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	in := make(chan collectors.Event)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, in) }()
	sink.WaitFor(t, wait, "connection to broker lost", "larger than mqtt.max_packet_size")
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
