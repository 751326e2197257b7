package opcua

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"

	"github.com/tagbridge/tagbridge/internal/testutil"
)

func TestSelectEndpoint(t *testing.T) {
	uri := func(name string) string { return "http://opcfoundation.org/UA/SecurityPolicy#" + name }
	tokens := []*ua.UserTokenPolicy{{PolicyID: "anon", TokenType: ua.UserTokenTypeAnonymous}}
	ep := func(policy string, mode ua.MessageSecurityMode, level uint8) *ua.EndpointDescription {
		return &ua.EndpointDescription{SecurityPolicyURI: uri(policy), SecurityMode: mode, SecurityLevel: level, UserIdentityTokens: tokens}
	}
	offered := []*ua.EndpointDescription{
		ep("None", ua.MessageSecurityModeNone, 0),
		ep("Basic128Rsa15", ua.MessageSecurityModeSignAndEncrypt, 9),
		ep("Basic256Sha256", ua.MessageSecurityModeSign, 3),
		ep("Basic256Sha256", ua.MessageSecurityModeSignAndEncrypt, 4),
		ep("Aes128_Sha256_RsaOaep", ua.MessageSecurityModeSignAndEncrypt, 5),
		ep("ECC_nistP384", ua.MessageSecurityModeSignAndEncrypt, 15),
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const offers = "the server offers None/None, Basic128Rsa15/SignAndEncrypt, Basic256Sha256/Sign, Basic256Sha256/SignAndEncrypt, Aes128_Sha256_RsaOaep/SignAndEncrypt, ECC_nistP384/SignAndEncrypt"
	tests := []struct {
		name                  string
		policy, mode          string
		allowNone, deprecated bool
		key                   crypto.PublicKey
		token                 ua.UserTokenType
		want                  *ua.EndpointDescription
		err                   string
	}{
		{name: "exact", policy: "Basic256Sha256", mode: "Sign", want: offered[2]},
		{name: "exact none", policy: "None", mode: "None", want: offered[0]},
		// ECC_nistP384 has the highest level, but the agent's key is RSA.
		{name: "auto takes the highest level the agent can use", policy: "auto", want: offered[4]},
		{name: "auto with deprecated allowed", policy: "auto", deprecated: true, want: offered[1]},
		{name: "auto restricted to a mode", policy: "auto", mode: "Sign", want: offered[2]},
		{name: "auto never None unless allowed", policy: "auto", mode: "None", err: "no matching endpoint for auto/None; " + offers},
		{name: "auto None allowed", policy: "auto", mode: "None", allowNone: true, want: offered[0]},
		{name: "auto with an ECDSA key: no RSA policy fits", policy: "auto", key: ecKey.Public(), allowNone: true, want: offered[0]},
		{name: "missing", policy: "Aes256_Sha256_RsaPss", mode: "Sign", err: "no matching endpoint for Aes256_Sha256_RsaPss/Sign; " + offers},
		{name: "exact with a key the policy cannot use", policy: "Basic256Sha256", mode: "Sign", key: ecKey.Public(),
			err: "endpoint Basic256Sha256/Sign: the agent certificate does not fit: "},
		{name: "auto with no endpoint for the user", policy: "auto", token: ua.UserTokenTypeUserName,
			err: "no matching endpoint for auto; " + offers + "; not usable here: Basic256Sha256/Sign (does not accept user name users)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.key
			if key == nil {
				key = rsaKey.Public()
			}
			got, err := selectEndpoint(offered, endpointNeeds{policy: tc.policy, mode: tc.mode, allowNone: tc.allowNone,
				allowDeprecated: tc.deprecated, key: key, token: tc.token})
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				if strings.HasPrefix(tc.err, "no matching") && !errors.Is(err, ErrNoEndpoint) {
					t.Fatalf("error %v does not wrap ErrNoEndpoint", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// secureFixture is an agent certificate in an allowed directory and a trust store.
type secureFixture struct {
	dir, cert, key, pki string
}

func newSecureFixture(t *testing.T) secureFixture {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM, err := certs.Generate(certs.Options{AgentID: "sectest", Hostname: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	f := secureFixture{dir: dir, cert: filepath.Join(dir, "client-cert.pem"), key: filepath.Join(dir, "client-key.pem"), pki: filepath.Join(dir, "pki")}
	if err := os.WriteFile(f.cert, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// config loads a one-PLC configuration with the given security and auth
// YAML flow mappings.
func (f secureFixture) config(t *testing.T, endpoint, security, auth string) config.PLC {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "agent: {id: sectest, allowed_cert_dirs: [%s], pki_dir: %s}\nplcs:\n  - name: peer\n    endpoint: %s\n", f.dir, f.pki, endpoint)
	fmt.Fprintf(&b, "    publishing_interval: 50ms\n    reconnect: {min: 200ms, max: 1s}\n")
	fmt.Fprintf(&b, "    security: {certificate_file: %s, key_file: %s, %s}\n", f.cert, f.key, security)
	if auth != "" {
		fmt.Fprintf(&b, "    auth: {%s}\n", auth)
	}
	b.WriteString("    tags:\n")
	for _, line := range strings.Split(strings.TrimRight(simprocTags(4), "\n"), "\n")[1:] {
		fmt.Fprintf(&b, "    %s\n", line)
	}
	cfg, err := config.Parse("test.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return cfg.PLCs[0]
}

// simprocTags is plcsim's -print-tags output, which the peer's node ids match.
func simprocTags(n int) string {
	var b strings.Builder
	b.WriteString("tags:\n")
	kinds := []string{"Double", "Int32", "Boolean", "String"}
	for i := range n {
		k := kinds[i%4]
		fmt.Fprintf(&b, "  - name: %s_%04d\n    node: \"ns=1;s=%s.%04d\"\n", strings.ToLower(k), i, k, i)
	}
	return b.String()
}

// Values flow over every policy and mode the peer offers, with anonymous,
// user name and X.509 user identities.
func TestSecureSessionsAgainstNodeOPCUA(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node-opcua")
	}
	peer := peerproc.Start(t, peerproc.Options{
		Tags:      4,
		Policies:  []string{"None", "Basic128Rsa15", "Basic256", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"},
		Modes:     []string{"None", "Sign", "SignAndEncrypt"},
		Users:     map[string]string{"operator": "correct horse"},
		X509Users: true,
		// 2 s tokens, so that every case shows renewals.
		TokenLifetime: 2 * time.Second, MinTokenLifetime: time.Second,
	})
	t.Setenv("PEER_PASS", "correct horse")
	f := newSecureFixture(t)
	trust := "trust: fingerprint_and_expiry, auto_accept: true, verify_hostname: false, allow_deprecated: true"
	type secCase struct{ name, security, auth, session, identity string }
	cases := []secCase{
		{"None anonymous", "policy: None, mode: None", "", "#None None)", "AnonymousIdentityToken"},
		{"None user name", "policy: None, mode: None", "username: operator, password_env: PEER_PASS", "#None None)", "UserNameIdentityToken"},
		{"auto", "policy: auto, " + trust, "", "#Aes256_Sha256_RsaPss SignAndEncrypt)", "AnonymousIdentityToken"},
	}
	identities := []struct{ name, auth, token string }{
		{"anonymous", "", "AnonymousIdentityToken"},
		{"user name", "username: operator, password_env: PEER_PASS", "UserNameIdentityToken"},
		{"X.509 user", fmt.Sprintf("certificate_file: %s, key_file: %s", f.cert, f.key), "X509IdentityToken"},
	}
	for _, p := range []string{"Basic128Rsa15", "Basic256", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"} {
		for _, m := range []string{"Sign", "SignAndEncrypt"} {
			for _, id := range identities {
				cases = append(cases, secCase{p + "/" + m + "/" + id.name, "policy: " + p + ", mode: " + m + ", " + trust, id.auth, "#" + p + " " + m + ")", id.token})
			}
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := peer.Log()
			plc := f.config(t, peer.Endpoint, tc.security, tc.auth)
			plc.TokenLifetime = config.Duration(2 * time.Second)
			r, s := startSessionValue(t, plc)
			waitUntil(t, "values from every tag", 30*time.Second, func() bool { return r.tagsSeen() == 4 })
			waitUntil(t, "a token renewal", 30*time.Second, func() bool { return LinkOf(s.States().Snapshot()[0]).TokenRenewals >= 1 })
			r.shutdown(t)
			if st := s.States().Snapshot()[0]; tc.name != "auto" {
				identity := map[string]string{"AnonymousIdentityToken": "anonymous", "UserNameIdentityToken": "username", "X509IdentityToken": "x509"}[tc.identity]
				t.Logf("MATRIX node-opcua %s %s %s values=%d renewals=%d", LinkOf(st).Policy, LinkOf(st).Mode, identity, st.Values, LinkOf(st).TokenRenewals)
			}
			if logs := r.logs.String(); strings.Contains(logs, "correct horse") {
				t.Errorf("the password appears in the log:\n%s", logs)
			}
			// The peer saw the session with the right security and identity.
			news := strings.TrimPrefix(peer.Log(), before)
			if !strings.Contains(news, "session created: tagbridge peer (http://opcfoundation.org/UA/SecurityPolicy"+tc.session) {
				t.Errorf("peer log lacks a session %q:\n%s", tc.session, news)
			}
			// The CreateSession checks run on the session itself: no probe.
			if strings.Contains(news, "session created: tagbridge certificate check") {
				t.Errorf("a probe session was created:\n%s", news)
			}
			if !strings.Contains(news, "session activated: "+tc.identity) {
				t.Errorf("peer log lacks activation with %s:\n%s", tc.identity, news)
			}
		})
	}
}

// An untrusted server certificate stops the session with an error naming the
// rejected file; moving that file into trusted/certs lets data flow at the
// next retry, without a restart.
func TestSecureSessionUntrustedThenTrusted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node-opcua")
	}
	peer := peerproc.Start(t, peerproc.Options{Tags: 4, Policies: []string{"Basic256Sha256"}, Modes: []string{"SignAndEncrypt"}})
	f := newSecureFixture(t)
	r := startSession(t, f.config(t, peer.Endpoint, "policy: Basic256Sha256, mode: SignAndEncrypt, trust: fingerprint, verify_hostname: false", ""))
	waitUntil(t, "the untrusted-certificate error", 15*time.Second, func() bool {
		return strings.Contains(r.logs.String(), "rejected")
	})
	rejected, _ := filepath.Glob(filepath.Join(f.pki, "rejected", "certs", "*"))
	if len(rejected) != 1 {
		t.Fatalf("rejected/certs holds %v, want one certificate\n%s", rejected, r.logs)
	}
	if logs := r.logs.String(); !strings.Contains(logs, "mv ") || !strings.Contains(logs, filepath.Base(rejected[0])) {
		t.Errorf("the error does not tell how to trust the certificate:\n%s", logs)
	}
	if r.tagsSeen() != 0 {
		t.Fatal("values from an untrusted server")
	}
	trusted := filepath.Join(f.pki, "trusted", "certs", filepath.Base(rejected[0]))
	if err := os.Rename(rejected[0], trusted); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("session log:\n%s", r.logs)
		}
	})
	waitUntil(t, "values after trusting the certificate", 30*time.Second, func() bool { return r.tagsSeen() == 4 })
}

func TestSecureSessionRefusals(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node-opcua")
	}
	peer := peerproc.Start(t, peerproc.Options{Tags: 4, Policies: []string{"Basic256Sha256"}, Modes: []string{"SignAndEncrypt"},
		Users: map[string]string{"operator": "correct horse"}})
	f := newSecureFixture(t)
	t.Setenv("WRONG_PASS", "battery staple")
	tests := []struct{ name, security, auth, want string }{
		{"no such endpoint", "policy: Aes256_Sha256_RsaPss, mode: Sign", "",
			"no matching endpoint for Aes256_Sha256_RsaPss/Sign; the server offers Basic256Sha256/SignAndEncrypt"},
		{"wrong password", "policy: Basic256Sha256, mode: SignAndEncrypt, trust: fingerprint, auto_accept: true, verify_hostname: false",
			"username: operator, password_env: WRONG_PASS", "BadUserAccessDenied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := startSession(t, f.config(t, peer.Endpoint, tc.security, tc.auth))
			waitUntil(t, tc.want, 15*time.Second, func() bool { return strings.Contains(r.logs.String(), tc.want) })
			if strings.Contains(r.logs.String(), "battery staple") {
				t.Errorf("the password appears in the log")
			}
			if r.tagsSeen() != 0 {
				t.Error("values despite the refusal")
			}
		})
	}
}

// serverCert writes a self-signed server certificate and key made to order.
func serverCert(t *testing.T, notBefore, notAfter time.Time, appURI string, hosts ...string) (certFile, keyFile, fingerprint string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(appURI)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "test peer " + appURI},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
	}
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "localhost"}
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "server-cert.pem"), filepath.Join(dir, "server-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, certs.Fingerprint(der)
}

