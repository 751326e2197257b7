package opcua

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
)

// pollPLC is a node-opcua entry whose 8 tags are read with mode as given,
// the first Int32 counter (int32_0001) always polled.
func pollPLC(t *testing.T, name, endpoint, mode string) config.PLC {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "agent: {id: ptest}\nplcs:\n  - name: %s\n    endpoint: %s\n    mode: %s\n    poll_interval: 40ms\n", name, endpoint, mode)
	b.WriteString("    publishing_interval: 50ms\n    sampling_interval: 0s\n    queue_size: 100\n    reconnect: {min: 100ms, max: 1s}\n    tags:\n")
	kinds := []string{"Double", "Int32", "Boolean", "String"}
	for i := range 8 {
		k := kinds[i%4]
		extra := ""
		if i == 1 {
			extra = ", mode: poll"
		}
		fmt.Fprintf(&b, "      - {name: %s_%04d, node: \"ns=1;s=%s.%04d\"%s}\n", strings.ToLower(k), i, k, i, extra)
	}
	cfg, err := config.Parse("test.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return cfg.PLCs[0]
}

// Polled tags are read every poll_interval in Reads of at most the
// server's MaxNodesPerRead (3 here), each change handed on once: a PLC
// whose tags are all polled (no subscription, state streaming once values
// came), and one whose tags are subscribed but one, in subscriptions of
// at most the server's MaxMonitoredItemsPerSubscription (3 here).
func TestSessionPolls(t *testing.T) {
	peer := peerproc.Start(t, peerproc.Options{Tags: 8, Args: []string{"-max-nodes-per-read", "3", "-max-items-per-subscription", "3"}})
	polled, ps := startSessionValue(t, pollPLC(t, "polled", peer.Endpoint, "poll"))
	mixed, _ := startSessionValue(t, pollPLC(t, "mixed", peer.Endpoint, "subscribe"))
	start := time.Now()
	for _, r := range []*runSession{polled, mixed} {
		waitUntil(t, "values from every tag", 30*time.Second, func() bool { return r.tagsSeen() == 8 })
		r.waitValues(t, "10 more counter values", 10, 30*time.Second)
	}
	t.Logf("POLL values after %v: polled %d, mixed %d", time.Since(start).Round(time.Millisecond),
		len(polled.counterValues("int32_0001")), len(mixed.counterValues("int32_0001")))
	if st := ps.States().Snapshot()[0].State; st != "streaming" {
		t.Errorf("polled PLC state %q, want streaming", st)
	}
	polled.shutdown(t)
	mixed.shutdown(t)
	for name, r := range map[string]*runSession{"polled": polled, "mixed": mixed} {
		logs := r.logs.String()
		if strings.Contains(logs, "BadTooManyOperations") || strings.Contains(logs, `"level":"warn"`) {
			t.Errorf("%s: a read beyond MaxNodesPerRead, or a warning:\n%s", name, logs)
		}
		// Each change once and in order; polling may miss a change that
		// lasted less than a poll interval on a loaded machine.
		vs := r.counterValues("int32_0001")
		for i := 1; i < len(vs); i++ {
			if vs[i] <= vs[i-1] {
				t.Errorf("%s: polled counter %d after %d: duplicate or out of order", name, vs[i], vs[i-1])
				break
			}
		}
	}
	// The mixed PLC's 7 subscribed tags in subscriptions of at most the
	// 3 items the server advertises (MaxMonitoredItemsPerSubscription).
	if !strings.Contains(polled.logs.String(), `"subscriptions":0`) || !strings.Contains(mixed.logs.String(), `"subscriptions":3`) {
		t.Errorf("want no subscription for the polled PLC and three (3+3+1 items) for the mixed one")
	}
}
