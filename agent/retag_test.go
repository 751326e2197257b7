package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// writeTagsConfig writes and loads a configuration of one entry p on
// endpoint with the given tags: lines (YAML, indented for the list).
func writeTagsConfig(t *testing.T, file, spool, mqtt, endpoint string, tags ...string) *config.Config {
	t.Helper()
	var y strings.Builder
	fmt.Fprintf(&y, "agent: {id: rl, spool_dir: %s}\nmqtt: %s\nplcs:\n", spool, mqtt)
	fmt.Fprintf(&y, "  - name: p\n    endpoint: %s\n    publishing_interval: 20ms\n    sampling_interval: 0s\n    reconnect: {min: 100ms, max: 300ms}\n    tags:\n", endpoint)
	for _, tag := range tags {
		fmt.Fprintf(&y, "      - %s\n", tag)
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

// One reload that adds a tag, removes one and changes one's sampling
// interval changes the live subscription: the session stays (one session
// established, no stopped or disconnected status), the unaffected counter
// has no gap and no repeat, the new tag's values arrive on its topic and
// the removed tag's stop. plcsim (gopcua's server) refuses
// ModifyMonitoredItems, so the changed tag's item is deleted and created
// anew; its batches of CreateMonitoredItems stay within the server's
// MaxMonitoredItemsPerCall of 1, so 300 more new tags take 300 calls, during
// which the other tags' values go on (plcsim keeps one value per item until
// the next PublishRequest: a stream held up for the calls would lose some).
func TestReloadTagsLive(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	broker := testkit.StartBroker(t)
	// Values change every 200 ms: a session starved of CPU for less under
	// the race detector on a loaded machine loses none.
	sim := simproc.Start(t, "-tags", "312", "-interval", "200ms", "-max-monitored-items-per-call", "1")
	got := collect(t, broker.URL())
	var statesMu sync.Mutex
	var states []string
	statuses := testkit.SubscribeAll(t, broker.URL(), "tagbridge/rl/p/status", 1)
	go func() {
		for m := range statuses {
			var st struct{ State string }
			if json.Unmarshal(m.Payload, &st) == nil {
				statesMu.Lock()
				states = append(states, st.State)
				statesMu.Unlock()
			}
		}
	}()
	file, spool := filepath.Join(t.TempDir(), "config.yaml"), t.TempDir()
	mqtt := fmt.Sprintf("{url: %s, qos: 1}", broker.URL())
	const (
		counter = `{name: int32_0001, node: "ns=1;s=Int32.0001"}`
		changed = `{name: int32_0005, node: "ns=1;s=Int32.0005"}`
		removed = `{name: double_0004, node: "ns=1;s=Double.0004"}`
		added   = `{name: int32_0009, node: "ns=1;s=Int32.0009"}`
	)
	cfg := writeTagsConfig(t, file, spool, mqtt, sim.Endpoint, counter, changed, removed)
	r := startReloadAgent(t, cfg, zerolog.InfoLevel)
	before := r.waitStreaming(t, "p")
	tracker := r.tracker("p")
	testkit.WaitUntil(t, "values of the three tags", 20*time.Second, func() bool {
		return got.last("p/int32_0001") >= 0 && got.has("p/int32_0005") && got.has("p/double_0004")
	})

	tags := []string{counter, `{name: int32_0005, node: "ns=1;s=Int32.0005", sampling_interval: 50ms}`, added}
	for i := 12; i < 312; i++ {
		kind := []string{"Double", "Int32", "Boolean", "String"}[i%4]
		tags = append(tags, fmt.Sprintf(`{name: %s_%04d, node: "ns=1;s=%s.%04d"}`, strings.ToLower(kind), i, kind, i))
	}
	next := writeTagsConfig(t, file, spool, mqtt, sim.Endpoint, tags...)
	if err := r.a.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	testkit.WaitUntil(t, "values of the new tag", 10*time.Second, func() bool { return len(got.counterValues(t, "p/int32_0009")) >= 5 })
	retagged := time.Now()
	mark := got.last("p/int32_0001")
	testkit.WaitUntil(t, "1 s more of the counter", 10*time.Second, func() bool { return got.last("p/int32_0001") >= mark+5 })
	after := tracker.Snapshot()[0]
	sameTracker := r.tracker("p") == tracker
	statesMu.Lock()
	seen := strings.Join(states, ",") // before the agent's own stop
	statesMu.Unlock()
	r.stop()
	got.quiet(t, "p")
	logs := r.logs.String()

	if !sameTracker {
		t.Errorf("p has a new session after the reload")
	}
	if n := sessionsEstablished(logs, "p"); n != 1 {
		t.Errorf("%d sessions established, want 1", n)
	}
	if after.State != "streaming" || !after.Since.Equal(before.Since) || after.Reconnects != 0 || after.Recoveries != 0 {
		t.Errorf("p after the reload: %s since %v (streaming since %v before), %d reconnects, %d recoveries", after.State, after.Since, before.Since, after.Reconnects, after.Recoveries)
	}
	if strings.Contains(seen, "stopped") || strings.Contains(seen, "disconnected") || strings.Contains(seen, "recovering") || !strings.HasSuffix(seen, "streaming") {
		t.Errorf("status messages of p: %s; want no stop or loss across the reload", seen)
	}
	vs := got.counterValues(t, "p/int32_0001")
	if err := contiguous(vs); err != nil || len(vs) < 10 {
		t.Errorf("p/int32_0001 (unaffected): %d values, %v", len(vs), err)
	}
	if err := contiguous(got.counterValues(t, "p/int32_0009")); err != nil {
		t.Errorf("p/int32_0009 (added): %v", err)
	}
	got.mu.Lock()
	if topic := got.topics["p/int32_0009"]; topic != "tagbridge/rl/p/int32_0009" {
		t.Errorf("the added tag's values came on %q", topic)
	}
	for _, p := range got.byTag["p/double_0004"] {
		if ts, err := time.Parse(time.RFC3339Nano, p.ServerTime); err != nil || ts.After(retagged) {
			t.Errorf("p/double_0004 (removed): a value of %s, after its new tag's values came at %s", p.ServerTime, retagged.Format(time.RFC3339Nano))
			break
		}
	}
	got.mu.Unlock()
	if err := contiguousOrRepeat(got.counterValues(t, "p/int32_0005")); err != nil {
		t.Errorf("p/int32_0005 (changed): %v", err)
	}
	for _, want := range []string{
		`"added":301,"removed":1,"modified":1,"recreated":0,"failed":0,"tags":303`,
		`"message":"the PLC refuses to modify monitored items; deleting and creating them anew"`,
		`"unchanged":0,"restarted":0,"started":0,"stopped":0,"publisher_reconnected":false,"retagged":1`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %s in the log", want)
		}
	}
}

// contiguousOrRepeat reports the first gap in vs; a value may repeat the
// one before (an item created anew sends the current value first).
func contiguousOrRepeat(vs []int64) error {
	for i := 1; i < len(vs); i++ {
		if vs[i] != vs[i-1] && vs[i] != vs[i-1]+1 {
			return fmt.Errorf("value %d after %d at index %d", vs[i], vs[i-1], i)
		}
	}
	return nil
}
