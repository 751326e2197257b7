package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagbridge/tagbridge/certs"
)

// certDir writes two generated key pairs into dir/certs: client (cert
// 0644, key 0600) and other; it returns the allowed directory.
func certDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"client", "other"} {
		c, k, err := certs.Generate(certs.Options{AgentID: name, Hostname: "ipc01"})
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name+"-cert.pem"), c, 0o644)
		write(t, filepath.Join(dir, name+"-key.pem"), k, 0o600)
	}
	return dir
}

func write(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

func TestSecurityFiles(t *testing.T) {
	dir := certDir(t)
	outside := filepath.Join(filepath.Dir(dir), "home")
	if err := os.MkdirAll(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "client-key.pem"))
	write(t, filepath.Join(outside, "client-key.pem"), data, 0o600)
	write(t, filepath.Join(dir, "open-key.pem"), data, 0o644)
	write(t, filepath.Join(dir, "group-key.pem"), data, 0o640)
	if err := os.Symlink(filepath.Join(outside, "client-key.pem"), filepath.Join(dir, "escape-key.pem")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "client-key.pem"), filepath.Join(dir, "alias-key.pem")); err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(dir, "client-cert.pem")
	key := func(name string) string { return filepath.Join(dir, name) }

	tests := []struct {
		name string
		sec  string // the security mapping's extra keys
		auth string
		tls  string
		want string // the whole error output, "" for success
	}{
		{name: "ok", sec: "certificate_file: " + cert + ", key_file: " + key("client-key.pem")},
		{name: "key through symlink inside", sec: "certificate_file: " + cert + ", key_file: " + key("alias-key.pem")},
		{name: "key readable by others", sec: "certificate_file: " + cert + ", key_file: " + key("open-key.pem"),
			want: "c.yaml:7: plcs[0].security.key_file: key file " + key("open-key.pem") + " is readable by group or others (mode 0644); chmod 600 " + key("open-key.pem")},
		{name: "key readable by group", sec: "certificate_file: " + cert + ", key_file: " + key("group-key.pem"),
			want: "c.yaml:7: plcs[0].security.key_file: key file " + key("group-key.pem") + " is readable by group or others (mode 0640); chmod 600 " + key("group-key.pem")},
		{name: "symlink escaping", sec: "certificate_file: " + cert + ", key_file: " + key("escape-key.pem"),
			want: "c.yaml:7: plcs[0].security.key_file: " + key("escape-key.pem") + " resolves to " + filepath.Join(outside, "client-key.pem") + ", which is not in an allowed directory (" + dir + ")"},
		{name: "outside", sec: "certificate_file: " + cert + ", key_file: " + filepath.Join(outside, "client-key.pem"),
			want: "c.yaml:7: plcs[0].security.key_file: " + filepath.Join(outside, "client-key.pem") + " is not in an allowed directory (" + dir + ")"},
		{name: "dot-dot", sec: "certificate_file: " + dir + "/../home/client-key.pem, key_file: " + key("client-key.pem"),
			want: "c.yaml:7: plcs[0].security.certificate_file: " + dir + "/../home/client-key.pem is not in an allowed directory (" + dir + ")"},
		{name: "key of another certificate", sec: "certificate_file: " + cert + ", key_file: " + key("other-key.pem"),
			want: "c.yaml:7: plcs[0].security.key_file: key " + key("other-key.pem") + " does not match certificate " + cert},
		{name: "key as certificate", sec: "certificate_file: " + key("client-key.pem") + ", key_file: " + key("client-key.pem"),
			want: "c.yaml:7: plcs[0].security.certificate_file: certificate file " + key("client-key.pem") + ": not a valid certificate"},
		{name: "user certificate", auth: "certificate_file: " + filepath.Join(dir, "other-cert.pem") + ", key_file: " + key("other-key.pem")},
		{name: "user key readable by others", auth: "certificate_file: " + filepath.Join(dir, "other-cert.pem") + ", key_file: " + key("open-key.pem"),
			want: "c.yaml:8: plcs[0].auth.key_file: key file " + key("open-key.pem") + " is readable by group or others (mode 0644); chmod 600 " + key("open-key.pem")},
		{name: "mqtt tls", tls: "ca_file: " + cert + ", cert_file: " + cert + ", key_file: " + key("client-key.pem")},
		{name: "mqtt tls key readable by others", tls: "cert_file: " + cert + ", key_file: " + key("open-key.pem"),
			want: "c.yaml:4: mqtt.tls.key_file: key file " + key("open-key.pem") + " is readable by group or others (mode 0644); chmod 600 " + key("open-key.pem")},
		{name: "mqtt tls outside", tls: "ca_file: " + filepath.Join(outside, "client-key.pem"),
			want: "c.yaml:4: mqtt.tls.ca_file: " + filepath.Join(outside, "client-key.pem") + " is not in an allowed directory (" + dir + ")"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			policy := "{policy: None, mode: None}"
			if tc.sec != "" {
				policy = "{policy: Basic256Sha256, mode: SignAndEncrypt, " + tc.sec + "}"
			}
			auth := "{}"
			if tc.auth != "" {
				auth = "{" + tc.auth + "}"
			}
			tls := "{}"
			if tc.tls != "" {
				tls = "{" + tc.tls + "}"
			}
			yml := "agent: {id: ipc01, allowed_cert_dirs: [" + dir + "]}\n" +
				"mqtt:\n" +
				"  url: ssl://127.0.0.1:8883\n" +
				"  tls: " + tls + "\n" +
				"plcs:\n" +
				"  - name: press1\n" +
				"    security: " + policy + "\n" +
				"    auth: " + auth + "\n" +
				"    endpoint: opc.tcp://10.0.0.5:4840\n" +
				"    tags: [{node: ns=2;s=Temp}]\n"
			c, err := Parse("c.yaml", []byte(yml))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("%v\n%s", err, yml)
				}
				if c.PLCs[0].Security.VerifyHostname != true || c.PLCs[0].Security.Trust != "full" {
					t.Errorf("defaults: %+v", c.PLCs[0].Security)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("errors:\n%v\nwant:\n%s", err, tc.want)
			}
			for _, secret := range []string{"PRIVATE KEY", string(data[40:80])} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows key material")
				}
			}
		})
	}
}

