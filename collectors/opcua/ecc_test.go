package opcua

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/scripts/open62541/o62proc"
)

// eccPLC is an entry for endpoint with an agent certificate of keyType (and
// an X.509 user of the same curve when auth is "x509", the test user when
// "username"), security as given, trust on first use, through the real
// config path.
func eccPLC(t *testing.T, endpoint, keyType, security, auth string) config.PLC {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte, perm os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, perm); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certPEM, keyPEM, err := certs.Generate(certs.Options{AgentID: "ecctest", Hostname: "localhost", KeyType: keyType})
	if err != nil {
		t.Fatal(err)
	}
	cert, key := write("client-cert.pem", certPEM, 0o644), write("client-key.pem", keyPEM, 0o600)
	var b strings.Builder
	fmt.Fprintf(&b, "agent: {id: ecctest, allowed_cert_dirs: [%s], pki_dir: %s}\nplcs:\n  - name: peer\n    endpoint: %s\n", dir, filepath.Join(dir, "pki"), endpoint)
	fmt.Fprintf(&b, "    security: {certificate_file: %s, key_file: %s, %s, auto_accept: true}\n", cert, key, security)
	switch auth {
	case "username":
		b.WriteString("    auth: {username: integrations, password_env: TAGBRIDGE_TEST_ECC_PW}\n")
	case "x509":
		userPEM, userKey, err := certs.Generate(certs.Options{AgentID: "ecctest-user", Hostname: "localhost", KeyType: keyType})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "    auth: {certificate_file: %s, key_file: %s}\n", write("user-cert.pem", userPEM, 0o644), write("user-key.pem", userKey, 0o600))
	}
	b.WriteString("    publishing_interval: 50ms\n    sampling_interval: 20ms\n    queue_size: 200\n    reconnect: {min: 100ms, max: 500ms}\n")
	for _, line := range strings.Split(strings.TrimRight(o62Tags(8), "\n"), "\n") {
		fmt.Fprintf(&b, "    %s\n", line)
	}
	cfg, err := config.Parse("test.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return cfg.PLCs[0]
}

// TestSessionECC streams values from open62541 over ECC_nistP256 and
// ECC_nistP384 with the agent's own Session, each curve with its certificate
// and identity, 3 s tokens renewed on the way; policy auto with a P-384
// certificate picks ECC_nistP384 (Basic256Sha256 has the higher level,
// but needs an RSA key).
func TestSessionECC(t *testing.T) {
	t.Setenv("TAGBRIDGE_TEST_ECC_PW", "integrations-pw")
	srv := o62proc.Start(t, o62proc.Options{Tags: 8, Interval: 100 * time.Millisecond, TokenLifetime: 3 * time.Second,
		Policies: []string{"None", "Basic256Sha256", "ECC_nistP256", "ECC_nistP384", "ECC_curve25519", "ECC_nistP256_AesGcm", "ECC_nistP256_ChaChaPoly"}})
	cases := []struct {
		name, keyType, security, auth, wantPolicy string
	}{
		{"ECC_nistP256 SignAndEncrypt/username", certs.KeyTypeNistP256, "policy: ECC_nistP256, mode: SignAndEncrypt, trust: fingerprint_and_expiry", "username", "ECC_nistP256"},
		{"ECC_nistP384 Sign/X.509 user", certs.KeyTypeNistP384, "policy: ECC_nistP384, mode: Sign, trust: fingerprint_and_expiry", "x509", "ECC_nistP384"},
		// Full verification of open62541's P-384 certificate: chain, key
		// usage, host name, ApplicationURI.
		{"auto with a P-384 certificate/anonymous/trust full", certs.KeyTypeNistP384, "policy: auto, trust: full", "", "ECC_nistP384"},
		{"ECC_curve25519 SignAndEncrypt/username/trust full", certs.KeyTypeEd25519, "policy: ECC_curve25519, mode: SignAndEncrypt, trust: full", "username", "ECC_curve25519"},
		{"ECC_nistP256_AesGcm SignAndEncrypt/X.509 user", certs.KeyTypeNistP256, "policy: ECC_nistP256_AesGcm, mode: SignAndEncrypt, trust: full", "x509", "ECC_nistP256_AesGcm"},
		{"ECC_nistP256_ChaChaPoly Sign/username", certs.KeyTypeNistP256, "policy: ECC_nistP256_ChaChaPoly, mode: Sign, trust: full", "username", "ECC_nistP256_ChaChaPoly"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, s := startSessionValue(t, shortTokens(eccPLC(t, srv.Endpoint, tc.keyType, tc.security, tc.auth)))
			waitUntil(t, "three token renewals", 60*time.Second, func() bool { return s.Status().Snapshot()[0].TokenRenewals >= 3 })
			r.shutdown(t)
			st := s.Status().Snapshot()[0]
			if st.TokenRenewalFailures != 0 || st.Reconnects != 0 {
				t.Errorf("status %+v: want renewals on one channel, no failure or reconnect", st)
			}
			if st.Policy != tc.wantPolicy {
				t.Errorf("security policy %q, want %q", st.Policy, tc.wantPolicy)
			}
			checkNoGap(t, r, 40)
			t.Logf("%s: %d values of int32_0001, %d renewals", st.Policy, len(r.counterValues("int32_0001")), st.TokenRenewals)
		})
	}
}
