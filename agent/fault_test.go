package agent

// End-to-end fault tests: real PLC simulators, a real Mosquitto and the
// agent's own wiring, with the broker stopped, the spool overflowing and a
// PLC killed. Each checks the Int32 counters that plcsim increments by
// exactly one per change: a missing value shows as a gap.
//
// plcsim (gopcua's server) keeps only the latest value of an item until the
// client's next PublishRequest: an agent held up longer than one change
// interval, as the race detector on a busy CI machine can do, loses values
// at the source. The rates below come from many tags changing slowly rather
// than few changing fast, so such a stall must last hundreds of
// milliseconds before it shows.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors/opcua"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/publish"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// counters follows the Int32 counters arriving at a subscriber, per plc/tag.
// A value seen before is a duplicate (delivery is at least once); a new
// value that is not the previous new value plus one is a jump, recorded.
type counters struct {
	mu      sync.Mutex
	seen    map[string]map[int64]bool
	first   map[string]int64
	last    map[string]int64 // the latest new value
	jumps   map[string][]string
	msgs    int // every message, counters or not, duplicates included
	n, dups int // counter values: new ones, duplicates
	errs    []string
	changed chan struct{}
}

func newCounters() *counters {
	return &counters{seen: map[string]map[int64]bool{}, first: map[string]int64{}, last: map[string]int64{},
		jumps: map[string][]string{}, changed: make(chan struct{})}
}

// consume reads msgs until the channel closes at the end of the test.
func (c *counters) consume(msgs <-chan testkit.Message) {
	go func() {
		for m := range msgs {
			c.add(m.Topic, m.Payload)
		}
	}()
}

func (c *counters) add(topic string, b []byte) {
	var p payload
	err := json.Unmarshal(b, &p)
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() { close(c.changed); c.changed = make(chan struct{}) }()
	c.msgs++
	if err != nil {
		c.errs = append(c.errs, fmt.Sprintf("%s: bad JSON %q: %v", topic, b, err))
		return
	}
	v, ok := intValue(p)
	if !ok {
		return
	}
	key := p.PLC + "/" + p.Tag
	if c.seen[key] == nil {
		c.seen[key] = map[int64]bool{}
		c.first[key] = v
	} else if c.seen[key][v] {
		c.dups++
		return
	} else if last := c.last[key]; v != last+1 {
		c.jumps[key] = append(c.jumps[key], fmt.Sprintf("%d after %d", v, last))
	}
	c.seen[key][v] = true
	c.last[key] = v
	c.n++
}

// waitUntil waits until cond holds, checking it whenever a message arrives
// and at least every 100 ms; it returns when cond first held.
func (c *counters) waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) time.Time {
	t.Helper()
	testkit.WaitLocked(t, what, d, &c.mu, &c.changed, cond)
	return time.Now()
}

// keys returns the counters seen whose key starts with prefix, sorted.
func (c *counters) keys(prefix string) []string {
	var ks []string
	for k := range c.seen {
		if strings.HasPrefix(k, prefix) {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks
}

// minLast is the smallest latest value among the counters under prefix.
func (c *counters) minLast(prefix string) int64 {
	m := int64(-1)
	for _, k := range c.keys(prefix) {
		if m < 0 || c.last[k] < m {
			m = c.last[k]
		}
	}
	return m
}

// plcEntry is one PLC in a test configuration.
type plcEntry struct {
	name     string
	endpoint string
	tags     int
}

// faultConfig writes and loads a configuration: QoS 1, publishing faster
// than plcsim changes (it merges changes within one publishing interval).
func faultConfig(t *testing.T, brokerURL, mqttExtra, reconnect string, plcs ...plcEntry) *config.Config {
	t.Helper()
	var yml strings.Builder
	fmt.Fprintf(&yml, "agent: {id: fault, spool_dir: %s}\nmqtt: {url: %s, qos: 1%s}\nplcs:\n", t.TempDir(), brokerURL, mqttExtra)
	for _, p := range plcs {
		fmt.Fprintf(&yml, "  - name: %s\n    endpoint: %s\n    publishing_interval: 20ms\n    sampling_interval: 0s\n    reconnect: %s\n", p.name, p.endpoint, reconnect)
		for line := range strings.Lines(simproc.Tags(t, p.tags)) {
			fmt.Fprintf(&yml, "    %s", line)
		}
	}
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(yml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("config:\n%v\n%s", err, yml.String())
	}
	return cfg
}

// running is an agent started by startAgent.
type running struct {
	pub  *publish.Publisher
	logs *testkit.Log
	stop func() error // cancels and waits for the stop sequence
	done <-chan error // Run's result, should it end by itself
}

// startAgent wires the agent as Run does, keeping the publisher so that
// its Stats can be checked.
func startAgent(t *testing.T, cfg *config.Config) *running {
	t.Helper()
	logs := &testkit.Log{}
	log := zerolog.New(logs).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	pub, err := publish.New(cfg, log.With().Str("component", "mqtt").Logger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var sessions []collector
	for _, group := range shareSessions(cfg.PLCs) {
		sessions = append(sessions, opcua.NewSharedSession(group, log.With().Str("component", "opcua").Logger()))
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, sessions, pub) }()
	var once sync.Once
	var result error
	r := &running{pub: pub, logs: logs, done: done}
	r.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(ShutdownTimeout + 5*time.Second):
				result = fmt.Errorf("agent did not stop within %v", ShutdownTimeout+5*time.Second)
			}
		})
		return result
	}
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	return r
}