// Certificates the trust checks refuse, served by a real peer.
func TestSecureSessionRefusesBadServerCertificates(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node-opcua")
	}
	const peerURI = "urn:tagbridge:opcua-peer"
	now := time.Now()
	tests := []struct {
		name                string
		notBefore, notAfter time.Time
		certURI, trust      string
		want                string
		hosts               []string
	}{
		{"expired", now.Add(-48 * time.Hour), now.Add(-24 * time.Hour), peerURI, "fingerprint_and_expiry", "expired on", nil},
		{"not yet valid", now.Add(24 * time.Hour), now.Add(48 * time.Hour), peerURI, "fingerprint_and_expiry", "valid from", nil},
		{"wrong ApplicationURI", now.Add(-time.Hour), now.Add(24 * time.Hour), "urn:someone:else", "fingerprint", `has ApplicationURI \"urn:someone:else\", the server says \"urn:tagbridge:opcua-peer\"`, nil},
		{"host name mismatch", now.Add(-time.Hour), now.Add(24 * time.Hour), peerURI, "fingerprint", `is for DNS:press7.plant, not \"127.0.0.1\"`, []string{"press7.plant"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certFile, keyFile, fp := serverCert(t, tc.notBefore, tc.notAfter, tc.certURI, tc.hosts...)
			peer := peerproc.Start(t, peerproc.Options{Tags: 4, Policies: []string{"Basic256Sha256"}, Modes: []string{"SignAndEncrypt"},
				CertFile: certFile, KeyFile: keyFile, ApplicationURI: peerURI})
			f := newSecureFixture(t)
			r := startSession(t, f.config(t, peer.Endpoint, fmt.Sprintf("policy: Basic256Sha256, mode: SignAndEncrypt, trust: %s, trusted_fingerprints: [%q]", tc.trust, fp), ""))
			waitUntil(t, tc.want, 20*time.Second, func() bool { return strings.Contains(r.logs.String(), tc.want) })
			if r.tagsSeen() != 0 {
				t.Error("values despite the refusal")
			}
		})
	}
}

