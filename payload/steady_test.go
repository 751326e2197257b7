package payload

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/spool"
)

// BenchmarkSteadyState is the publisher's share of the path from a received
// notification to the bytes handed to the MQTT client, one publish cycle of
// 1000 values per op: the payload format encodes the batch into the spool,
// and the records are read back and acknowledged as pump does. It reports
// ns and allocations per value; the one allocation per record read is the
// payload copy that paho keeps until the broker acknowledges it, so with
// mqtt.batch it is one per publish cycle.
func BenchmarkSteadyState(b *testing.B) {
	const tags = 1000
	for _, batch := range []bool{false, true} {
		name := "value"
		if batch {
			name = "batch"
		}
		b.Run(name, func(b *testing.B) {
			cfg := &config.Config{
				Agent: config.Agent{ID: "bench"},
				MQTT:  config.MQTT{Topic: config.DefaultTopic, Batch: batch, BatchTopic: config.DefaultBatchTopic},
				PLCs:  []config.PLC{{Name: "plc00"}},
			}
			in := make(collectors.Batch, tags)
			ts := time.Date(2026, 11, 22, 10, 15, 30, 123456000, time.UTC)
			for i := range in {
				tag := fmt.Sprintf("int32_%04d", i)
				cfg.PLCs[0].Tags = append(cfg.PLCs[0].Tags, config.Tag{Name: tag})
				in[i] = collectors.Sample{PLC: "plc00", Tag: tag, Node: "ns=1;s=Int32." + tag[6:], Value: int32(100000 + i),
					Type: collectors.TypeInt32, SourceTime: ts, ServerTime: ts}
				in[i].Unbox() // as the collector's fast path delivers it
			}
			t, err := newTopics(FromConfig(cfg))
			if err != nil {
				b.Fatal(err)
			}
			f, err := newJSONFormat(FromConfig(cfg), t, ts)
			if err != nil {
				b.Fatal(err)
			}
			s, err := spool.Open(b.TempDir(), 1<<30, zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			add := func(topic string, payload []byte) {
				if err := s.Append(topic, payload); err != nil {
					b.Fatal(err)
				}
			}
			cycle := func() {
				f.Encode(in, true, add)
				if err := s.Flush(); err != nil {
					b.Fatal(err)
				}
				for {
					_, _, seq, ok := s.Peek()
					if !ok {
						break
					}
					s.Advance(seq)
					s.Ack(seq)
				}
			}
			cycle() // buffers and interned topics in place: the steady state
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			b.ResetTimer()
			for b.Loop() {
				cycle()
			}
			b.StopTimer()
			runtime.ReadMemStats(&m1)
			n := float64(b.N * tags)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/value")
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/n, "allocs/value")
			b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/n, "B/value")
		})
	}
}

func BenchmarkTopic(b *testing.B) {
	cfg := &config.Config{Agent: config.Agent{ID: "bench"}, MQTT: config.MQTT{Topic: config.DefaultTopic}, PLCs: []config.PLC{{Name: "plc00"}}}
	for i := range 1000 {
		cfg.PLCs[0].Tags = append(cfg.PLCs[0].Tags, config.Tag{Name: fmt.Sprintf("int32_%04d", i)})
	}
	t, err := newTopics(FromConfig(cfg))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("configured", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			t.topic("plc00", "int32_0500")
		}
	})
	b.Run("unknown tag", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			t.topic("plc00", "extra/tag")
		}
	})
}
