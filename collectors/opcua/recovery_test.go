package opcua

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/scripts/faultproxy"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
)

// recoveryPLC is a PLC entry for the node-opcua peer with 3 s tokens and a
// queue that covers a 20 s cut at 100 ms changes. security is a YAML flow
// mapping body; empty means policy None.
func recoveryPLC(t *testing.T, endpoint, security string) config.PLC {
	t.Helper()
	return recoveryPLCTags(t, endpoint, security, simprocTags(8))
}

// o62Tags names the first n tags of the open62541 test server as plcsim's
// are named, so Tag0002 (its first Int32 counter) is int32_0001.
func o62Tags(n int) string {
	var b strings.Builder
	b.WriteString("tags:\n")
	kinds := []string{"Double", "Int32", "Boolean", "String"}
	for i := range n {
		fmt.Fprintf(&b, "  - name: %s_%04d\n    node: \"ns=1;s=Tag%04d\"\n", strings.ToLower(kinds[i%4]), i, i+1)
	}
	return b.String()
}

// recoveryPLCTags is recoveryPLC with the given tags (simprocTags' form).
func recoveryPLCTags(t *testing.T, endpoint, security, tags string) config.PLC {
	t.Helper()
	var b strings.Builder
	if security == "" {
		fmt.Fprintf(&b, "agent: {id: rtest}\nplcs:\n  - name: peer\n    endpoint: %s\n", endpoint)
	} else {
		f := newSecureFixture(t)
		fmt.Fprintf(&b, "agent: {id: rtest, allowed_cert_dirs: [%s], pki_dir: %s}\nplcs:\n  - name: peer\n    endpoint: %s\n", f.dir, f.pki, endpoint)
		fmt.Fprintf(&b, "    security: {certificate_file: %s, key_file: %s, %s}\n", f.cert, f.key, security)
	}
	// Sampling at 20 ms, five times the change rate: the peer samples on a
	// timer, and at the change rate its timers drift across each other
	// and skip a value now and then. (0s would mean the 100 ms default.)
	b.WriteString("    publishing_interval: 50ms\n    sampling_interval: 20ms\n    queue_size: 200\n    reconnect: {min: 100ms, max: 500ms}\n")
	for _, line := range strings.Split(strings.TrimRight(tags, "\n"), "\n") {
		fmt.Fprintf(&b, "    %s\n", line)
	}
	cfg, err := config.Parse("test.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return cfg.PLCs[0]
}

// counterValues is the values of an Int32 counter tag so far.
func (r *runSession) counterValues(tag string) []int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var vs []int32
	for _, s := range r.samples[tag] {
		if v, ok := s.Any().(int32); ok {
			vs = append(vs, v)
		}
	}
	return vs
}

// resent tells whether sample i of tag is sample i-1 again.
func (r *runSession) resent(tag string, i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, b := r.samples[tag][i-1], r.samples[tag][i]
	return a.SourceTime.Equal(b.SourceTime) && a.ServerTime.Equal(b.ServerTime)
}

// around describes the samples of tag just before and at index i.
func (r *runSession) around(tag string, i int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, s := range r.samples[tag][max(0, i-2):min(len(r.samples[tag]), i+2)] {
		fmt.Fprintf(&b, "%v source %s server %s; ", s.Any(), s.SourceTime.Format("15:04:05.000"), s.ServerTime.Format("15:04:05.000"))
	}
	return b.String()
}

// checkNoGap fails the test unless every counter tag counted up by one
// from its first value (a value repeated is no gap), with at least min
// values.
func checkNoGap(t *testing.T, r *runSession, min int) {
	t.Helper()
	for _, tag := range []string{"int32_0001", "int32_0005"} {
		vs := r.counterValues(tag)
		if len(vs) < min {
			t.Errorf("%s: %d values, want at least %d", tag, len(vs), min)
		}
		dups := 0
		for i := 1; i < len(vs); i++ {
			if vs[i] == vs[i-1] && r.resent(tag, i) {
				// node-opcua's ActivateSession resends the last value of
				// every item with nothing queued, also when a session
				// moves to a new channel: the same sample again.
				dups++
				continue
			}
			if vs[i] != vs[i-1]+1 {
				t.Errorf("%s: value %d after %d at index %d: gap or duplicate (%s)", tag, vs[i], vs[i-1], i, r.around(tag, i))
				break
			}
		}
		if dups > 0 {
			t.Logf("%s: %d repeated values", tag, dups)
		}
	}
}

