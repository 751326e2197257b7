package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// simEntry is one plcs: entry on a plcsim, with its first tags tags.
type simEntry struct {
	name, endpoint string
	tags           int
}

// writeConfig writes and loads a configuration for entries; mqtt is the
// mqtt: mapping.
func writeReloadConfig(t *testing.T, file, spool, mqtt string, entries ...simEntry) *config.Config {
	t.Helper()
	var y strings.Builder
	fmt.Fprintf(&y, "agent: {id: rl, spool_dir: %s}\nmqtt: %s\nplcs:\n", spool, mqtt)
	for _, e := range entries {
		// The simulator merges changes within one publishing interval, so
		// publish faster than values change.
		fmt.Fprintf(&y, "  - name: %s\n    endpoint: %s\n    publishing_interval: 20ms\n    sampling_interval: 0s\n    reconnect: {min: 100ms, max: 300ms}\n", e.name, e.endpoint)
		for _, line := range strings.Split(strings.TrimRight(simproc.Tags(t, e.tags), "\n"), "\n") {
			fmt.Fprintf(&y, "    %s\n", line)
		}
	}
	if err := os.WriteFile(file, []byte(y.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("config:\n%v\n%s", err, y.String())
	}
	return cfg
}

// collect feeds what a subscription receives into a new received.
func collect(t *testing.T, url string) *received {
	got := &received{byTag: map[string][]payload{}, topics: map[string]string{}, raw: map[string][]byte{}}
	msgs := testkit.Subscribe(t, url, "tagbridge/rl/#", 1)
	go func() {
		for m := range msgs {
			got.add(m.Topic, m.Payload)
		}
	}()
	return got
}

// agentRun is an Agent started by startReloadAgent.
type agentRun struct {
	a    *Agent
	logs *testkit.Log
	stop func() // cancels and waits for Run, which must succeed
}

func startReloadAgent(t *testing.T, cfg *config.Config, level zerolog.Level) *agentRun {
	t.Helper()
	logs := &testkit.Log{}
	a := New(cfg, zerolog.New(logs).Level(level).With().Timestamp().Logger())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	r := &agentRun{a: a, logs: logs}
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(ShutdownTimeout + 5*time.Second):
				t.Errorf("agent did not stop within %v", ShutdownTimeout+5*time.Second)
			}
		})
	}
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	return r
}

// tracker returns the tracker serving plc, or nil.
func (r *agentRun) tracker(plc string) *collectors.Tracker {
	for _, tr := range r.a.Trackers() {
		for _, st := range tr.Snapshot() {
			if st.PLC == plc {
				return tr
			}
		}
	}
	return nil
}

func (r *agentRun) waitStreaming(t *testing.T, plc string) collectors.PLCState {
	t.Helper()
	var st collectors.PLCState
	testkit.WaitUntil(t, plc+" streaming", 20*time.Second, func() bool {
		tr := r.tracker(plc)
		if tr == nil {
			return false
		}
		for _, s := range tr.Snapshot() {
			if s.PLC == plc {
				st = s
			}
		}
		return st.State == collectors.StateStreaming
	})
	return st
}

func (g *received) has(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.byTag[key]) > 0
}

// last returns the latest Int32 value received for key, or -1.
func (g *received) last(key string) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	v := g.byTag[key]
	if len(v) == 0 {
		return -1
	}
	n, _ := intValue(v[len(v)-1])
	return n
}

// quiet waits until nothing more arrives for a while.
func (g *received) quiet(t *testing.T, plcs ...string) {
	t.Helper()
	last := -1
	testkit.WaitUntil(t, "subscriber to go quiet", 15*time.Second, func() bool {
		n := 0
		for _, p := range plcs {
			n += g.count(p)
		}
		quiet := n == last
		last = n
		if !quiet {
			time.Sleep(300 * time.Millisecond)
		}
		return quiet
	})
}

// counterValues returns the Int32 values received for plc/tag in arrival order.
func (g *received) counterValues(t *testing.T, key string) []int64 {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []int64
	for _, p := range g.byTag[key] {
		v, ok := intValue(p)
		if !ok {
			t.Fatalf("%s: value %s is not an Int32", key, p.Value)
		}
		out = append(out, v)
	}
	return out
}

// complete reports the first value missing from vs: each value is the one
// after the highest so far, or a repeat of an earlier one (a publisher
// replaced by a reload sends again what its broker had not acknowledged).
func complete(vs []int64) (repeats int, err error) {
	for i := 1; i < len(vs); i++ {
		top := slices.Max(vs[:i])
		switch {
		case vs[i] <= top:
			repeats++
		case vs[i] != top+1:
			return repeats, fmt.Errorf("value %d after %d at index %d", vs[i], top, i)
		}
	}
	return repeats, nil
}