func TestSecurityOptions(t *testing.T) {
	yml := `agent: {id: ipc01, pki_dir: /var/lib/tb/pki}
plcs:
  - name: press1
    endpoint: opc.tcp://10.0.0.5:4840
    security: {policy: None, trust: fingerprint, trusted_fingerprints: ["ab:cd"], auto_accept: force, verify_hostname: false, allow_sha1: true, allow_unknown_revocation: true}
    tags: [{node: ns=2;s=Temp}]
  - name: press2
    endpoint: opc.tcp://10.0.0.6:4840
    security: {pki_dir: /srv/pki, auto_accept: true}
    tags: [{node: ns=2;s=Temp}]
`
	_, err := Parse("c.yaml", []byte(yml))
	if err == nil || !strings.Contains(err.Error(), `trusted_fingerprints[0]: "ab:cd" is not a SHA-256 fingerprint`) {
		t.Fatalf("err = %v", err)
	}
	c, err := Parse("c.yaml", []byte(strings.Replace(yml, `"ab:cd"`, strings.Repeat("ab", 32), 1)))
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := c.PLCs[0].Security, c.PLCs[1].Security
	o := s1.VerifyOptions("press1")
	if o.Trust != certs.TrustFingerprint || o.AutoAccept != certs.AutoAcceptForce || o.Peer != "press1" || !o.AllowSHA1 || !o.AllowUnknownRevocation || len(o.TrustedFingerprints) != 1 {
		t.Errorf("VerifyOptions = %+v", o)
	}
	if s1.VerifyHostname || !s2.VerifyHostname {
		t.Errorf("verify_hostname = %v, %v", s1.VerifyHostname, s2.VerifyHostname)
	}
	if s1.PKIDir != "/var/lib/tb/pki" || s2.PKIDir != "/srv/pki" {
		t.Errorf("pki_dir = %q, %q", s1.PKIDir, s2.PKIDir)
	}
	if s2.VerifyOptions("x").AutoAccept != certs.AutoAcceptOn || s2.Trust != "full" || s2.Mode != "None" {
		t.Errorf("press2: %+v", s2)
	}
}