// Trust on first use: the first certificate is pinned; a different one at the
// same endpoint later is refused as a possible man in the middle.
func TestSecureSessionTrustOnFirstUseRefusesAChangedCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node-opcua")
	}
	const peerURI = "urn:tagbridge:opcua-peer"
	certA, keyA, _ := serverCert(t, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), peerURI)
	opts := peerproc.Options{Tags: 4, Policies: []string{"Basic256Sha256"}, Modes: []string{"SignAndEncrypt"}, CertFile: certA, KeyFile: keyA, ApplicationURI: peerURI}
	peer := peerproc.Start(t, opts)
	f := newSecureFixture(t)
	plc := f.config(t, peer.Endpoint, "policy: Basic256Sha256, mode: SignAndEncrypt, trust: fingerprint_and_expiry, auto_accept: true", "")
	r := startSession(t, plc)
	waitUntil(t, "values on first use", 20*time.Second, func() bool { return r.tagsSeen() == 4 })
	r.shutdown(t)
	peer.Kill()

	certB, keyB, _ := serverCert(t, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), peerURI)
	opts.CertFile, opts.KeyFile = certB, keyB
	port, _ := strconv.Atoi(peer.Port())
	opts.Port = port
	peerproc.Start(t, opts)
	r2 := startSession(t, plc)
	waitUntil(t, "the changed-certificate refusal", 20*time.Second, func() bool {
		return strings.Contains(r2.logs.String(), "differs from the certificate trusted on first use")
	})
	if r2.tagsSeen() != 0 {
		t.Error("values from a changed certificate")
	}
}

