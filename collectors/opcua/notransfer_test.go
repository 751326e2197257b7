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

// A server without TransferSubscriptions (Siemens, B&R; the peer with
// -no-transfer) while it still holds the session: the connection is cut,
// node-opcua refuses to move a session of an X.509 user to a new channel,
// so the recovery opens a new session and asks for the subscriptions; the
// server refuses, and they are recreated. The values of the cut come back
// from the PLC's history (-historize): every counter value once, in order,
// and nothing logged at Error for what the server legitimately lacks.
func TestRecoveryWithoutTransferRecreates(t *testing.T) {
	// A certificate made here: node-opcua makes one in JavaScript, seconds.
	certFile, keyFile, _ := serverCert(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), "urn:tagbridge:opcua-peer")
	peer := peerproc.Start(t, peerproc.Options{Tags: 8, Policies: []string{"Basic256Sha256"}, Modes: []string{"Sign"},
		X509Users: true, CertFile: certFile, KeyFile: keyFile, Args: []string{"-no-transfer", "-historize"}})
	proxy := faultproxy.Start(t, strings.TrimPrefix(peer.Endpoint, "opc.tcp://"))
	f := newSecureFixture(t)
	var b strings.Builder
	fmt.Fprintf(&b, "agent: {id: rtest, allowed_cert_dirs: [%s], pki_dir: %s}\nplcs:\n  - name: peer\n    endpoint: opc.tcp://%s\n", f.dir, f.pki, proxy.Addr())
	fmt.Fprintf(&b, "    security: {certificate_file: %s, key_file: %s, policy: Basic256Sha256, mode: Sign, trust: fingerprint_and_expiry, auto_accept: true, verify_hostname: false}\n", f.cert, f.key)
	fmt.Fprintf(&b, "    auth: {certificate_file: %s, key_file: %s}\n", f.cert, f.key)
	b.WriteString("    publishing_interval: 50ms\n    queue_size: 200\n    reconnect: {min: 100ms, max: 500ms}\n")
	for _, line := range strings.Split(strings.TrimRight(simprocTags(8), "\n"), "\n") {
		fmt.Fprintf(&b, "    %s\n", line)
	}
	cfg, err := config.Parse("test.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	r, s := startSessionValue(t, exceptionBased(cfg.PLCs[0]))
	r.waitValues(t, "first values", 10, 30*time.Second)

	proxy.Cut()
	waitUntil(t, "subscriptions recreated", 30*time.Second, func() bool {
		return strings.Contains(r.logs.String(), "subscriptions recreated")
	})
	r.waitValues(t, "values after the recreation", 10, 30*time.Second)
	r.shutdown(t)

	logs := r.logs.String()
	for _, want := range []string{"server refused to reactivate the session", "subscriptions not transferable", "the server does not transfer subscriptions, subscriptions recreated"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q: the recovery did not go through TransferSubscriptions", want)
		}
	}
	if !strings.Contains(peer.Log(), "TransferSubscriptions refused") {
		t.Errorf("the peer never refused TransferSubscriptions")
	}
	if n := countLines(logs, `"level":"error"`); n != 0 {
		t.Errorf("%d lines logged at Error, want none", n)
	}
	for _, tag := range []string{"int32_0001", "int32_0005"} {
		vs := r.counterValues(tag)
		for i := 1; i < len(vs); i++ {
			if vs[i] != vs[i-1]+1 && !(vs[i] == vs[i-1] && r.resent(tag, i)) {
				t.Errorf("%s: value %d after %d at index %d: gap, duplicate or reordering (%s)", tag, vs[i], vs[i-1], i, r.around(tag, i))
				break
			}
		}
	}
	r.mu.Lock()
	historical := 0
	for _, smp := range r.samples["int32_0001"] {
		if smp.Historical {
			historical++
		}
	}
	r.mu.Unlock()
	st := s.States().Snapshot()[0]
	t.Logf("values=%d historical=%d recoveries=%d reconnects=%d", len(r.counterValues("int32_0001")), historical, st.Recoveries, st.Reconnects)
}
