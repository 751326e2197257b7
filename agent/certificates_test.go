package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/config"
)

// TestCertificateExpiryWarning: the agent's certificate (10 days left)
// and a server certificate in the trust store (5 days) are listed for
// the status, and each is worth a Warn at start.
func TestCertificateExpiryWarning(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte, perm os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, perm); err != nil {
			t.Fatal(err)
		}
	}
	cert, key, err := certs.Generate(certs.Options{AgentID: "line1", Hostname: "ipc1", Days: 10})
	if err != nil {
		t.Fatal(err)
	}
	write("certs/client-cert.pem", cert, 0o644)
	write("certs/client-key.pem", key, 0o600)
	server, _, err := certs.Generate(certs.Options{AgentID: "plc", Hostname: "press1", Days: 5})
	if err != nil {
		t.Fatal(err)
	}
	write("pki/trusted/certs/press1.pem", server, 0o600)
	write("config.yaml", []byte(`agent: {id: line1, allowed_cert_dirs: [`+dir+`/certs], pki_dir: `+dir+`/pki, spool_dir: `+dir+`/spool}
plcs:
  - name: press1
    endpoint: opc.tcp://127.0.0.1:4840
    security: {policy: Basic256Sha256, certificate_file: `+dir+`/certs/client-cert.pem, key_file: `+dir+`/certs/client-key.pem}
    tags: [{node: ns=2;s=Temp}]
`), 0o600)
	cfg, err := config.Load(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	a := New(cfg, zerolog.New(&logs))
	a.groups = a.plan(cfg)

	got := map[string]int{}
	for _, c := range a.certificates() {
		got[c.PLC+"/"+c.Role] = int(c.NotAfter.Sub(c.NotAfter.AddDate(0, 0, -1)).Hours())
	}
	if len(got) != 2 || got["press1/agent"] == 0 || got["press1/trusted"] == 0 {
		t.Errorf("certificates: %v, want press1's agent and trusted certificates", got)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel() // one look, then return
	a.watchExpiry(ctx)
	for _, want := range []string{
		`"level":"warn","plc":"press1","role":"agent","subject":"tagbridge line1","file":"` + dir + `/certs/client-cert.pem"`,
		`"days_left":9,"message":"certificate expires soon: tagbridge certs renew, then import the new certificate into the PLC"`,
		`"role":"trusted"`,
		`"days_left":4,"message":"certificate expires soon: the PLC needs a new one, trusted again in the trust store"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pki/rejected")); err == nil {
		t.Error("listing the certificates created directories in the trust store")
	}
}

// TestCertificateExpiryRoleBeforeConnecting: before the PLC was reached,
// the certificate in the trust store that names its host is its server
// certificate, in the Warn at start as in the list the metric and
// tagbridge status read (once "trusted" in the log, "server" in both
// others: found in the fresh-install walk); another PLC's is "trusted".
func TestCertificateExpiryRoleBeforeConnecting(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		file, host string
		days       int
	}{{"certs/client-cert.pem", "ipc1", 700}, {"pki/trusted/certs/press1.pem", "press1.plant", 5}, {"pki/trusted/certs/oven2.pem", "oven2.plant", 6}} {
		cert, key, err := certs.Generate(certs.Options{AgentID: "a", Hostname: c.host, Days: c.days})
		if err != nil {
			t.Fatal(err)
		}
		write(c.file, cert)
		if c.host == "ipc1" {
			write("certs/client-key.pem", key)
		}
	}
	write("config.yaml", []byte(`agent: {id: line1, allowed_cert_dirs: [`+dir+`/certs], pki_dir: `+dir+`/pki, spool_dir: `+dir+`/spool}
plcs:
  - name: press1
    endpoint: opc.tcp://press1.plant:4840
    security: {policy: Basic256Sha256, certificate_file: `+dir+`/certs/client-cert.pem, key_file: `+dir+`/certs/client-key.pem}
    tags: [{node: ns=2;s=Temp}]
`))
	cfg, err := config.Load(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	a := New(cfg, zerolog.New(&logs))
	a.groups = a.plan(cfg)
	roles := map[string]string{}
	for _, c := range a.certificates() {
		roles[filepath.Base(c.File)] = c.Role
	}
	if roles["press1.pem"] != certs.RoleServer || roles["oven2.pem"] != certs.RoleTrusted {
		t.Errorf("roles %v, want press1.pem server, oven2.pem trusted", roles)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	a.watchExpiry(ctx)
	for _, want := range []string{`"role":"server","subject":"tagbridge a","file":"` + dir + `/pki/trusted/certs/press1.pem"`, `"role":"trusted","subject":"tagbridge a","file":"` + dir + `/pki/trusted/certs/oven2.pem"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
}