// waitValues waits until the counter has n more values than it had.
func (r *runSession) waitValues(t *testing.T, what string, n int, d time.Duration) {
	t.Helper()
	from := len(r.counterValues("int32_0001"))
	waitUntil(t, what, d, func() bool { return len(r.counterValues("int32_0001")) >= from+n })
}

// shortTokens asks for 3 s secure channel tokens.
func shortTokens(plc config.PLC) config.PLC {
	plc.TokenLifetime = config.Duration(3 * time.Second)
	return plc
}

// Tokens of 3 s are renewed every 2 s or so; values flow on without a gap.
func TestRecoveryTokenRenewalKeepsValues(t *testing.T) {
	peer := peerproc.Start(t, peerproc.Options{Tags: 8, TokenLifetime: 3 * time.Second, MinTokenLifetime: time.Second})
	r, s := startSessionValue(t, exceptionBased(shortTokens(recoveryPLC(t, peer.Endpoint, ""))))
	waitUntil(t, "eight token renewals", 60*time.Second, func() bool { return LinkOf(s.States().Snapshot()[0]).TokenRenewals >= 8 })
	r.shutdown(t)
	st := s.States().Snapshot()[0]
	if LinkOf(st).TokenRenewalFailures != 0 || LinkOf(st).LastRenewal.IsZero() || LinkOf(st).ChannelID == 0 || LinkOf(st).TokenID < 2 {
		t.Errorf("status %+v: want renewals without failures, a last renewal time and the channel", st)
	}
	checkNoGap(t, r, 100)
}

// A 10 s freeze of the connection: the server keeps the session and queues
// the values; the session moves to a new channel and gets them all.
func TestRecoveryFreezeKeepsValues(t *testing.T) {
	peer := peerproc.Start(t, peerproc.Options{Tags: 8})
	proxy := faultproxy.Start(t, strings.TrimPrefix(peer.Endpoint, "opc.tcp://"))
	r, s := startSessionValue(t, exceptionBased(recoveryPLC(t, "opc.tcp://"+proxy.Addr(), "")))
	r.waitValues(t, "first values", 20, 30*time.Second)
	proxy.Freeze()
	deadline := time.Now().Add(10 * time.Second)
	waitUntil(t, "the freeze to last 10 s", 15*time.Second, func() bool { return time.Now().After(deadline) })
	proxy.Thaw()
	waitUntil(t, "a recovery", 60*time.Second, func() bool { return s.States().Snapshot()[0].Recoveries >= 1 })
	r.waitValues(t, "values after the freeze", 150, 60*time.Second)
	r.shutdown(t)
	if n := s.States().Snapshot()[0].Reconnects; n != 0 {
		t.Errorf("%d reconnects, want the session recovered, not rebuilt", n)
	}
	checkNoGap(t, r, 150)
}

// Cuts of the connection (TCP reset) while the server keeps the session:
// each time the session is reactivated on a new channel and gets what was
// in flight republished.
func TestRecoveryCutKeepsValues(t *testing.T) {
	peer := peerproc.Start(t, peerproc.Options{Tags: 8})
	proxy := faultproxy.Start(t, strings.TrimPrefix(peer.Endpoint, "opc.tcp://"))
	r, s := startSessionValue(t, exceptionBased(recoveryPLC(t, "opc.tcp://"+proxy.Addr(), "")))
	r.waitValues(t, "first values", 20, 30*time.Second)
	for i := 1; i <= 3; i++ {
		proxy.Cut()
		waitUntil(t, fmt.Sprintf("recovery %d", i), 30*time.Second, func() bool { return s.States().Snapshot()[0].Recoveries >= uint64(i) })
		r.waitValues(t, "values after the cut", 30, 30*time.Second)
	}
	r.shutdown(t)
	if n := s.States().Snapshot()[0].Reconnects; n != 0 {
		t.Errorf("%d reconnects, want the session recovered, not rebuilt", n)
	}
	checkNoGap(t, r, 100)
}

// A PLC restart loses the session: a new one with subscriptions recreated.
func TestRecoveryPLCRestartRecreates(t *testing.T) {
	peer := peerproc.Start(t, peerproc.Options{Tags: 8, Start: 1000})
	r, s := startSessionValue(t, recoveryPLC(t, peer.Endpoint, ""))
	r.waitValues(t, "first values", 10, 30*time.Second)
	peer.Restart()
	waitUntil(t, "a new session", 90*time.Second, func() bool { return s.States().Snapshot()[0].Reconnects >= 1 })
	r.waitValues(t, "values from the restarted peer", 10, 30*time.Second)
}
