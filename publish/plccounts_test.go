package publish

import (
	"strings"
	"testing"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
)

// TestCountsByPLC, with Mosquitto: published values are counted by PLC
// entry, a shared session's batch of two entries included, and match
// what a subscriber receives on each entry's topics; SpoolBytes grows
// with a backlog while the broker is down and is 0 once it is delivered.
func TestCountsByPLC(t *testing.T) {
	b := testkit.StartBroker(t)
	msgs := testkit.Subscribe(t, b.URL(), "#", 1)
	log, _ := testkit.NewLogger(t, "publisher")
	cfg := testkit.Config(b.URL(), 1)
	cfg.PLCs = append(cfg.PLCs, config.PLC{Name: "press2", Tags: []config.Tag{{Name: "speed"}}})
	p := newPublisher(t, cfg, log)
	if st := p.Stats(); st.PLCs["press1"] != (PLCCounts{}) || st.PLCs["press2"] != (PLCCounts{}) || len(st.PLCs) != 2 {
		t.Fatalf("before any value: PLCs = %v, want press1 and press2 at 0", st.PLCs)
	}
	in := make(chan collectors.Event)
	done := start(t, p, in)

	value := func(plc, tag string, v int) collectors.Sample {
		return collectors.Sample{PLC: plc, Tag: tag, Value: int64(v)}
	}
	for i := range 10 {
		in <- collectors.Event{Batch: collectors.Batch{value("press1", "temperature", i), value("press1", "pressure", i)}}
		in <- collectors.Event{Batch: collectors.Batch{value("press2", "speed", i)}}
	}
	// A shared session's batch: entries interleaved.
	in <- collectors.Event{Batch: collectors.Batch{value("press1", "temperature", 10), value("press2", "speed", 10), value("press1", "pressure", 10)}}
	want := map[string]PLCCounts{"press1": {Published: 22}, "press2": {Published: 11}}
	st := waitStats(t, p, "22 values of press1 and 11 of press2 published", wait, func(st Stats) bool {
		return st.PLCs["press1"] == want["press1"] && st.PLCs["press2"] == want["press2"]
	})
	if len(st.PLCs) != 2 || st.Published != 33 {
		t.Errorf("Stats = %+v, want 33 published, by press1 and press2 only", st)
	}
	byPLC := map[string]int{}
	for _, m := range receive(t, msgs, 33) {
		switch {
		case strings.HasPrefix(m.Topic, "tagbridge/a1/press1/"), strings.HasPrefix(m.Topic, "plant/press1/"):
			byPLC["press1"]++
		case strings.HasPrefix(m.Topic, "tagbridge/a1/press2/"):
			byPLC["press2"]++
		default:
			t.Errorf("message on %s", m.Topic)
		}
	}
	if byPLC["press1"] != 22 || byPLC["press2"] != 11 {
		t.Errorf("the subscriber received %v, want press1 22, press2 11", byPLC)
	}
	waitStats(t, p, "nothing held", wait, func(st Stats) bool { return st.SpoolBytes == 0 && st.Spooled == 0 })

	// A backlog: the spool holds more and more bytes, then none once the
	// broker has it all.
	b.Stop()
	waitStats(t, p, "disconnected", wait, func(st Stats) bool { return !st.Connected })
	for i := range 50 {
		in <- collectors.Event{Batch: collectors.Batch{value("press2", "speed", 100+i)}}
	}
	first := waitStats(t, p, "50 values spooled", wait, func(st Stats) bool { return st.Spooled == 50 && st.SpoolBytes > 0 })
	for i := range 50 {
		in <- collectors.Event{Batch: collectors.Batch{value("press2", "speed", 200+i)}}
	}
	second := waitStats(t, p, "100 values spooled", wait, func(st Stats) bool { return st.Spooled == 100 })
	// Each record of the second 50 is as large as one of the first 50,
	// give or take a digit of the value.
	if second.SpoolBytes < 2*first.SpoolBytes-50 || second.SpoolBytes > 2*first.SpoolBytes+50 {
		t.Errorf("SpoolBytes: %d with 50 values held, %d with 100: want twice as much", first.SpoolBytes, second.SpoolBytes)
	}
	b.Restart()
	want["press2"] = PLCCounts{Published: 111}
	st = waitStats(t, p, "the backlog delivered", wait, func(st Stats) bool {
		return st.PLCs["press2"] == want["press2"] && st.SpoolBytes == 0 && st.Spooled == 0
	})
	if st.PLCs["press1"] != want["press1"] || st.Published != 133 {
		t.Errorf("after the backlog: Stats = %+v, want press1 unchanged at 22, 133 in all", st)
	}
	close(in)
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