// A PLC certificate issued by a plant CA and revoked by the CA's CRL in the
// trust store: refused in full trust mode.
func TestSecureSessionRefusesRevokedCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node-opcua")
	}
	const peerURI = "urn:tagbridge:opcua-peer"
	now := time.Now()
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "plant CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(peerURI)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "press9"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, URIs: []*url.URL{u},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(42), RevocationTime: now.Add(-time.Minute)}},
	}, ca, caKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testutil.WriteFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), 0o644)
	testutil.WriteFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)

	peer := peerproc.Start(t, peerproc.Options{Tags: 4, Policies: []string{"Basic256Sha256"}, Modes: []string{"SignAndEncrypt"},
		CertFile: certFile, KeyFile: keyFile, ApplicationURI: peerURI})
	f := newSecureFixture(t)
	store, err := certs.OpenStore(f.pki)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WriteFile(t, filepath.Join(store.Path(certs.TrustedCerts), "plant-ca.der"), caDER, 0o644)
	testutil.WriteFile(t, filepath.Join(store.Path(certs.TrustedCRL), "plant-ca.crl"), crl, 0o644)

	r := startSession(t, f.config(t, peer.Endpoint, "policy: Basic256Sha256, mode: SignAndEncrypt, trust: full", ""))
	waitUntil(t, "the revocation refusal", 20*time.Second, func() bool {
		return strings.Contains(r.logs.String(), `was revoked by \"plant CA\"`)
	})
	if r.tagsSeen() != 0 {
		t.Error("values from a revoked certificate")
	}
}

