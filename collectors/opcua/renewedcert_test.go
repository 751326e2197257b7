package opcua

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/scripts/open62541/o62proc"
)

// The PLC restarts with a new server certificate the agent does not trust
// (found in the fresh-install walk): the refusal is named at once, as at a
// first connection (fingerprint, the copy in rejected/, how to trust it), in
// the log and in the state's reason, and the reconnect backoff applies;
// the recovery does not keep encrypting for the old certificate for its
// whole window with "EOF" as the reason. Trusting the copy as told brings
// the values back.
func TestRecoveryNamesNewUntrustedServerCertificate(t *testing.T) {
	srv := o62proc.Start(t, o62proc.Options{Tags: 2, Interval: o62Interval, Policies: []string{"None", "Basic256Sha256"}})
	old, err := srv.Certificate("Basic256Sha256")
	if err != nil {
		t.Fatal(err)
	}
	f := newSecureFixture(t)
	security := "policy: Basic256Sha256, mode: SignAndEncrypt, " + o62Trust(t, srv, "Basic256Sha256")
	r, s := startSessionValue(t, f.o62Config(t, "renewed", srv.Endpoint, security, "", 2, time.Hour))
	waitUntil(t, "values from the first certificate's server", 30*time.Second, func() bool { return r.tagsSeen() == 2 })

	srv.Stop()
	// o62server makes a new certificate when its own/ folder is empty.
	if err := os.RemoveAll(filepath.Join(srv.PKIDir, "own")); err != nil {
		t.Fatal(err)
	}
	mark := len(r.logs.String())
	srv.Restart()
	renewed, err := srv.Certificate("Basic256Sha256")
	if err != nil || bytes.Equal(renewed, old) {
		t.Fatalf("the restarted server presents the same certificate (%v)", err)
	}
	fingerprint := certs.Fingerprint(renewed)
	named := func(msg string) bool {
		return strings.Contains(msg, "new server certificate") && strings.Contains(msg, fingerprint) &&
			strings.Contains(msg, "is not trusted") && strings.Contains(msg, "rejected") && strings.Contains(msg, "to trust it: mv ")
	}
	waitUntil(t, "the new certificate named in the state's reason", 30*time.Second, func() bool {
		st := s.States().Snapshot()[0]
		return st.State == "disconnected" && named(st.Reason) && named(st.LastError)
	})
	logs := r.logs.String()[mark:]
	// The first warning after the restart names the certificate: no
	// recovery ran out its window on refused channels before.
	first := ""
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, "plc session down; retrying") {
			first = line
			break
		}
	}
	t.Logf("first warning after the restart: %s", first)
	if !named(first) || !strings.Contains(first, `"backoff_ms"`) {
		t.Errorf("first 'plc session down' warning after the restart:\n%s\nwant the new certificate named, with the backoff", first)
	}
	if strings.Contains(logs, "recover session:") {
		t.Errorf("the recovery ran out its window before naming the certificate")
	}
	rejected, err := filepath.Glob(filepath.Join(f.pki, "rejected", "certs", "*"))
	if err != nil || len(rejected) != 1 {
		t.Fatalf("rejected/certs holds %v (%v), want the new certificate", rejected, err)
	}
	if got, err := os.ReadFile(rejected[0]); err != nil || !bytes.Equal(got, renewed) {
		t.Fatalf("rejected/certs/%s is not the new certificate (%v)", filepath.Base(rejected[0]), err)
	}
	waitUntil(t, "at least two refused attempts, each after its backoff", 30*time.Second, func() bool {
		return countLines(r.logs.String()[mark:], "plc session down; retrying", fingerprint, "backoff_ms") >= 2
	})

	// What the message says to do.
	if err := os.Rename(rejected[0], filepath.Join(f.pki, "trusted", "certs", filepath.Base(rejected[0]))); err != nil {
		t.Fatal(err)
	}
	before := r.count("double_0000")
	waitUntil(t, "values after trusting the new certificate", 30*time.Second, func() bool {
		return r.count("double_0000") > before && s.States().Snapshot()[0].State == "streaming"
	})
}
