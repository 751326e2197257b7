package opcua

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
)

func TestPlanSubscriptions(t *testing.T) {
	ms := time.Millisecond
	// handle -> publishing interval
	intervals := []time.Duration{100 * ms, 100 * ms, 200 * ms, 200 * ms, 200 * ms, time.Second}
	all := []uint32{0, 1, 2, 3, 4, 5}
	cases := []struct {
		name           string
		perSub, max    int
		want           []string // interval:handles
		merged         map[time.Duration]time.Duration
		left           []uint32
		handlesToPlace []uint32
	}{
		{name: "one per interval", perSub: 10, want: []string{"100ms:[0 1]", "200ms:[2 3 4]", "1s:[5]"}},
		{name: "split within an interval", perSub: 2, want: []string{"100ms:[0 1]", "200ms:[2 3]", "200ms:[4]", "1s:[5]"}},
		{name: "slowest merged into the next faster", perSub: 10, max: 2, want: []string{"100ms:[0 1]", "200ms:[2 3 4 5]"},
			merged: map[time.Duration]time.Duration{time.Second: 200 * ms}},
		{name: "all merged into the fastest", perSub: 10, max: 1, want: []string{"100ms:[0 1 2 3 4 5]"},
			merged: map[time.Duration]time.Duration{time.Second: 100 * ms, 200 * ms: 100 * ms}},
		{name: "what does not fit is left", perSub: 4, max: 1, want: []string{"100ms:[0 1 2 3]"},
			merged: map[time.Duration]time.Duration{time.Second: 100 * ms, 200 * ms: 100 * ms}, left: []uint32{4, 5}},
		{name: "only the handles given", perSub: 10, max: 1, handlesToPlace: []uint32{2, 5}, want: []string{"200ms:[2 5]"},
			merged: map[time.Duration]time.Duration{time.Second: 200 * ms}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			handles := all
			if tc.handlesToPlace != nil {
				handles = tc.handlesToPlace
			}
			plans, merged, left := planSubscriptions(handles, func(h uint32) time.Duration { return intervals[h] }, tc.perSub, tc.max)
			var got []string
			for _, p := range plans {
				got = append(got, fmt.Sprintf("%v:%v", p.interval, p.handles))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("plans %v, want %v", got, tc.want)
			}
			if fmt.Sprint(merged) != fmt.Sprint(orEmpty(tc.merged)) {
				t.Errorf("merged %v, want %v", merged, tc.merged)
			}
			if !slices.Equal(left, tc.left) {
				t.Errorf("left %v, want %v", left, tc.left)
			}
		})
	}
}

func orEmpty(m map[time.Duration]time.Duration) map[time.Duration]time.Duration {
	if m == nil {
		return map[time.Duration]time.Duration{}
	}
	return m
}

// limitsPLC is a node-opcua PLC entry with 12 tags over three publishing
// intervals: 4 tags at 100 ms, 4 at 200 ms, 4 at 1 s.
func limitsPLC(t *testing.T, name, endpoint string) config.PLC {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "agent: {id: ltest}\nplcs:\n  - name: %s\n    endpoint: %s\n", name, endpoint)
	b.WriteString("    sampling_interval: 0s\n    queue_size: 100\n    reconnect: {min: 100ms, max: 1s}\n    publish_requests: 5\n    tags:\n")
	kinds := []string{"Double", "Int32", "Boolean", "String"}
	for i := range 12 {
		iv := []string{"100ms", "200ms", "1s"}[i/4]
		k := kinds[i%4]
		fmt.Fprintf(&b, "      - {name: %s_%04d, node: \"ns=1;s=%s.%04d\", publishing_interval: %s}\n", strings.ToLower(k), i, k, i, iv)
	}
	cfg, err := config.Parse("test.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return cfg.PLCs[0]
}