// Secure channel tokens of 3 s are renewed again and again while every
// change of every counter arrives. TAGBRIDGE_SOAK=2m runs it for longer.
func TestSecureSessionRenewsShortTokensWithoutGaps(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node-opcua")
	}
	run := 15 * time.Second
	if d, err := time.ParseDuration(os.Getenv("TAGBRIDGE_SOAK")); err == nil {
		run = d
	}
	peer := peerproc.Start(t, peerproc.Options{Tags: 8, Policies: []string{"Basic256Sha256"}, Modes: []string{"SignAndEncrypt"},
		TokenLifetime: 3 * time.Second, MinTokenLifetime: time.Second})
	f := newSecureFixture(t)
	plc := f.config(t, peer.Endpoint, "policy: Basic256Sha256, mode: SignAndEncrypt, trust: fingerprint, auto_accept: true", "")
	plc.TokenLifetime = config.Duration(3 * time.Second)
	for i := range plc.Tags {
		plc.Tags[i].SamplingInterval = 0 // node-opcua samples on a timer otherwise
	}
	r := startSession(t, plc)
	waitUntil(t, "first values", 20*time.Second, func() bool { return r.tagsSeen() == 4 })
	start := time.Now()
	time.Sleep(run) // the soak itself: values must keep flowing across renewals
	r.shutdown(t)

	renewals := strings.Count(peer.Log(), "Renew requested")
	if want := int(run/(3*time.Second*3/4)) - 2; renewals < want {
		t.Errorf("%d token renewals in %v, want at least %d", renewals, run, want)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ss := r.samples["int32_0001"]
	if len(ss) < int(time.Since(start)/(150*time.Millisecond)) {
		t.Fatalf("only %d values of the counter in %v", len(ss), time.Since(start))
	}
	for i := 1; i < len(ss); i++ {
		if a, b := ss[i-1].Any().(int32), ss[i].Any().(int32); b != a+1 {
			t.Fatalf("counter went from %d to %d at value %d: a gap across renewals", a, b, i)
		}
	}
	t.Logf("%d renewals of 3 s tokens in %v; %d counter values without a gap", renewals, run, len(ss))
}
