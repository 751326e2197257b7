package agent

import (
	"context"
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

type payload struct {
	PLC        string          `json:"plc"`
	Tag        string          `json:"tag"`
	Node       string          `json:"node"`
	Value      json.RawMessage `json:"value"`
	Type       string          `json:"type"`
	Status     string          `json:"status"`
	StatusCode uint32          `json:"status_code"`
	SourceTime string          `json:"source_time"`
	ServerTime string          `json:"server_time"`
}

// received collects what arrives on the broker, per topic in arrival order.
type received struct {
	mu     sync.Mutex
	byTag  map[string][]payload // key plc/tag
	topics map[string]string    // key plc/tag -> topic
	raw    map[string][]byte    // one raw payload per key
	errs   []string
}

func (r *received) add(topic string, b []byte) {
	var p payload
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := json.Unmarshal(b, &p); err != nil {
		r.errs = append(r.errs, fmt.Sprintf("%s: bad JSON %q: %v", topic, b, err))
		return
	}
	key := p.PLC + "/" + p.Tag
	r.byTag[key] = append(r.byTag[key], p)
	r.topics[key] = topic
	if _, ok := r.raw[key]; !ok {
		r.raw[key] = b
	}
}

func (r *received) count(plc string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, v := range r.byTag {
		if strings.HasPrefix(k, plc+"/") {
			n += len(v)
		}
	}
	return n
}

func TestEndToEndThreePLCs(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	const tagsPerPLC = 100
	// plcsim's server keeps one value per item until the next PublishRequest;
	// a simulator starved of CPU under the race detector on a loaded 2-core
	// machine merged values at 100 ms, so the values change every 250 ms.
	const interval, perSecond = "250ms", 4
	broker := testkit.StartBroker(t)
	plcs := []*simproc.PLC{
		simproc.Start(t, "-tags", fmt.Sprint(tagsPerPLC), "-interval", interval),
		simproc.Start(t, "-tags", fmt.Sprint(tagsPerPLC), "-interval", interval),
		simproc.Start(t, "-tags", fmt.Sprint(tagsPerPLC), "-interval", interval),
	}
	tags := simproc.Tags(t, tagsPerPLC)

	var yml strings.Builder
	fmt.Fprintf(&yml, "agent: {id: e2e, log_level: info, spool_dir: %s}\nmqtt:\n  url: %s\n  qos: 1\nplcs:\n", t.TempDir(), broker.URL())
	for i, p := range plcs {
		// The simulator merges changes within one publishing interval, so
		// publish faster than values change.
		fmt.Fprintf(&yml, "  - name: plc%d\n    endpoint: %s\n    publishing_interval: 20ms\n    sampling_interval: 0s\n    reconnect: {min: 200ms, max: 1s}\n", i+1, p.Endpoint)
		for _, line := range strings.Split(strings.TrimRight(tags, "\n"), "\n") {
			fmt.Fprintf(&yml, "    %s\n", line)
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

	got := &received{byTag: map[string][]payload{}, topics: map[string]string{}, raw: map[string][]byte{}}
	msgs := testkit.Subscribe(t, broker.URL(), "tagbridge/e2e/#", 1)
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		for m := range msgs {
			got.add(m.Topic, m.Payload)
		}
	}()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, log) }()

	// Every tag of every PLC delivers.
	testkit.WaitUntil(t, "first values of every tag", 30*time.Second, func() bool {
		got.mu.Lock()
		defer got.mu.Unlock()
		return len(got.byTag) == 3*tagsPerPLC
	})
	testkit.WaitUntil(t, "2 s of data", 10*time.Second, func() bool { return got.count("plc3") >= 2*perSecond*tagsPerPLC })

	// plc2 loses power; the others must not notice.
	plcs[1].Kill()
	before1, before2 := got.count("plc1"), got.count("plc2")
	testkit.WaitUntil(t, "plc1 streaming while plc2 is down", 10*time.Second, func() bool {
		return got.count("plc1") >= before1+2*perSecond*tagsPerPLC
	})
	if n := got.count("plc2") - before2; n > tagsPerPLC {
		t.Errorf("%d values from plc2 while it was down", n)
	}
	// It comes back on the same port with counters from 100000, so its two
	// lives are told apart.
	plcs[1].Restart("-tags", fmt.Sprint(tagsPerPLC), "-interval", interval, "-start", "100000")
	testkit.WaitUntil(t, "plc2 values after its restart", 30*time.Second, func() bool {
		got.mu.Lock()
		defer got.mu.Unlock()
		for k, v := range got.byTag {
			if n, ok := intValue(v[len(v)-1]); ok && strings.HasPrefix(k, "plc2/") && n >= 100010 {
				return true
			}
		}
		return false
	})
	testkit.WaitUntil(t, "2 more s of data", 10*time.Second, func() bool { return got.count("plc1") >= before1+5*perSecond*tagsPerPLC })

	stopAt := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop within 10 s")
	}
	t.Logf("agent stopped in %v", time.Since(stopAt).Round(time.Millisecond))
	// Messages published before Run returned are on their way to us.
	last := -1
	testkit.WaitUntil(t, "subscriber to go quiet", 10*time.Second, func() bool {
		n := got.count("plc1") + got.count("plc2") + got.count("plc3")
		quiet := n == last
		last = n
		if !quiet {
			time.Sleep(300 * time.Millisecond)
		}
		return quiet
	})

	got.mu.Lock()
	defer got.mu.Unlock()
	for _, e := range got.errs {
		t.Error(e)
	}
	counters := 0
	for key, vals := range got.byTag {
		if wantTopic := "tagbridge/e2e/" + key; got.topics[key] != wantTopic {
			t.Errorf("%s: topic %q, want %q", key, got.topics[key], wantTopic)
		}
		checkPayloadFields(t, key, got.raw[key])
		if vals[0].Type != "Int32" {
			continue
		}
		counters++
		var prev int64 = -1
		for i, p := range vals {
			v, ok := intValue(p)
			if !ok {
				t.Fatalf("%s: value %s is not an integer", key, p.Value)
			}
			restarted := strings.HasPrefix(key, "plc2/") && prev < 100000 && v >= 100000
			if prev >= 0 && v != prev+1 && !restarted {
				t.Errorf("%s: value %d after %d at index %d: gap or duplicate", key, v, prev, i)
				break
			}
			prev = v
		}
		// At least 5 s of changes; plc2 was down for part of it.
		if n := len(vals); n < 5*perSecond/2 || !strings.HasPrefix(key, "plc2/") && n < 5*perSecond {
			t.Errorf("%s: only %d values", key, n)
		}
	}
	if want := 3 * tagsPerPLC / 4; counters != want {
		t.Errorf("%d Int32 counters seen, want %d", counters, want)
	}
}

