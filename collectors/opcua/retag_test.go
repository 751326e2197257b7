package opcua

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// retagPLCs are two node-opcua entries sharing one session: peer with the
// given tags: lines, and line2 with the tag steady.
func retagPLCs(t *testing.T, endpoint string, tags ...string) []config.PLC {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "agent: {id: rtest}\nplcs:\n")
	entry := func(name string, tags ...string) {
		fmt.Fprintf(&b, "  - name: %s\n    endpoint: %s\n    publishing_interval: 50ms\n    sampling_interval: 20ms\n    queue_size: 100\n    reconnect: {min: 100ms, max: 1s}\n    tags:\n", name, endpoint)
		for _, tag := range tags {
			fmt.Fprintf(&b, "      - %s\n", tag)
		}
	}
	entry("peer", tags...)
	entry("line2", `{name: steady, node: "ns=1;s=Double.0008"}`)
	cfg, err := config.Parse("test.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return cfg.PLCs
}

// A retag against node-opcua, which takes ModifyMonitoredItems: one tag
// added, one removed, one with a new sampling interval (modified in
// place), one on a new node (deleted and created anew) and one the server
// refuses, in one retag, sent in CreateMonitoredItems calls of at most the
// server's MaxMonitoredItemsPerCall (2). The session is neither created nor
// activated again, the unaffected counter has no gap and no repeat, the
// refused tag is named in the status; the other entry of the shared
// session is left alone.
func TestRetagLive(t *testing.T) {
	peer := peerproc.Start(t, peerproc.Options{Tags: 12, Debug: true, Args: []string{"-max-items-per-call", "2"}})
	const (
		counter = `{name: int32_0001, node: "ns=1;s=Int32.0001"}`
		removed = `{name: double_0004, node: "ns=1;s=Double.0004"}`
	)
	plcs := retagPLCs(t, peer.Endpoint, counter, removed,
		`{name: int32_0005, node: "ns=1;s=Int32.0005"}`, `{name: moved, node: "ns=1;s=String.0003"}`)
	r, s := startSessions(t, plcs)
	waitUntil(t, "values of every tag", 20*time.Second, func() bool { return r.tagsSeen() == 5 })

	next := retagPLCs(t, peer.Endpoint, counter,
		`{name: int32_0005, node: "ns=1;s=Int32.0005", sampling_interval: 50ms}`,
		`{name: moved, node: "ns=1;s=String.0007"}`,
		`{name: int32_0009, node: "ns=1;s=Int32.0009"}`,
		`{name: missing, node: "ns=1;s=NoSuchNode"}`)
	for i := range next {
		next[i].History.StateDir = s.entries[i].History.StateDir // as startSessions set it
	}
	if s.NeedsRestart(next) {
		t.Fatal("NeedsRestart: true for a change of tags only")
	}
	requestsBefore := strings.Count(peer.Log(), "CreateMonitoredItemsRequest")
	s.Retag(next)
	retagged := r.logs.WaitFor(t, 10*time.Second, "subscription updated in place")
	done := time.Now()
	waitUntil(t, "values of the new tag", 10*time.Second, func() bool { return len(r.values(t, "int32_0009")) >= 5 })
	mark := r.values(t, "int32_0001")
	waitUntil(t, "1 s more of the counter", 10*time.Second, func() bool { return len(r.values(t, "int32_0001")) >= len(mark)+10 })
	r.shutdown(t)
	peerLog := peer.Log()

	if n := strings.Count(r.logs.String(), "subscription updated in place"); n != 1 {
		t.Errorf("%d retag log lines, want 1 (for peer; line2's tags did not change)", n)
	}
	for _, want := range []string{`"tag_plc":"peer"`, `"added":2`, `"removed":1`, `"modified":1`, `"recreated":1`, `"failed":1`, `"tags":5`, `"took_ms":`} {
		if !strings.Contains(retagged, want) {
			t.Errorf("retag log line %s lacks %s", retagged, want)
		}
	}
	if n := strings.Count(peerLog, "session created"); n != 1 {
		t.Errorf("%d sessions created, want 1", n)
	}
	if n := strings.Count(peerLog, "session activated"); n != 1 {
		t.Errorf("%d session activations, want 1", n)
	}
	for _, req := range []string{"ModifyMonitoredItemsRequest", "DeleteMonitoredItemsRequest"} {
		if !strings.Contains(peerLog, "request "+req) {
			t.Errorf("no %s reached the server", req)
		}
	}
	// added, missing, moved: three items, in calls of at most two.
	if n := strings.Count(peerLog, "CreateMonitoredItemsRequest") - requestsBefore; n != 2 {
		t.Errorf("%d CreateMonitoredItems calls for the retag, want 2", n)
	}
	if strings.Contains(r.logs.String(), "refuses to modify") {
		t.Errorf("node-opcua's ModifyMonitoredItems was refused:\n%s", r.logs)
	}
	if vs := r.values(t, "int32_0001"); contiguousInt32(vs) != nil || len(vs) < 20 {
		t.Errorf("int32_0001 (unaffected): %d values, %v", len(vs), contiguousInt32(vs))
		r.mu.Lock()
		for _, smp := range r.samples["int32_0001"] {
			t.Logf("%v src %s srv %s", smp.Any(), smp.SourceTime.Format("15:04:05.000"), smp.ServerTime.Format("15:04:05.000"))
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	for _, smp := range r.samples["double_0004"] {
		if smp.ServerTime.After(done.Add(time.Second)) {
			t.Errorf("double_0004 (removed): a value from %v, after the retag at %v", smp.ServerTime, done)
			break
		}
	}
	for _, smp := range r.samples["moved"] {
		if smp.ServerTime.After(done.Add(time.Second)) && smp.Node != "ns=1;s=String.0007" {
			t.Errorf("moved: a value of %s after the retag", smp.Node)
			break
		}
	}
	r.mu.Unlock()
	r.mu.Lock()
	steady := r.samples["steady"]
	r.mu.Unlock()
	if len(steady) < 20 || !steady[len(steady)-1].ServerTime.After(done) {
		t.Errorf("line2's steady: %d values, none after the retag", len(steady))
	}
	st := s.States().Snapshot()[0]
	if st.TagsOK != 4 || st.TagsFailed != 1 || len(st.FailedTags) != 1 || st.FailedTags[0].Tag != "missing" {
		t.Errorf("status: %d tags ok, %d failed %v; want 4, 1 (missing)", st.TagsOK, st.TagsFailed, st.FailedTags)
	}
	if st.Reconnects != 0 || st.Recoveries != 0 {
		t.Errorf("status: %d reconnects, %d recoveries; want none", st.Reconnects, st.Recoveries)
	}
}

// values returns a tag's Int32 values in arrival order.
func (r *runSession) values(t *testing.T, tag string) []int32 {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int32
	for _, smp := range r.samples[tag] {
		v, ok := smp.Any().(int32)
		if !ok {
			t.Fatalf("%s: value %v (%T) is not an Int32", tag, smp.Any(), smp.Any())
		}
		out = append(out, v)
	}
	return out
}

func contiguousInt32(vs []int32) error {
	for i := 1; i < len(vs); i++ {
		if vs[i] != vs[i-1]+1 {
			return fmt.Errorf("value %d after %d at index %d", vs[i], vs[i-1], i)
		}
	}
	return nil
}

// A session that reconnects after a retag subscribes to its tags as they
// are now: the removed tag's tombstone is neither read nor monitored, the
// new tag comes back, the status counts the tags in force.
func TestRetagThenReconnect(t *testing.T) {
	sim := simproc.Start(t, "-tags", "12", "-interval", "100ms")
	tags := func(names ...string) config.PLC {
		var y strings.Builder
		y.WriteString("tags:\n")
		for _, n := range names {
			kind := strings.ToUpper(n[:1]) + n[1:strings.Index(n, "_")]
			fmt.Fprintf(&y, "  - {name: %s, node: \"ns=1;s=%s.%s\"}\n", n, kind, n[strings.Index(n, "_")+1:])
		}
		return plcConfig(t, sim.Endpoint, y.String())
	}
	r, s := startSessionValue(t, tags("int32_0001", "double_0004"))
	waitUntil(t, "values of both tags", 20*time.Second, func() bool { return r.tagsSeen() == 2 })
	next := tags("int32_0001", "int32_0009")
	next.History.StateDir = s.entries[0].History.StateDir // as startSessions set it
	if s.NeedsRestart([]config.PLC{next}) {
		t.Fatal("NeedsRestart: true for a change of tags only")
	}
	s.Retag([]config.PLC{next})
	r.logs.WaitFor(t, 10*time.Second, "subscription updated in place")
	done := time.Now()
	sim.Restart()
	r.logs.Wait(t, "session", regexp.MustCompile(`plc session (re-)?established`), 2, 20*time.Second)
	n := len(r.values(t, "int32_0009"))
	waitUntil(t, "values of the new tag after the reconnect", 10*time.Second, func() bool { return len(r.values(t, "int32_0009")) >= n+5 })
	r.shutdown(t)

	r.mu.Lock()
	for _, smp := range r.samples["double_0004"] {
		if smp.ServerTime.After(done.Add(time.Second)) {
			t.Errorf("double_0004 (removed): a value from %v, after the retag at %v", smp.ServerTime, done)
			break
		}
	}
	r.mu.Unlock()
	if st := s.States().Snapshot()[0]; st.TagsOK != 2 || st.TagsFailed != 0 {
		t.Errorf("status after the reconnect: %d tags ok, %d failed; want 2, 0", st.TagsOK, st.TagsFailed)
	}
	if logs := r.logs.String(); strings.Contains(logs, "tag rejected") {
		t.Errorf("a tag rejected after the reconnect:\n%s", logs)
	}
}
