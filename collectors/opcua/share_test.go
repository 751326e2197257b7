package opcua

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

func TestShareKey(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "client-cert.pem")
	if err := os.WriteFile(cert, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(cert, filepath.Join(dir, "link.pem")); err != nil {
		t.Fatal(err)
	}
	base := config.PLC{Name: "a", Endpoint: "opc.tcp://PLC1", Security: config.Security{Policy: "Basic256Sha256", Mode: "SignAndEncrypt", CertificateFile: cert, Trust: "full"}}
	same := func(mod func(*config.PLC)) bool {
		p := base
		p.Name = "b"
		mod(&p)
		return ShareKey(p) == ShareKey(base)
	}
	tests := []struct {
		name  string
		mod   func(*config.PLC)
		share bool
	}{
		{"another name only", func(p *config.PLC) {}, true},
		{"same endpoint spelled differently", func(p *config.PLC) { p.Endpoint = "opc.tcp://plc1:4840" }, true},
		{"certificate through a symlink", func(p *config.PLC) { p.Security.CertificateFile = filepath.Join(dir, "link.pem") }, true},
		{"certificate through ..", func(p *config.PLC) { p.Security.CertificateFile = filepath.Join(dir, "sub", "..", "client-cert.pem") }, true},
		{"other port", func(p *config.PLC) { p.Endpoint = "opc.tcp://plc1:4841" }, false},
		{"other mode", func(p *config.PLC) { p.Security.Mode = "Sign" }, false},
		{"other user", func(p *config.PLC) { p.Auth.Username = "operator" }, false},
		{"other trust", func(p *config.PLC) { p.Security.Trust = "fingerprint" }, false},
		{"other certificate", func(p *config.PLC) { p.Security.CertificateFile = filepath.Join(dir, "other.pem") }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := same(tc.mod); got != tc.share {
				t.Errorf("share = %v, want %v", got, tc.share)
			}
		})
	}
}

// Two entries for one PLC: one session, each tag published under its entry.
func TestSharedSessionServesBothEntries(t *testing.T) {
	plc := simproc.Start(t, "-tags", "8", "-interval", "100ms")
	tags := strings.Split(strings.TrimRight(simproc.Tags(t, 8), "\n"), "\n")
	first := plcConfig(t, plc.Endpoint, strings.Join(tags[:9], "\n")) // tags: + 4 tags
	second := plcConfig(t, plc.Endpoint, "tags:\n"+strings.Join(tags[9:], "\n"))
	second.Name = "sim2"
	if ShareKey(first) != ShareKey(second) {
		t.Fatal("entries for one endpoint with the same settings must share")
	}
	r, _ := startSessions(t, []config.PLC{first, second})
	waitUntil(t, "values from all eight tags", 15*time.Second, func() bool { return r.tagsSeen() == 8 })
	r.mu.Lock()
	defer r.mu.Unlock()
	for tag, ss := range r.samples {
		want := "sim" // the first four tags
		if n, _ := strconv.Atoi(tag[len(tag)-4:]); n >= 4 {
			want = "sim2"
		}
		if ss[0].PLC != want {
			t.Errorf("tag %s published as PLC %q, want %q", tag, ss[0].PLC, want)
		}
	}
	if n := strings.Count(r.logs.String(), "plc session established"); n != 1 {
		t.Errorf("%d sessions established, want one shared", n)
	}
}
