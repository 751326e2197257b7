package opcua

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// startTweakedSession is startSessions for one entry with the session
// adjusted before it runs.
func startTweakedSession(t *testing.T, plc config.PLC, tweak func(*Session)) (*runSession, *Session) {
	t.Helper()
	r := &runSession{samples: map[string][]collectors.Sample{}, logs: &testkit.Log{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	r.stop = cancel
	out := make(chan collectors.Batch, 1024)
	go func() {
		for batch := range out {
			r.mu.Lock()
			for _, s := range batch {
				r.samples[s.Tag] = append(r.samples[s.Tag], s)
			}
			r.mu.Unlock()
		}
	}()
	plcs := []config.PLC{plc}
	keepStateInTemp(t, plcs)
	s := NewSession(plcs[0], zerolog.New(r.logs).Level(zerolog.DebugLevel))
	tweak(s)
	go func() { r.done <- s.Run(ctx, out); close(out) }()
	t.Cleanup(func() {
		r.shutdown(t)
		if t.Failed() {
			t.Logf("session log:\n%s", r.logs)
		}
	})
	return r, s
}

// Many tags of one publishing interval are split over several
// subscriptions, each bounded; every tag streams, and the state says
// streaming only once values came.
func TestSessionSplitsTagsOverSubscriptions(t *testing.T) {
	const n, perSub = 25, 10
	plc := simproc.Start(t, "-tags", fmt.Sprint(n), "-interval", "100ms")
	var states []string
	r, s := startTweakedSession(t, plcConfig(t, plc.Endpoint, simproc.Tags(t, n)), func(s *Session) {
		s.maxItemsPerSub = perSub
		s.states.OnChange(func(st collectors.PLCState) { states = append(states, st.State+": "+st.Reason) })
	})
	waitUntil(t, "values from every tag", 15*time.Second, func() bool { return r.tagsSeen() == n })
	if !strings.Contains(r.logs.String(), `"subscriptions":3,`) {
		t.Errorf("want 3 subscriptions for %d tags at %d per subscription:\n%s", n, perSub, r.logs)
	}
	from := len(r.counterValues("int32_0001"))
	waitUntil(t, "a steady stream", 15*time.Second, func() bool { return len(r.counterValues("int32_0001")) >= from+20 })
	r.shutdown(t)
	want := []string{"connecting: subscribed; waiting for the first notification", "streaming: ", "stopped: "}
	if strings.Join(states, "|") != strings.Join(want, "|") {
		t.Errorf("states %q, want %q", states, want)
	}
	if st := s.States().Snapshot()[0]; st.TagsOK != n || st.TagsFailed != 0 {
		t.Errorf("tags %d ok, %d failed; want %d ok", st.TagsOK, st.TagsFailed, n)
	}
}

// A PLC with more values in one publishing interval than fit in one
// message (gopcua's client takes 2 MiB, about 78,000 values; issue 20):
// with the tags split over bounded subscriptions, every one streams.
func TestSessionStreamsNinetyThousandTags(t *testing.T) {
	const n = 90_000
	plc := simproc.Start(t, "-tags", fmt.Sprint(n), "-interval", "2s")
	r, s := startTweakedSession(t, plcConfig(t, plc.Endpoint, simproc.Tags(t, n)), func(*Session) {})
	waitUntil(t, "values from every tag", 150*time.Second, func() bool { return r.tagsSeen() == n })
	r.shutdown(t)
	if st := s.States().Snapshot()[0]; st.Reconnects != 0 || st.Recoveries != 0 || st.LastError != "" {
		t.Errorf("status %+v: want one session without errors", st)
	}
	if want := fmt.Sprintf(`"subscriptions":%d,`, (n+defaultItemsPerSubscription-1)/defaultItemsPerSubscription); !strings.Contains(r.logs.String(), want) {
		t.Errorf("log lacks %s", want)
	}
}
