package opcua

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
)

// A PLC with an older firmware's habits, on one peer: it advertises
// another host than the one it is reached by (plc.invalid, which does not
// resolve), its certificate names only that host, not the address
// configured, and is signed with SHA-1. The agent connects to the
// configured address; the host-name check refuses the certificate until
// accepted_hostnames names plc.invalid (the check is not turned off); trust
// full refuses the SHA-1 signature until allow_sha1, and then warns once,
// naming the certificate.
func TestSessionServerHabits(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, fingerprint := sha1ServerCert(t, dir, "urn:tagbridge:opcua-peer", "plc.invalid")
	peer := peerproc.Start(t, peerproc.Options{Tags: 4, Hostname: "plc.invalid", CertFile: certFile, KeyFile: keyFile})
	endpoint := "opc.tcp://127.0.0.1:" + peer.Endpoint[strings.LastIndex(peer.Endpoint, ":")+1:]
	f := newSecureFixture(t)
	trust := "policy: Basic256Sha256, mode: SignAndEncrypt, trust: full, trusted_fingerprints: [" + fingerprint + "]"
	accepted := ", accepted_hostnames: [plc1.example, plc.invalid]"

	for _, tc := range []struct{ security, want string }{
		{trust + ", allow_sha1: true", `not \"127.0.0.1\"`},
		{trust + accepted, "allow_sha1 permits it"},
	} {
		refused, _ := startSessionValue(t, f.config(t, endpoint, tc.security, ""))
		waitUntil(t, "the refusal "+tc.want, 30*time.Second, func() bool { return strings.Contains(refused.logs.String(), tc.want) })
		refused.shutdown(t)
	}

	r, s := startSessionValue(t, f.config(t, endpoint, trust+accepted+", allow_sha1: true", ""))
	waitUntil(t, "values", 30*time.Second, func() bool { return len(r.counterValues("int32_0001")) >= 5 })
	r.shutdown(t)
	logs := r.logs.String()
	if st := s.States().Snapshot()[0]; st.Reconnects != 0 {
		t.Errorf("%d reconnects, want values on the first connection", st.Reconnects)
	}
	if strings.Contains(logs, "verify_hostname is false") || strings.Contains(logs, "does not name the configured host") {
		t.Errorf("the host-name check was turned off:\n%s", logs)
	}
	if got := countLines(logs, `"level":"warn"`, "SHA-1 peer", "is signed with SHA-1, accepted because allow_sha1 is true"); got != 1 {
		t.Errorf("%d warnings naming the SHA-1 certificate, want 1:\n%s", got, logs)
	}
}

// sha1ServerCert writes a self-signed RSA server certificate for host and
// uri signed with SHA-1, which crypto/x509 no longer signs: it is made with
// SHA-256 and its signature replaced.
func sha1ServerCert(t *testing.T, dir, uri, host string) (certFile, keyFile, fingerprint string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(uri)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "SHA-1 peer"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:              []string{host},
		URIs:                  []*url.URL{u},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	der = resignSHA1(t, der, key)
	if c, err := x509.ParseCertificate(der); err != nil || c.SignatureAlgorithm != x509.SHA1WithRSA {
		t.Fatalf("re-signed certificate: %v, %v", err, c)
	}
	certFile, keyFile = filepath.Join(dir, "sha1-cert.pem"), filepath.Join(dir, "sha1-key.pem")
	keyDER := x509.MarshalPKCS1PrivateKey(key)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, certs.Fingerprint(der)
}

// resignSHA1 replaces the signature algorithm (in the TBS and outside) of
// a certificate by sha1WithRSAEncryption and signs it again.
func resignSHA1(t *testing.T, der []byte, key *rsa.PrivateKey) []byte {
	t.Helper()
	var cert struct {
		TBS asn1.RawValue
		Alg asn1.RawValue
		Sig asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &cert); err != nil {
		t.Fatal(err)
	}
	alg, err := asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}, Parameters: asn1.NullRawValue})
	if err != nil {
		t.Fatal(err)
	}
	var fields []asn1.RawValue
	for rest := cert.TBS.Bytes; len(rest) > 0; {
		var f asn1.RawValue
		if rest, err = asn1.Unmarshal(rest, &f); err != nil {
			t.Fatal(err)
		}
		fields = append(fields, f)
	}
	// version [0], serial, signature algorithm, ...
	fields[2] = asn1.RawValue{FullBytes: alg}
	var body []byte
	for _, f := range fields {
		body = append(body, f.FullBytes...)
	}
	tbs, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(tbs)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA1, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	out, err := asn1.Marshal(struct {
		TBS asn1.RawValue
		Alg asn1.RawValue
		Sig asn1.BitString
	}{asn1.RawValue{FullBytes: tbs}, asn1.RawValue{FullBytes: alg}, asn1.BitString{Bytes: sig, BitLength: len(sig) * 8}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A program download renumbers the PLC's namespaces while the session
// lives (the peer moves its variables to a new index that takes over
// their namespace URI): nsu= node ids are resolved again and the values
// go on from the moved variables, without a reconnect.
func TestSessionFollowsRenumberedNamespaces(t *testing.T) {
	peer := peerproc.Start(t, peerproc.Options{Tags: 8, Args: []string{"-renumber-after", "2s"}})
	tags := strings.ReplaceAll(simprocTags(8), "ns=1;", "nsu=urn:tagbridge:plcsim;")
	r, s := startSessionValue(t, recoveryPLCTags(t, peer.Endpoint, "", tags))
	r.waitValues(t, "first values", 10, 30*time.Second)
	peer.WaitLog(regexp.MustCompile(`namespaces renumbered`), 1, 30*time.Second)
	// The old variables stop changing: values go on only from the new index.
	r.waitValues(t, "values from the renumbered namespace", 20, 30*time.Second)
	r.shutdown(t)
	if !strings.Contains(r.logs.String(), "namespace table changed") {
		t.Errorf("the change is not logged:\n%s", r.logs)
	}
	if st := s.States().Snapshot()[0]; st.Reconnects != 0 {
		t.Errorf("%d reconnects, want the items made again on the same session", st.Reconnects)
	}
}
