package opcua

import (
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
)

// TestRetryNow: a session waiting 30 s to reconnect to a PLC that refuses
// the connection tries again at once when asked, and only while waiting.
func TestRetryNow(t *testing.T) {
	plc := plcConfig(t, "opc.tcp://"+testkit.Addr(t), "tags:\n  - {name: a, node: \"ns=1;s=a\"}")
	plc.Reconnect.Min, plc.Reconnect.Max = config.Duration(30*time.Second), config.Duration(30*time.Second)
	r, s := startSessionValue(t, plc)
	failures := func() uint64 { return s.States().Snapshot()[0].ConnectFailures }
	waiting := func() bool {
		st := s.States().Snapshot()[0]
		return !st.NextAttempt.IsZero() && s.waiting.Load()
	}
	deadline := time.Now().Add(10 * time.Second)
	for !waiting() {
		if time.Now().After(deadline) {
			t.Fatalf("the session never waited to reconnect; log:\n%s", r.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := failures(); n != 1 {
		t.Fatalf("%d connection failures before asking, want 1", n)
	}
	asked := time.Now()
	if !s.RetryNow() {
		t.Fatal("RetryNow = false while waiting")
	}
	for failures() < 2 {
		if time.Since(asked) > 5*time.Second {
			t.Fatalf("no new attempt within 5 s of RetryNow (backoff 30 s); log:\n%s", r.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.logs.WaitFor(t, 5*time.Second, "retrying now, as asked")
	r.shutdown(t)
	if s.RetryNow() {
		t.Error("RetryNow = true after the session stopped")
	}
}
