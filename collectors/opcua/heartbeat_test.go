package opcua

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// Heartbeats repeat an unchanged value every period, start over after a
// change, carry BadNoCommunication while the PLC is away, and with
// last_good repeat the last Good value.
func TestHeartbeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tags := []tagRef{{plc: "p", Tag: &config.Tag{Name: "a"}}, {plc: "p", Tag: &config.Tag{Name: "b"}}, {plc: "p", Tag: &config.Tag{Name: "c"}}}
		h := newHeartbeats(tags, []time.Duration{3 * time.Second, 0, 5 * time.Second}, false)
		out := make(chan collectors.Batch, 16)
		var up atomic.Bool
		up.Store(true)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		in, stop := h.relay(ctx, out, up.Load)
		defer stop()

		start := time.Now()
		good := collectors.Sample{PLC: "p", Tag: "a", Value: int32(7), SourceTime: start}
		send := func(s collectors.Sample) {
			in <- collectors.Batch{s}
			if b := <-out; len(b) != 1 || b[0].Heartbeat {
				t.Fatalf("relayed %+v", b)
			}
		}
		send(good)
		send(collectors.Sample{PLC: "p", Tag: "b", Value: 1.5}) // no heartbeat
		send(collectors.Sample{PLC: "p", Tag: "c", Value: "x"})

		type beat struct {
			tag    string
			at     time.Duration
			status string
		}
		var got []beat
		collect := func(until time.Duration) {
			for {
				time.Sleep(time.Until(start.Add(until)))
				synctest.Wait()
				select {
				case b := <-out:
					for _, s := range b {
						if !s.Heartbeat || s.Any() == nil || !s.SourceTime.Equal(good.SourceTime) && s.Tag == "a" {
							t.Errorf("heartbeat %+v", s)
						}
						got = append(got, beat{s.Tag, s.ServerTime.Sub(start), s.StatusCode.String()})
					}
					continue
				default:
				}
				return
			}
		}
		collect(7 * time.Second)
		// A change of a at 7s starts its period over.
		send(good)
		collect(11 * time.Second)
		up.Store(false)
		collect(16 * time.Second)

		want := []beat{
			{"a", 3 * time.Second, "Good"}, {"c", 5 * time.Second, "Good"}, {"a", 6 * time.Second, "Good"},
			{"a", 10 * time.Second, "Good"}, {"c", 10 * time.Second, "Good"},
			{"a", 13 * time.Second, "BadNoCommunication"}, {"c", 15 * time.Second, "BadNoCommunication"},
			{"a", 16 * time.Second, "BadNoCommunication"},
		}
		if len(got) != len(want) {
			t.Fatalf("heartbeats %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("heartbeat %d: %v, want %v", i, got[i], want[i])
			}
		}
	})
}

func TestHeartbeatsLastGood(t *testing.T) {
	now := time.Now()
	h := newHeartbeats([]tagRef{{plc: "p", Tag: &config.Tag{}}}, []time.Duration{time.Second}, true)
	h.note(0, collectors.Sample{Value: 1.0}, now)
	h.note(0, collectors.Sample{Value: 2.0, StatusCode: 0x808B0000}, now.Add(500*time.Millisecond))
	if b, _ := h.due(now.Add(time.Second), true); len(b) != 0 {
		t.Fatalf("heartbeat %v before a period passed since the Bad change", b)
	}
	b, next := h.due(now.Add(1500*time.Millisecond), true)
	if len(b) != 1 || b[0].Any() != 1.0 || b[0].StatusCode.String() != "Good" || !b[0].Heartbeat {
		t.Fatalf("heartbeat %+v, want the last Good value", b)
	}
	if !next.Equal(now.Add(2500 * time.Millisecond)) {
		t.Errorf("next heartbeat at %v, want 1 s later", next.Sub(now))
	}
	if newHeartbeats(make([]tagRef, 2), []time.Duration{0, 0}, false) != nil {
		t.Error("heartbeats without any period")
	}
}