// waitStats polls the publisher's Stats until cond holds.
func (r *running) waitStats(t *testing.T, what string, d time.Duration, cond func(publish.Stats) bool) publish.Stats {
	t.Helper()
	deadline := time.Now().Add(d)
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	for {
		st := r.pub.Stats()
		if cond(st) {
			return st
		}
		select {
		case err := <-r.done:
			t.Fatalf("agent stopped while waiting for %s: %v", what, err)
		case <-tk.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("Stats = %+v after %v, want %s", st, d, what)
		}
	}
}

// stopAndCollect stops the agent in order and waits until the subscriber
// has every message the broker acknowledged (at least as many as Published).
func stopAndCollect(t *testing.T, r *running, got *counters) publish.Stats {
	t.Helper()
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	st := r.pub.Stats()
	got.waitUntil(t, fmt.Sprintf("the %d messages the broker acknowledged", st.Published), 30*time.Second,
		func() bool { return uint64(got.msgs) >= st.Published })
	return st
}

// TestFaultBrokerOutage stops the broker for 30 s while a PLC delivers 1,000
// values/s (400 tags every 400 ms): every counter arrives complete and in
// order. The subscriber's session is persistent, so the broker keeps what
// arrives for it while it reconnects.
func TestFaultBrokerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s broker outage")
	}
	const tags, interval, outage = 400, 400 * time.Millisecond, 30 * time.Second
	broker := testkit.StartBroker(t)
	plc := simproc.Start(t, "-tags", fmt.Sprint(tags), "-interval", interval.String())
	got := newCounters()
	got.consume(testkit.Subscribe(t, broker.URL(), "tagbridge/fault/#", 1))
	a := startAgent(t, faultConfig(t, broker.URL(), "", "{min: 200ms, max: 1s}", plcEntry{"plc", plc.Endpoint, tags}))

	got.waitUntil(t, "every counter streaming", 30*time.Second, func() bool {
		return len(got.seen) == tags/4 && got.minLast("plc/")-got.first["plc/int32_0001"] >= 5
	})
	broker.Stop()
	stoppedAt := time.Now()
	got.mu.Lock()
	beforeOutage := got.minLast("plc/")
	got.mu.Unlock()
	select {
	case err := <-a.done:
		t.Fatalf("agent stopped during the broker outage: %v", err)
	case <-time.After(outage):
	}
	st := a.pub.Stats()
	perOutage := int(outage/interval) * tags
	if st.Connected || st.Spooled < uint64(perOutage*8/10) {
		t.Errorf("after %v of outage: Stats = %+v, want disconnected and about %d values spooled", outage, st, perOutage)
	}
	backlog := st.Spooled
	broker.Restart()
	restartedAt := time.Now()
	// Connected means caught up with the backlog too.
	a.waitStats(t, "connected and caught up", 90*time.Second, func(st publish.Stats) bool { return st.Connected })
	caughtUp := time.Now()
	got.waitUntil(t, "values after the outage", 30*time.Second, func() bool {
		return got.minLast("plc/") >= beforeOutage+int64(outage/interval)+5
	})
	st = stopAndCollect(t, a, got)

	got.mu.Lock()
	defer got.mu.Unlock()
	for _, e := range got.errs {
		t.Error(e)
	}
	for _, k := range got.keys("plc/") {
		if j := got.jumps[k]; len(j) > 0 {
			t.Errorf("%s: gaps or reordering: %v", k, j)
		}
	}
	if n := len(got.keys("plc/")); n != tags/4 {
		t.Errorf("%d counters, want %d", n, tags/4)
	}
	if st.Dropped != 0 || st.Failed != 0 {
		t.Errorf("Stats = %+v, want nothing dropped or failed", st)
	}
	t.Logf("broker down %v with %d values spooled; reconnected and caught up %v after the restart; %d counter values on %d counters; %d duplicates (Stats.Resent %d)",
		restartedAt.Sub(stoppedAt).Round(time.Millisecond), backlog, caughtUp.Sub(restartedAt).Round(time.Millisecond), got.n, len(got.seen), got.dups, st.Resent)
}

