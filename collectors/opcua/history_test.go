package opcua

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/scripts/faultproxy"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// A server without history (gopcua's offers no AccessHistoryDataCapability)
// gets no gap state: no last source time per tag in memory (48 bytes a
// tag) and no file of every tag written every 5 s, which at 100,000 tags
// doubled the agent's CPU per value (issue 16). A stale file is removed.
func TestSessionKeepsNoGapStateWithoutHistory(t *testing.T) {
	plc := simproc.Start(t, "-tags", "8", "-interval", "100ms")
	cfg := plcConfig(t, plc.Endpoint, simproc.Tags(t, 8))
	cfg.History.StateDir = t.TempDir()
	stale := filepath.Join(cfg.History.StateDir, "history-"+cfg.Name+".json")
	if err := os.WriteFile(stale, []byte(`{"`+cfg.Name+`":{"int32_0001":"2020-01-02T03:04:05Z"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r, s := startSessionValue(t, cfg)
	waitUntil(t, "values from every tag", 15*time.Second, func() bool { return r.tagsSeen() == 8 })
	r.shutdown(t) // saves the state, were there any
	if s.gaps.last != nil || s.gaps.fence != nil {
		t.Errorf("gap state of %d and %d tags kept for a server without history", len(s.gaps.last), len(s.gaps.fence))
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("state file %s after a run against a server without history: %v", stale, err)
	}
}

// A cut far longer than the server's queue covers (5 values per item,
// 100 ms apart; the cut lasts 6 s, TAGBRIDGE_GAP_CUT to change it): the
// PLC (node-opcua historizing its counters in memory) keeps the values,
// the agent reads the gap back from its history after the session
// recovered, hands it on in order marked historical, and then the live
// values: every counter value exactly once, in order. Then the agent stops
// for 3 s: the last values handed on were kept beside the spool, and the
// next start fills the time it was away the same way.
func TestSessionFillsGapFromHistory(t *testing.T) {
	cut := 6 * time.Second
	if v := os.Getenv("TAGBRIDGE_GAP_CUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		cut = d
	}
	peer := peerproc.Start(t, peerproc.Options{Tags: 8, Args: []string{"-historize"}})
	proxy := faultproxy.Start(t, strings.TrimPrefix(peer.Endpoint, "opc.tcp://"))
	plc := exceptionBased(recoveryPLC(t, "opc.tcp://"+proxy.Addr(), ""))
	plc.QueueSize = 5
	for i := range plc.Tags {
		plc.Tags[i].QueueSize = 5
	}
	plc.History.StateDir = t.TempDir()
	r, s := startSessionValue(t, plc)
	r.waitValues(t, "first values", 10, 30*time.Second)

	proxy.Refuse(true)
	proxy.Cut()
	time.Sleep(cut) // the outage itself, not a synchronisation
	proxy.Refuse(false)
	waitUntil(t, "the gap filled", 60*time.Second+cut, func() bool {
		return strings.Contains(r.logs.String(), "gap filled from the PLC's history")
	})
	r.waitValues(t, "live values after the gap", 20, 30*time.Second)
	r.shutdown(t)

	// node-opcua's 100 ms timer runs a little slow on a loaded machine.
	min := int(cut/(100*time.Millisecond)) * 8 / 10
	for _, tag := range []string{"int32_0001", "int32_0005"} {
		vs := r.counterValues(tag)
		if len(vs) < min {
			t.Errorf("%s: %d values, want at least %d", tag, len(vs), min)
		}
		for i := 1; i < len(vs); i++ {
			if vs[i] != vs[i-1]+1 {
				t.Fatalf("%s: value %d after %d at index %d: gap, duplicate or reordering (%s)", tag, vs[i], vs[i-1], i, r.around(tag, i))
			}
		}
	}
	r.mu.Lock()
	historical, liveAfter, order := 0, 0, ""
	for _, smp := range r.samples["int32_0001"] {
		switch {
		case smp.Historical:
			historical++
			if liveAfter > 0 {
				order = "a historical value after live ones"
			}
		case historical > 0:
			liveAfter++
		}
	}
	r.mu.Unlock()
	// The cut loses at least cut/100ms values beyond the 5 queued.
	if want := int(cut/(100*time.Millisecond)) * 8 / 10; historical < want || order != "" {
		t.Errorf("%d historical values (want at least %d) %s", historical, want, order)
	}
	st := s.States().Snapshot()[0]
	t.Logf("GAP cut=%v values=%d historical=%d recoveries=%d reconnects=%d", cut, len(r.counterValues("int32_0001")), historical, st.Recoveries, st.Reconnects)

	time.Sleep(3 * time.Second) // the agent is away
	after, _ := startSessionValue(t, plc)
	waitUntil(t, "the gap across the restart filled", 30*time.Second, func() bool {
		return strings.Contains(after.logs.String(), "gap filled from the PLC's history")
	})
	after.waitValues(t, "live values after the restart", 10, 30*time.Second)
	after.shutdown(t)
	for _, tag := range []string{"int32_0001", "int32_0005"} {
		vs := append(r.counterValues(tag), after.counterValues(tag)...)
		for i := 1; i < len(vs); i++ {
			if vs[i] != vs[i-1]+1 {
				t.Fatalf("%s: value %d after %d at index %d (%d before the restart): gap or duplicate", tag, vs[i], vs[i-1], i, len(r.counterValues(tag)))
			}
		}
	}
	after.mu.Lock()
	restored := 0
	for _, smp := range after.samples["int32_0001"] {
		if smp.Historical {
			restored++
		}
	}
	after.mu.Unlock()
	if restored < 20 {
		t.Errorf("%d historical values after a 3 s stop at 10 values a second, want at least 20", restored)
	}
	t.Logf("GAP agent restart after 3 s: historical=%d", restored)
}

// gapStateMap is the gap state as the file held it before it was written
// by hand (json.Marshal of this map), for comparison.
func gapStateMap(s *Session) map[string]map[string]time.Time {
	out := map[string]map[string]time.Time{}
	for h, at := range s.gaps.last {
		if at.IsZero() || (s.gaps.historizing != nil && !s.gaps.historizing[h]) {
			continue
		}
		t := s.tags[h]
		if out[t.plc] == nil {
			out[t.plc] = map[string]time.Time{}
		}
		out[t.plc][t.Name] = at
	}
	return out
}

// The state file written by hand reads back as the map json.Marshal
// wrote: names that need escaping, two entries of a shared session, tags
// without a value or not historizing left out.
func TestGapStateJSON(t *testing.T) {
	names := []string{`plain`, `quo"te`, `back\slash`, "tab\tnew\nline\x01", "Grüße ⚙", `</script>&`, "", "slash/ok"}
	tags := testTags(2 * len(names))
	for i := range tags {
		tags[i].Name = names[i%len(names)]
		if i >= len(names) {
			tags[i].plc = `second "entry"`
		}
	}
	s := &Session{tags: tags}
	s.gaps.size(len(tags))
	s.gaps.historizing = make([]bool, len(tags))
	base := time.Date(2026, 12, 3, 18, 0, 0, 123456789, time.UTC)
	for h := range tags {
		s.gaps.historizing[h] = h != 3
		if h != 5 {
			s.gaps.last[h] = base.Add(time.Duration(h) * 1500 * time.Millisecond)
		}
	}
	var got map[string]map[string]time.Time
	if err := json.Unmarshal(s.gapStateJSON(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, s.gapStateJSON())
	}
	want := gapStateMap(s)
	if len(got) != len(want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	for entry, tags := range want {
		if len(got[entry]) != len(tags) {
			t.Errorf("%q: %d tags, want %d: %v", entry, len(got[entry]), len(tags), got[entry])
		}
		for name, at := range tags {
			if !got[entry][name].Equal(at) {
				t.Errorf("%q %q: %v, want %v", entry, name, got[entry][name], at)
			}
		}
	}
}

// BenchmarkGapState: the state file of 10,000 historizing tags, as
// json.Marshal of the map wrote it and by hand.
func BenchmarkGapState(b *testing.B) {
	s := &Session{tags: testTags(10_000)}
	s.gaps.size(len(s.tags))
	for h := range s.tags {
		s.gaps.last[h] = time.Date(2026, 12, 3, 18, 0, 0, h*1000, time.UTC)
	}
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(gapStateMap(s)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("by hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.gapStateJSON()
		}
	})
}