// Against plcsim with values that do not change: heartbeats of the last
// value while the PLC is up, then with BadNoCommunication once it is gone.
func TestSessionHeartbeats(t *testing.T) {
	plc := simproc.Start(t, "-tags", "2", "-interval", "1h")
	cfg := plcConfig(t, plc.Endpoint, simproc.Tags(t, 2))
	cfg.Tags[1].Heartbeat = config.Duration(300 * time.Millisecond)
	r := startSession(t, cfg)
	name := cfg.Tags[1].Name
	beats := func(status string) int {
		r.mu.Lock()
		defer r.mu.Unlock()
		n := 0
		for _, s := range r.samples[name] {
			if s.Heartbeat && s.StatusCode.String() == status {
				n++
			}
		}
		return n
	}
	waitUntil(t, "three Good heartbeats", 20*time.Second, func() bool { return beats("Good") >= 3 })
	plc.Kill()
	waitUntil(t, "a BadNoCommunication heartbeat", 20*time.Second, func() bool { return beats("BadNoCommunication") >= 1 })

	r.mu.Lock()
	defer r.mu.Unlock()
	first := r.samples[name][0]
	if first.Heartbeat {
		t.Fatalf("first sample %+v is a heartbeat", first)
	}
	for _, s := range r.samples[name][1:] {
		if !s.Heartbeat || s.Any() != first.Any() || !s.SourceTime.Equal(first.SourceTime) {
			t.Errorf("sample %+v, want a heartbeat of %v (source time %v)", s, first.Any(), first.SourceTime)
		}
	}
	if n := len(r.samples[cfg.Tags[0].Name]); n != 1 {
		t.Errorf("%d samples of the tag without a heartbeat, want 1", n)
	}
}

// A reload's new tag table: a kept tag beats on from its last value, a
// removed tag stops, a new tag beats once it has a value; liveRetag takes
// such a change live unless heartbeats come or go altogether, or a tag is
// polled.
func TestHeartbeatsRetag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &config.Tag{Name: "a", Heartbeat: config.Duration(3 * time.Second)}
		b := &config.Tag{Name: "b", Heartbeat: config.Duration(2 * time.Second)}
		c := &config.Tag{Name: "c", Heartbeat: config.Duration(2 * time.Second)}
		h := heartbeatsFor(config.PLC{}, []tagRef{{plc: "p", Tag: a}, {plc: "p", Tag: b}})
		start := time.Now()
		h.noteTag(collectors.Sample{PLC: "p", Tag: "a", Value: 1}, start)
		h.noteTag(collectors.Sample{PLC: "p", Tag: "b", Value: 2}, start)

		time.Sleep(time.Second)
		h.retag([]tagRef{{plc: "p", Tag: a}, {Tag: removedTag}, {plc: "p", Tag: c}})
		h.noteTag(collectors.Sample{PLC: "p", Tag: "b", Value: 3}, time.Now()) // a straggler of the removed tag
		h.noteTag(collectors.Sample{PLC: "p", Tag: "c", Value: 4}, time.Now())

		var got []string
		for range 6 {
			time.Sleep(time.Second)
			batch, _ := h.due(time.Now(), true)
			for _, s := range batch {
				got = append(got, fmt.Sprintf("%s=%v@%s", s.Tag, s.Any(), time.Since(start)))
			}
		}
		want := []string{"a=1@3s", "c=4@3s", "c=4@5s", "a=1@6s", "c=4@7s"}
		if !slices.Equal(got, want) {
			t.Errorf("heartbeats %v, want %v", got, want)
		}
	})

	beat := func(name string, d time.Duration) config.Tag {
		return config.Tag{Name: name, Heartbeat: config.Duration(d)}
	}
	plc := func(tags ...config.Tag) []config.PLC { return []config.PLC{{Name: "p", Tags: tags}} }
	cases := []struct {
		name      string
		old, next []config.PLC
		live      bool
	}{
		{"tags with heartbeats added and removed", plc(beat("a", time.Second), beat("b", 0)), plc(beat("a", 2*time.Second), beat("c", time.Second)), true},
		{"no heartbeat before or after", plc(beat("a", 0)), plc(beat("a", 0), beat("b", 0)), true},
		{"heartbeats come", plc(beat("a", 0)), plc(beat("a", 0), beat("b", time.Second)), false},
		{"heartbeats go", plc(beat("a", time.Second)), plc(beat("b", 0)), false},
		{"a polled tag", plc(beat("a", 0)), plc(beat("a", 0), config.Tag{Name: "b", Mode: config.ModePoll}), false},
	}
	for _, tc := range cases {
		if got := liveRetag(tc.old, tc.next); got != tc.live {
			t.Errorf("%s: liveRetag %v, want %v", tc.name, got, tc.live)
		}
	}
}