// TestFaultSpoolFull fills a 1 MiB spool (the smallest allowed) with the
// broker down: the agent keeps running, drops the oldest values, counts
// them and logs the episode once; what arrives when the broker is back is,
// per counter, one contiguous range of the newest values, up to the last
// the PLC sent.
func TestFaultSpoolFull(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	const tags, interval = 400, 200 * time.Millisecond // 2,000 values/s of some 250 bytes: 1 MiB in 2 s
	broker := testkit.StartBroker(t)
	got := newCounters()
	got.consume(testkit.Subscribe(t, broker.URL(), "tagbridge/fault/#", 1))
	broker.Stop()
	launched := time.Now()
	plc := simproc.Start(t, "-tags", fmt.Sprint(tags), "-interval", interval.String(), "-start", "0")
	a := startAgent(t, faultConfig(t, broker.URL(), ", spool: {max_bytes: 1MiB}", "{min: 200ms, max: 1s}", plcEntry{"plc", plc.Endpoint, tags}))
	// No counter value collected can be above this: they count from 0,
	// one per interval since the simulator was launched.
	firstBound := int64(time.Since(launched)/interval) + 1

	// About 12 values per tag dropped.
	st := a.waitStats(t, "values dropped", 30*time.Second, func(st publish.Stats) bool { return st.Dropped >= 12*tags })
	taken := st.Spooled + st.Dropped
	a.waitStats(t, "values still taken while the spool is full", 10*time.Second, func(st publish.Stats) bool {
		return st.Spooled+st.Dropped >= taken+2*tags
	})
	if st := a.pub.Stats(); st.SpoolBytes > 1<<20 {
		t.Errorf("spool holds %d bytes, over its 1 MiB limit", st.SpoolBytes)
	}
	// The PLC stops before the broker is back: new values arriving while
	// the backlog drains would push out more of the oldest unsent ones,
	// after some were sent, and the kept ranges would no longer be
	// contiguous (as designed, but not what this test checks).
	plc.Kill()
	broker.Restart()
	a.waitStats(t, "connected and caught up", 90*time.Second, func(st publish.Stats) bool { return st.Connected })
	st = stopAndCollect(t, a, got)

	got.mu.Lock()
	defer got.mu.Unlock()
	for _, e := range got.errs {
		t.Error(e)
	}
	if n := len(got.keys("plc/")); n != tags/4 {
		t.Errorf("%d counters delivered, want %d", n, tags/4)
	}
	for _, k := range got.keys("plc/") {
		if j := got.jumps[k]; len(j) > 0 {
			t.Errorf("%s: after the first value delivered, %v: the kept values are not one contiguous range", k, j)
		}
		if d := got.last["plc/int32_0001"] - got.last[k]; d < -1 || d > 1 {
			t.Errorf("%s: last value delivered %d, int32_0001's %d: the newest values should have been kept", k, got.last[k], got.last["plc/int32_0001"])
		}
		// Every tag changes at every tick and a batch carries them all, so
		// each tag lost about Dropped/tags values. If they were the oldest,
		// the first value delivered less those is the first collected:
		// between 0 and firstBound.
		if first := got.first[k] - int64(st.Dropped/tags); first < -1 || first > firstBound+1 {
			t.Errorf("%s: first value delivered %d, %d values dropped per tag: the first collected would be %d, want 0 to %d: not the oldest values were dropped",
				k, got.first[k], st.Dropped/tags, first, firstBound)
		}
	}
	logs := a.logs.String()
	if n := strings.Count(logs, "spool full"); n != 1 {
		t.Errorf(`"spool full" logged %d times, want once for the episode`, n)
	}
	var drained struct {
		Dropped uint64 `json:"dropped"`
	}
	for line := range strings.Lines(logs) {
		if strings.Contains(line, "spool drained") {
			json.Unmarshal([]byte(line), &drained)
		}
	}
	if st.Dropped == 0 || drained.Dropped != st.Dropped {
		t.Errorf("Stats.Dropped %d, the episode's drained line says %d; want equal and above 0", st.Dropped, drained.Dropped)
	}
	t.Logf("spool 1 MiB: %d values dropped (%d per tag), the oldest; int32_0001 delivered from %d (collected from at most %d), contiguous to the end; %d duplicates",
		st.Dropped, st.Dropped/tags, got.first["plc/int32_0001"], firstBound, got.dups)
}

