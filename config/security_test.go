package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	for name, o := range map[string]certs.Options{
		"client":  {},
		"other":   {},
		"expired": {Now: time.Date(2020, 1, 8, 0, 0, 0, 0, time.UTC), Days: 365},
		"future":  {Now: time.Date(2099, 1, 8, 0, 0, 0, 0, time.UTC)},
		"ed":      {KeyType: certs.KeyTypeEd25519},
	} {
		o.AgentID, o.Hostname = name, "ipc01"
		c, k, err := certs.Generate(o)
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name+"-cert.pem"), c, 0o644)
		write(t, filepath.Join(dir, name+"-key.pem"), k, 0o600)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]crypto.Signer{"weak": weak, "ec": ec} {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
			URIs: []*url.URL{{Scheme: "urn", Opaque: "ipc01:tagbridge:" + name}},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name+"-cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
		write(t, filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
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
	pair := func(name string) string {
		return "certificate_file: " + key(name+"-cert.pem") + ", key_file: " + key(name+"-key.pem")
	}

	tests := []struct {
		name   string
		sec    string // the security mapping's extra keys
		auth   string
		tls    string
		policy string // "" for Basic256Sha256
		want   string // the whole error output, "" for success; a final … matches a prefix
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
			want: "c.yaml:7: plcs[0].security.key_file: key " + key("other-key.pem") + " does not match certificate " + cert + " (both RSA 2048-bit, but not the same key)"},
		{name: "expired", sec: pair("expired"),
			want: "c.yaml:7: plcs[0].security.certificate_file: certificate " + key("expired-cert.pem") + " expired on 2021-01-07 00:00:00 UTC (valid from 2020-01-01 00:00:00 UTC to 2021-01-07 00:00:00 UTC; tagbridge certs create writes a new one)"},
		{name: "not yet valid", sec: pair("future"),
			want: "c.yaml:7: plcs[0].security.certificate_file: certificate " + key("future-cert.pem") + " is not valid yet (valid from 2099-01-01 00:00:00 UTC to 2101-01-08 00:00:00 UTC; now is " + time.Now().UTC().Format("2006-01-02") + "…"},
		{name: "RSA 1024", sec: pair("weak"),
			want: "c.yaml:7: plcs[0].security.certificate_file: certificate " + key("weak-cert.pem") + " holds an RSA 1024-bit key; security policy Basic256Sha256 needs an RSA key of 2048 to 4096 bits"},
		{name: "ECC pair", sec: pair("ec"),
			want: "c.yaml:7: plcs[0].security.certificate_file: certificate " + key("ec-cert.pem") + " holds an ECDSA P-256 key; security policy Basic256Sha256 needs an RSA key of 2048 to 4096 bits"},
		{name: "ECC pair, policy auto", sec: pair("ec"), policy: "auto"},
		{name: "weak RSA pair, policy auto", sec: pair("weak"), policy: "auto",
			want: "c.yaml:7: plcs[0].security.certificate_file: certificate " + key("weak-cert.pem") + " holds an RSA 1024-bit key; policy auto (it picks among the policies the key fits) needs an RSA key of 2048 to 4096 bits, or a P-256, P-384, brainpoolP256r1, brainpoolP384r1, Ed25519 or Ed448 key for the ECC policies"},
		{name: "ECC pair, policy ECC_nistP256", sec: pair("ec"), policy: "ECC_nistP256, mode: Sign"},
		{name: "P-256 pair, policy ECC_nistP384", sec: pair("ec"), policy: "ECC_nistP384, mode: SignAndEncrypt",
			want: "c.yaml:7: plcs[0].security.certificate_file: P-256 key, policy ECC_nistP384 needs a P-384 key"},
		{name: "RSA pair, policy ECC_nistP256", sec: "certificate_file: " + cert + ", key_file: " + key("client-key.pem"), policy: "ECC_nistP256, mode: Sign",
			want: "c.yaml:7: plcs[0].security.certificate_file: RSA 2048-bit key, policy ECC_nistP256 needs a P-256 key"},
		{name: "RSA user certificate, policy ECC_nistP256", sec: pair("ec"), policy: "ECC_nistP256, mode: Sign",
			auth: "certificate_file: " + filepath.Join(dir, "other-cert.pem") + ", key_file: " + key("other-key.pem"),
			want: "c.yaml:8: plcs[0].auth.certificate_file: RSA 2048-bit key, policy ECC_nistP256 needs a P-256 key"},
		{name: "ECC user certificate, policy ECC_nistP256", sec: pair("ec"), policy: "ECC_nistP256, mode: Sign", auth: pair("ec")},
		{name: "P-256 pair, policy ECC_curve25519", sec: pair("ec"), policy: "ECC_curve25519, mode: Sign",
			want: "c.yaml:7: plcs[0].security.certificate_file: P-256 key, policy ECC_curve25519 needs an Ed25519 key"},
		{name: "Ed25519 pair and user, policy ECC_curve25519", sec: pair("ed"), policy: "ECC_curve25519, mode: SignAndEncrypt", auth: pair("ed")},
		{name: "Ed25519 pair, policy auto", sec: pair("ed"), policy: "auto"},
		{name: "P-256 pair, policy ECC_nistP256_AesGcm", sec: pair("ec"), policy: "ECC_nistP256_AesGcm, mode: SignAndEncrypt"},
		{name: "Ed25519 pair, policy ECC_nistP256_ChaChaPoly", sec: pair("ed"), policy: "ECC_nistP256_ChaChaPoly, mode: Sign",
			want: "c.yaml:7: plcs[0].security.certificate_file: Ed25519 key, policy ECC_nistP256_ChaChaPoly needs a P-256 key"},
		{name: "Ed25519 pair, policy ECC_nistP256", sec: pair("ed"), policy: "ECC_nistP256, mode: Sign",
			want: "c.yaml:7: plcs[0].security.certificate_file: Ed25519 key, policy ECC_nistP256 needs a P-256 key"},
		{name: "ECC certificate, RSA key", sec: "certificate_file: " + key("ec-cert.pem") + ", key_file: " + key("client-key.pem"),
			want: "c.yaml:7: plcs[0].security.key_file: key " + key("client-key.pem") + " (RSA 2048-bit) does not match certificate " + key("ec-cert.pem") + " (ECDSA P-256)"},
		{name: "RSA certificate, ECC key", sec: "certificate_file: " + cert + ", key_file: " + key("ec-key.pem"),
			want: "c.yaml:7: plcs[0].security.key_file: key " + key("ec-key.pem") + " (ECDSA P-256) does not match certificate " + cert + " (RSA 2048-bit)"},
		{name: "user certificate RSA 1024", auth: pair("weak"),
			want: "c.yaml:8: plcs[0].auth.certificate_file: certificate " + key("weak-cert.pem") + " holds an RSA 1024-bit key; an X.509 user identity needs an RSA key of 2048 to 4096 bits"},
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
				if tc.policy != "" {
					policy = "{policy: " + tc.policy + ", " + tc.sec + "}"
				}
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
			prefix, isPrefix := strings.CutSuffix(tc.want, "…")
			if err == nil || err.Error() != tc.want && !(isPrefix && strings.HasPrefix(err.Error(), prefix)) {
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