// checkPayloadFields asserts the exact key set and the field formats.
func checkPayloadFields(t *testing.T, key string, raw []byte) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	want := []string{"plc", "tag", "node", "value", "type", "status", "status_code", "time", "source_time", "server_time"}
	if len(m) != len(want) {
		t.Errorf("%s: payload keys %v, want %v", key, m, want)
	}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: payload %s lacks %q", key, raw, k)
		}
	}
	plcName, tag, _ := strings.Cut(key, "/")
	if m["plc"] != plcName || m["tag"] != tag || m["status"] != "Good" || m["status_code"] != float64(0) {
		t.Errorf("%s: payload %s", key, raw)
	}
	if n, _ := m["node"].(string); !strings.HasPrefix(n, "ns=") {
		t.Errorf("%s: node %q", key, m["node"])
	}
	for _, k := range []string{"source_time", "server_time"} {
		s, _ := m[k].(string)
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || !strings.HasSuffix(s, "Z") || time.Since(ts) > time.Hour {
			t.Errorf("%s: %s %q is not a recent RFC 3339 UTC time", key, k, s)
		}
	}
}

func intValue(p payload) (int64, bool) {
	var v int64
	return v, p.Type == "Int32" && json.Unmarshal(p.Value, &v) == nil
}

func TestShareSessionsGroupsInConfigOrder(t *testing.T) {
	plcs := []config.PLC{
		{Name: "a", Endpoint: "opc.tcp://plc1:4840"},
		{Name: "b", Endpoint: "opc.tcp://plc2:4840"},
		{Name: "c", Endpoint: "opc.tcp://PLC1"},
		{Name: "d", Endpoint: "opc.tcp://plc1:4840", Auth: config.Auth{Username: "operator"}},
	}
	var got []string
	for _, g := range shareSessions(plcs) {
		var names []string
		for _, p := range g {
			names = append(names, p.Name)
		}
		got = append(got, strings.Join(names, "+"))
	}
	if want := "a+c b d"; strings.Join(got, " ") != want {
		t.Errorf("groups %v, want %s", got, want)
	}
}