// TestFaultPLCRestart kills one of two PLCs and starts it again once the
// agent has noticed: with the default backoff's reconnect.min of 1 s its
// values resume within reconnect.min + 3 s of the server being back, and
// the other PLC's counters never miss a value.
func TestFaultPLCRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	const tags, reconnectMin = 20, time.Second
	broker := testkit.StartBroker(t)
	plc1 := simproc.Start(t, "-tags", fmt.Sprint(tags), "-interval", "200ms")
	plc2 := simproc.Start(t, "-tags", fmt.Sprint(tags), "-interval", "200ms")
	got := newCounters()
	got.consume(testkit.Subscribe(t, broker.URL(), "tagbridge/fault/#", 1))
	a := startAgent(t, faultConfig(t, broker.URL(), "", fmt.Sprintf("{min: %v, max: 60s}", reconnectMin),
		plcEntry{"plc1", plc1.Endpoint, tags}, plcEntry{"plc2", plc2.Endpoint, tags}))

	got.waitUntil(t, "both PLCs streaming", 30*time.Second, func() bool {
		return len(got.seen) == 2*tags/4 && got.minLast("plc1/") >= got.first["plc1/int32_0001"]+5
	})
	plc2.Kill()
	killed := time.Now()
	got.mu.Lock()
	mark := got.minLast("plc1/")
	got.mu.Unlock()
	// 1 s of plc1 values: long enough for the agent to have seen the
	// connection reset and started its backoff.
	got.waitUntil(t, "plc1 streaming while plc2 is down", 10*time.Second, func() bool { return got.minLast("plc1/") >= mark+5 })
	plc2.Restart("-tags", fmt.Sprint(tags), "-interval", "200ms", "-start", "100000")
	back := time.Now()
	resumed := got.waitUntil(t, "plc2 values after its restart", 30*time.Second, func() bool {
		for _, k := range got.keys("plc2/") {
			if got.last[k] >= 100000 {
				return true
			}
		}
		return false
	})
	mark = func() int64 { got.mu.Lock(); defer got.mu.Unlock(); return got.minLast("plc1/") }()
	got.waitUntil(t, "1 more s of plc1", 10*time.Second, func() bool { return got.minLast("plc1/") >= mark+5 })
	stopAndCollect(t, a, got)

	took := resumed.Sub(back)
	if limit := reconnectMin + 3*time.Second; took > limit {
		t.Errorf("plc2's values resumed %v after it was back, want within %v", took.Round(time.Millisecond), limit)
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	for _, e := range got.errs {
		t.Error(e)
	}
	for _, k := range got.keys("plc1/") {
		if j := got.jumps[k]; len(j) > 0 {
			t.Errorf("%s: gaps or reordering around plc2's restart: %v", k, j)
		}
	}
	for _, k := range got.keys("plc2/") {
		if got.last[k] < 100000 {
			t.Errorf("%s: nothing after the restart (last %d)", k, got.last[k])
		}
	}
	n1 := 0
	for _, k := range got.keys("plc1/") {
		n1 += len(got.seen[k])
	}
	t.Logf("plc2 down %v; its values resumed %v after it was back (reconnect.min %v); plc1: %d counter values",
		back.Sub(killed).Round(time.Millisecond), took.Round(time.Millisecond), reconnectMin, n1)
}