// A PLC with small limits, as real ones have: Read, CreateMonitoredItems
// and subscriptions are split and merged to fit what it advertises, a
// subscription refused with BadTooManySubscriptions beyond what it
// advertises folds the tags into the ones it took, five PublishRequests
// (publish_requests: 5) on a PLC that queues two are cut to two without a
// fault (BadTooManyPublishRequests, as Rockwell and Beckhoff answer), and a
// second client refused with BadTooManySessions says so and backs off.
func TestSessionFitsServerLimits(t *testing.T) {
	peer := peerproc.Start(t, peerproc.Options{Tags: 12, MaxSessions: 1, Args: []string{
		"-max-nodes-per-read", "5", "-max-items-per-call", "4",
		"-max-subscriptions-per-session", "2", "-max-subscriptions", "1",
		"-max-publish-requests", "2",
	}})
	r, s := startSessionValue(t, limitsPLC(t, "small", peer.Endpoint))
	waitUntil(t, "values from every tag", 30*time.Second, func() bool { return r.tagsSeen() == 12 })
	logs := r.logs.String()
	for _, want := range []string{
		`"max_nodes_per_read":5,"max_monitored_items_per_call":4`,
		`"max_subscriptions_per_session":2`,
		"slower tags are published at a faster interval",
		"the PLC refused another subscription (BadTooManySubscriptions)",
		`"subscriptions":1,`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(logs, "BadTooManyOperations") || strings.Contains(logs, "tag rejected") {
		t.Errorf("a request beyond the server's limits, or a tag refused:\n%s", logs)
	}
	if st := s.States().Snapshot()[0]; st.TagsFailed != 0 || st.TagsOK != 12 || st.Recoveries != 0 || st.Reconnects != 0 {
		t.Errorf("status %d tags ok, %d failed, %d recoveries, %d reconnects; want 12, 0, 0, 0", st.TagsOK, st.TagsFailed, st.Recoveries, st.Reconnects)
	}
	// Each refusal of the oldest request leaves one fewer in flight, never
	// fewer than the two the PLC queues; how many refusals come depends on
	// how fast the PLC answers the others (at most three: 5 -> 2).
	cuts := publishRequestCuts(logs)
	if len(cuts) == 0 || len(cuts) > 3 || !slices.Equal(cuts, []string{"4", "3", "2"}[:len(cuts)]) {
		t.Errorf("publish requests cut to %v, want 4, then 3, then 2 at most:\n%s", cuts, logs)
	}
	seen := r.tagsSeen()
	waitUntil(t, "values after the cuts", 10*time.Second, func() bool { return r.count("int32_0001") > 3 })
	if seen != 12 || countLines(r.logs.String(), `"level":"error"`) != 0 || countLines(r.logs.String(), `"level":"warn"`, "PublishRequest") != 0 {
		t.Errorf("a fault logged for BadTooManyPublishRequests:\n%s", r.logs)
	}

	// A second client finds the PLC full.
	second, _ := startSessionValue(t, limitsPLC(t, "second", peer.Endpoint))
	waitUntil(t, "the second client refused", 30*time.Second, func() bool {
		return strings.Contains(second.logs.String(), "the PLC allows no more sessions (BadTooManySessions)")
	})
	// The longest backoff (1 s here), not the first (100 ms).
	if countLines(second.logs.String(), "BadTooManySessions", `"backoff_ms":1000,`) == 0 {
		t.Errorf("want the full PLC retried after the longest backoff:\n%s", second.logs)
	}
}

// publishRequestCuts lists, in order, the publish_requests values the
// session logged as it kept fewer in flight.
func publishRequestCuts(logs string) []string {
	var cuts []string
	for line := range strings.Lines(logs) {
		if !strings.Contains(line, "BadTooManyPublishRequests") {
			continue
		}
		if _, after, ok := strings.Cut(line, `"publish_requests":`); ok {
			n, _, _ := strings.Cut(after, ",")
			cuts = append(cuts, strings.TrimSuffix(n, "}"))
		}
	}
	return cuts
}