// contiguous reports the first gap or repeat in vs.
func contiguous(vs []int64) error {
	for i := 1; i < len(vs); i++ {
		if vs[i] != vs[i-1]+1 {
			return fmt.Errorf("value %d after %d at index %d", vs[i], vs[i-1], i)
		}
	}
	return nil
}

// sessionsEstablished counts the log lines of sessions of plc coming up.
func sessionsEstablished(log, plc string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"plc":"`+plc+`"`) && strings.Contains(l, `"message":"plc session established"`) {
			n++
		}
	}
	return n
}

// One reload with an unchanged, a changed, a removed and a new PLC entry.
func TestReloadPLCs(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	broker := testkit.StartBroker(t)
	sims := map[string]*simproc.PLC{}
	for _, name := range []string{"keep", "change", "drop", "add"} {
		sims[name] = simproc.Start(t, "-tags", "8", "-interval", "100ms")
	}
	got := collect(t, broker.URL())
	file, spool := filepath.Join(t.TempDir(), "config.yaml"), t.TempDir()
	mqtt := fmt.Sprintf("{url: %s, qos: 1}", broker.URL())
	cfg := writeReloadConfig(t, file, spool, mqtt,
		simEntry{"keep", sims["keep"].Endpoint, 8}, simEntry{"change", sims["change"].Endpoint, 4}, simEntry{"drop", sims["drop"].Endpoint, 4})
	r := startReloadAgent(t, cfg, zerolog.InfoLevel)

	keepBefore := r.waitStreaming(t, "keep")
	r.waitStreaming(t, "change")
	r.waitStreaming(t, "drop")
	keepTracker, changeTracker := r.tracker("keep"), r.tracker("change")
	testkit.WaitUntil(t, "values of keep, change and drop", 20*time.Second, func() bool {
		return got.last("keep/int32_0005") >= 0 && got.has("change/int32_0001") && got.count("drop") >= 40
	})

	next := writeReloadConfig(t, file, spool, mqtt,
		simEntry{"keep", sims["keep"].Endpoint, 8}, simEntry{"change", sims["change"].Endpoint, 8}, simEntry{"add", sims["add"].Endpoint, 4})
	// A setting besides the tags changes too: a change of tags alone is
	// taken by the running session (TestReloadTagsLive).
	next.PLCs[1].WatchdogIntervals++
	if err := r.a.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	reloaded := time.Now()
	testkit.WaitUntil(t, "the new tag of change and the values of add", 20*time.Second, func() bool {
		return got.has("change/int32_0005") && got.count("add") >= 40
	})
	// Values flow through one FIFO spool: once keep has 1 s of values taken
	// after the reload, anything drop sent before it has arrived.
	mark := got.last("keep/int32_0005")
	testkit.WaitUntil(t, "1 s more of keep", 10*time.Second, func() bool { return got.last("keep/int32_0005") >= mark+10 })
	keepAfter, changeAfter, addAfter, dropAfter := r.tracker("keep"), r.tracker("change"), r.tracker("add"), r.tracker("drop")
	keepSt := keepTracker.Snapshot()[0]
	r.stop()
	got.quiet(t, "keep", "change", "drop", "add")
	logs := r.logs.String()

	t.Run("unchanged keeps its session and values", func(t *testing.T) {
		if keepAfter != keepTracker {
			t.Errorf("keep has a new session after the reload")
		}
		if st := keepSt; st.State != collectors.StateStreaming || !st.Since.Equal(keepBefore.Since) || st.Reconnects != 0 || st.Recoveries != 0 {
			t.Errorf("keep: %s since %v (streaming since %v before), %d reconnects, %d recoveries: its session was disturbed", st.State, st.Since, keepBefore.Since, st.Reconnects, st.Recoveries)
		}
		if n := sessionsEstablished(logs, "keep"); n != 1 {
			t.Errorf("keep: %d sessions established, want 1", n)
		}
		for _, tag := range []string{"int32_0001", "int32_0005"} {
			vs := got.counterValues(t, "keep/"+tag)
			repeats, err := complete(vs)
			if err != nil {
				t.Errorf("keep/%s: %v: a gap across the reload", tag, err)
			}
			if len(vs) < 20 {
				t.Errorf("keep/%s: only %d values", tag, len(vs))
			}
			t.Logf("keep/%s: %d values, %d sent again by the new publisher", tag, len(vs), repeats)
		}
	})
	t.Run("changed restarts with its new tags", func(t *testing.T) {
		if changeAfter == nil || changeAfter == changeTracker {
			t.Errorf("change kept its old session")
		}
		if n := sessionsEstablished(logs, "change"); n != 2 {
			t.Errorf("change: %d sessions established, want 2", n)
		}
		vs := got.counterValues(t, "change/int32_0005")
		if err := contiguous(vs); err != nil || len(vs) < 5 {
			t.Errorf("change/int32_0005 (the added tag): %d values, %v", len(vs), err)
		}
	})
	t.Run("new starts", func(t *testing.T) {
		if addAfter == nil {
			t.Errorf("no session for add")
		}
		if err := contiguous(got.counterValues(t, "add/int32_0001")); err != nil {
			t.Errorf("add/int32_0001: %v", err)
		}
	})
	t.Run("removed stops", func(t *testing.T) {
		if dropAfter != nil {
			t.Errorf("drop still has a session")
		}
		got.mu.Lock()
		defer got.mu.Unlock()
		for key, vals := range got.byTag {
			if !strings.HasPrefix(key, "drop/") {
				continue
			}
			for _, p := range vals {
				if ts, err := time.Parse(time.RFC3339Nano, p.SourceTime); err != nil || ts.After(reloaded) {
					t.Errorf("%s: value %s from %s, after the reload returned at %s", key, p.Value, p.SourceTime, reloaded.Format(time.RFC3339Nano))
					return
				}
			}
		}
	})
	// New and removed entries change the publisher's status topics.
	if !strings.Contains(logs, `"unchanged":1,"restarted":1,"started":1,"stopped":1,"publisher_reconnected":true`) {
		t.Errorf("no reload summary with 1 unchanged, 1 restarted, 1 started, 1 stopped, publisher reconnected in the log")
	}
}

// A reload to another broker and client id while the first broker is down:
// the publisher reconnects, the PLC sessions stay, and every counter value
// reaches one broker or the other, the backlog included.
func TestReloadMQTT(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	b1, b2 := testkit.StartBroker(t), testkit.StartBroker(t)
	sim := simproc.Start(t, "-tags", "8", "-interval", "100ms")
	got1, got2 := collect(t, b1.URL()), collect(t, b2.URL())
	file, spool := filepath.Join(t.TempDir(), "config.yaml"), t.TempDir()
	cfg := writeReloadConfig(t, file, spool, fmt.Sprintf("{url: %s, qos: 1}", b1.URL()), simEntry{"plc", sim.Endpoint, 8})
	r := startReloadAgent(t, cfg, zerolog.InfoLevel)
	before := r.waitStreaming(t, "plc")
	tracker := r.tracker("plc")
	testkit.WaitUntil(t, "1 s of values on the first broker", 20*time.Second, func() bool { return got1.count("plc") >= 80 })
	// The first broker goes away, leaving a backlog in the spool, which
	// the new publisher must send to the second.
	b1.Stop()
	testkit.WaitUntil(t, "a backlog of 1 s", 20*time.Second, func() bool { return r.a.PublisherStats().Spooled >= 80 })

	next := writeReloadConfig(t, file, spool, fmt.Sprintf("{url: %s, client_id: other, qos: 1}", b2.URL()), simEntry{"plc", sim.Endpoint, 8})
	if err := r.a.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	testkit.WaitUntil(t, "the backlog and 1 s of values on the second broker", 20*time.Second, func() bool { return got2.count("plc") >= 160 })
	if st := r.a.PublisherStats(); !st.Connected {
		t.Errorf("publisher stats after the reload: %+v, want connected", st)
	}
	if r.tracker("plc") != tracker || !tracker.Snapshot()[0].Since.Equal(before.Since) {
		t.Errorf("the PLC session was restarted by an MQTT change")
	}
	r.stop()
	got1.quiet(t, "plc")
	got2.quiet(t, "plc")
	if !strings.Contains(r.logs.String(), `"publisher_reconnected":true`) {
		t.Errorf("no reload summary with publisher_reconnected")
	}
	for _, tag := range []string{"int32_0001", "int32_0005"} {
		v1, v2 := got1.counterValues(t, "plc/"+tag), got2.counterValues(t, "plc/"+tag)
		if len(v1) < 10 || len(v2) < 10 {
			t.Fatalf("%s: %d values on the first broker, %d on the second", tag, len(v1), len(v2))
		}
		if err := contiguous(v1); err != nil {
			t.Errorf("%s on the first broker: %v", tag, err)
		}
		// Values in flight at the switch may reach both brokers (at least
		// once); from the second broker's first value on, nothing is missing.
		seen := map[int64]bool{}
		for _, v := range v1 {
			seen[v] = true
		}
		dups := 0
		for i, v := range v2 {
			if seen[v] {
				dups++
			}
			seen[v] = true
			if i > 0 && v != v2[i-1]+1 {
				t.Errorf("%s on the second broker: value %d after %d", tag, v, v2[i-1])
			}
		}
		for v := v1[0]; v <= v2[len(v2)-1]; v++ {
			if !seen[v] {
				t.Errorf("%s: value %d reached neither broker", tag, v)
				break
			}
		}
		t.Logf("%s: %d values on the first broker, %d on the second, %d on both", tag, len(v1), len(v2), dups)
	}
}

// A new configuration whose publisher cannot start (its spool directory
// cannot be made) is refused: the agent goes on with the old settings and
// loses nothing.
func TestReloadRefusedKeepsOld(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	broker := testkit.StartBroker(t)
	sim := simproc.Start(t, "-tags", "8", "-interval", "100ms")
	got := collect(t, broker.URL())
	dir := t.TempDir()
	file, spool := filepath.Join(dir, "config.yaml"), filepath.Join(dir, "spool")
	mqtt := fmt.Sprintf("{url: %s, qos: 1}", broker.URL())
	cfg := writeReloadConfig(t, file, spool, mqtt, simEntry{"plc", sim.Endpoint, 8})
	r := startReloadAgent(t, cfg, zerolog.InfoLevel)
	r.waitStreaming(t, "plc")
	tracker := r.tracker("plc")
	testkit.WaitUntil(t, "values", 20*time.Second, func() bool { return got.count("plc") >= 40 })

	// A spool directory below a regular file; the PLC list changes too.
	next := writeReloadConfig(t, file, filepath.Join(file, "spool"), mqtt, simEntry{"plc", sim.Endpoint, 4})
	err := r.a.Reload(next)
	if err == nil || !strings.Contains(err.Error(), "spool") {
		t.Fatalf("Reload: %v, want an error about the spool", err)
	}
	mark := got.last("plc/int32_0005")
	testkit.WaitUntil(t, "1 s more of values", 10*time.Second, func() bool { return got.last("plc/int32_0005") >= mark+10 })
	if r.tracker("plc") != tracker {
		t.Errorf("the PLC session was replaced by a refused reload")
	}
	if st := r.a.PublisherStats(); !st.Connected {
		t.Errorf("publisher after the refused reload: %+v, want connected", st)
	}
	r.stop()
	got.quiet(t, "plc")
	for _, tag := range []string{"int32_0001", "int32_0005"} {
		// At least once: the restarted publisher may send again what was in
		// flight; nothing may be missing.
		vs := got.counterValues(t, "plc/"+tag)
		for i := 1; i < len(vs); i++ {
			if vs[i] > vs[i-1]+1 {
				t.Errorf("plc/%s: value %d after %d: a gap (first values %v)", tag, vs[i], vs[i-1], vs[:min(len(vs), 30)])
				break
			}
		}
	}
}

// A tag added to one entry whose settings change too restarts that
// session only: the publisher and the other entry's session go on, and its
// values have no gap and no repeat. (A change of tags alone restarts
// nothing: TestReloadTagsLive.)
func TestReloadTagAdded(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	broker := testkit.StartBroker(t)
	simA, simB := simproc.Start(t, "-tags", "8", "-interval", "100ms"), simproc.Start(t, "-tags", "8", "-interval", "100ms")
	got := collect(t, broker.URL())
	file, spool := filepath.Join(t.TempDir(), "config.yaml"), t.TempDir()
	mqtt := fmt.Sprintf("{url: %s, qos: 1}", broker.URL())
	cfg := writeReloadConfig(t, file, spool, mqtt, simEntry{"a", simA.Endpoint, 8}, simEntry{"b", simB.Endpoint, 4})
	r := startReloadAgent(t, cfg, zerolog.InfoLevel)
	r.waitStreaming(t, "a")
	r.waitStreaming(t, "b")
	trackerA := r.tracker("a")
	testkit.WaitUntil(t, "values of a and b", 20*time.Second, func() bool { return got.count("a") >= 40 && got.has("b/int32_0001") })

	next := writeReloadConfig(t, file, spool, mqtt, simEntry{"a", simA.Endpoint, 8}, simEntry{"b", simB.Endpoint, 8})
	next.PLCs[1].WatchdogIntervals++
	if err := r.a.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	testkit.WaitUntil(t, "the new tag of b", 20*time.Second, func() bool { return got.has("b/int32_0005") })
	mark := got.last("a/int32_0005")
	testkit.WaitUntil(t, "1 s more of a", 10*time.Second, func() bool { return got.last("a/int32_0005") >= mark+10 })
	sameA := r.tracker("a") == trackerA
	r.stop()
	got.quiet(t, "a", "b")

	if !sameA {
		t.Errorf("a has a new session after the reload")
	}
	if !strings.Contains(r.logs.String(), `"unchanged":1,"restarted":1,"started":0,"stopped":0,"publisher_reconnected":false`) {
		t.Errorf("no reload summary with 1 unchanged, 1 restarted, publisher not reconnected in the log")
	}
	for _, tag := range []string{"int32_0001", "int32_0005"} {
		if err := contiguous(got.counterValues(t, "a/"+tag)); err != nil {
			t.Errorf("a/%s: %v", tag, err)
		}
	}
}
