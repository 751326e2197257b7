package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/internal/testutil"
)

func TestGenerate(t *testing.T) {
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	certPEM, keyPEM, err := Generate(Options{AgentID: "line1-ipc01", Hostname: "ipc01", Days: 30, Now: start})
	if err != nil {
		t.Fatal(err)
	}
	cert, der, err := ParseCertificate(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Error("key does not match certificate")
	}
	if key.N.BitLen() != 2048 {
		t.Errorf("key size %d, want 2048", key.N.BitLen())
	}
	if cert.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Errorf("signature algorithm %s", cert.SignatureAlgorithm)
	}
	if uri, _ := ApplicationURI(cert); uri != "urn:ipc01:tagbridge:line1-ipc01" {
		t.Errorf("ApplicationURI %q", uri)
	}
	if !slices.Equal(cert.DNSNames, []string{"ipc01"}) {
		t.Errorf("DNS names %q", cert.DNSNames)
	}
	wantUsage := x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment
	if cert.KeyUsage&wantUsage != wantUsage {
		t.Errorf("key usage %b lacks %b", cert.KeyUsage, wantUsage)
	}
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("extended key usage %v", cert.ExtKeyUsage)
	}
	if !cert.NotAfter.Equal(start.AddDate(0, 0, 30)) || !cert.NotBefore.Equal(start.Add(-backdate)) {
		t.Errorf("validity %s to %s", cert.NotBefore, cert.NotAfter)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	// The generated certificate passes our own full verification as a trusted anchor.
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	testutil.WriteFile(t, filepath.Join(s.Path(TrustedCerts), "self.der"), der, 0o600)
	if _, err := s.Verify(der, VerifyOptions{Now: start.Add(time.Hour)}); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestGenerateOptions(t *testing.T) {
	if testing.Short() {
		t.Skip("4096-bit key generation is slow")
	}
	_, keyPEM, err := Generate(Options{AgentID: "a", Hostname: "10.0.0.9", KeySize: 3072})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ParseKey(keyPEM)
	if k.N.BitLen() != 3072 {
		t.Errorf("key size %d", k.N.BitLen())
	}
	certPEM, _, err := Generate(Options{AgentID: "a", Hostname: "10.0.0.9"})
	if err != nil {
		t.Fatal(err)
	}
	c, _, _ := ParseCertificate(certPEM)
	if len(c.IPAddresses) != 1 || c.IPAddresses[0].String() != "10.0.0.9" || len(c.DNSNames) != 0 {
		t.Errorf("SANs for an IP host: %v %v", c.IPAddresses, c.DNSNames)
	}
	if d := c.NotAfter.Sub(time.Now()); d < 729*24*time.Hour || d > 731*24*time.Hour {
		t.Errorf("default validity %s", d)
	}
}

func TestGenerateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		msg  string
	}{
		{"no agent", Options{Hostname: "h"}, "agent id required"},
		{"no host", Options{AgentID: "a"}, "host name required"},
		{"key size", Options{AgentID: "a", Hostname: "h", KeySize: 1024}, "key size 1024 not supported (2048, 3072 or 4096)"},
		{"days", Options{AgentID: "a", Hostname: "h", Days: -1}, "days must be positive, got -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := Generate(tc.o); err == nil || err.Error() != tc.msg {
				t.Fatalf("err = %v, want %s", err, tc.msg)
			}
		})
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "client.key")
	if err := WriteFileAtomic(name, []byte("one"), 0o600, false); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(name)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	if err := WriteFileAtomic(name, []byte("two"), 0o600, false); !errors.Is(err, os.ErrExist) {
		t.Fatalf("overwrite without force: %v", err)
	}
	if err := WriteFileAtomic(name, []byte("two"), 0o600, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(name); string(b) != "two" {
		t.Fatalf("content %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

// TestGenerateECC: nistP256 and nistP384 certificates carry a key of their
// curve, signed with the matching digest, usable for key agreement; the
// key file parses as the certificate's key.
func TestGenerateECC(t *testing.T) {
	for _, tc := range []struct {
		keyType string
		curve   elliptic.Curve
		sig     x509.SignatureAlgorithm
	}{
		{KeyTypeNistP256, elliptic.P256(), x509.ECDSAWithSHA256},
		{KeyTypeNistP384, elliptic.P384(), x509.ECDSAWithSHA384},
	} {
		t.Run(tc.keyType, func(t *testing.T) {
			certPEM, keyPEM, err := Generate(Options{AgentID: "line1-ipc01", Hostname: "ipc01", KeyType: tc.keyType})
			if err != nil {
				t.Fatal(err)
			}
			cert, der, err := ParseCertificate(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
			if !ok || pub.Curve != tc.curve {
				t.Fatalf("public key %s, want ECDSA %s", DescribeKey(cert.PublicKey), tc.curve.Params().Name)
			}
			if cert.SignatureAlgorithm != tc.sig {
				t.Errorf("signature algorithm %s, want %s", cert.SignatureAlgorithm, tc.sig)
			}
			key, err := parsePrivateKey(keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			if !pub.Equal(key.Public()) {
				t.Error("key does not match certificate")
			}
			if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "EC PRIVATE KEY" {
				t.Errorf("key PEM block %v", b)
			}
			wantUsage := x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyAgreement
			if cert.KeyUsage&wantUsage != wantUsage || cert.KeyUsage&x509.KeyUsageKeyEncipherment != 0 {
				t.Errorf("key usage %b, want %b and no key encipherment", cert.KeyUsage, wantUsage)
			}
			if uri, _ := ApplicationURI(cert); uri != "urn:ipc01:tagbridge:line1-ipc01" || !slices.Equal(cert.DNSNames, []string{"ipc01"}) {
				t.Errorf("SANs %q %q", uri, cert.DNSNames)
			}
			s, err := OpenStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			testutil.WriteFile(t, filepath.Join(s.Path(TrustedCerts), "self.der"), der, 0o600)
			if _, err := s.Verify(der, VerifyOptions{Now: time.Now()}); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
	certPEM, keyPEM, err := Generate(Options{AgentID: "a", Hostname: "h", KeyType: KeyTypeEd25519})
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := ParseCertificate(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil || cert.SignatureAlgorithm != x509.PureEd25519 || !samePublicKey(cert.PublicKey, key.Public()) {
		t.Errorf("ed25519: %s certificate, key %v (%v)", cert.SignatureAlgorithm, DescribeKey(key.Public()), err)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Errorf("ed25519: not self-signed: %v", err)
	}
	if _, _, err := Generate(Options{AgentID: "a", Hostname: "h", KeyType: "nistP521"}); err == nil || err.Error() != `key type "nistP521" not supported (rsa, nistP256, nistP384, brainpoolP256r1, brainpoolP384r1, ed25519, ed448)` {
		t.Errorf("unknown key type: %v", err)
	}
	if _, _, err := Generate(Options{AgentID: "a", Hostname: "h", KeyType: KeyTypeNistP256, KeySize: 4096}); err == nil || err.Error() != "key size applies to RSA keys, not to key type nistP256" {
		t.Errorf("key size with ECC: %v", err)
	}
}

// TestGenerateBrainpoolEd448: the key types crypto/x509 lacks come out as
// certificates this package reads back (key, SANs, self-signature), with
// the key in the PEM form of their family, and the trust store accepts
// them: from trusted/certs, and on first use (TOFU).
func TestGenerateBrainpoolEd448(t *testing.T) {
	for _, tc := range []struct {
		keyType, describe, pemType string
	}{
		{KeyTypeBrainpoolP256r1, "ECDSA brainpoolP256r1", "EC PRIVATE KEY"},
		{KeyTypeBrainpoolP384r1, "ECDSA brainpoolP384r1", "EC PRIVATE KEY"},
		{KeyTypeEd448, "Ed448", "PRIVATE KEY"},
	} {
		t.Run(tc.keyType, func(t *testing.T) {
			certPEM, keyPEM, err := Generate(Options{AgentID: "line1-ipc01", Hostname: "ipc01", KeyType: tc.keyType})
			if err != nil {
				t.Fatal(err)
			}
			cert, der, err := ParseCertificate(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			if got := DescribeKey(cert.PublicKey); got != tc.describe {
				t.Fatalf("key %s, want %s", got, tc.describe)
			}
			key, err := parsePrivateKey(keyPEM)
			if err != nil || !samePublicKey(cert.PublicKey, key.Public()) {
				t.Fatalf("key file: %v, matches: %v", err, err == nil && samePublicKey(cert.PublicKey, key.Public()))
			}
			if b, _ := pem.Decode(keyPEM); b == nil || b.Type != tc.pemType {
				t.Errorf("key PEM block %v", b)
			}
			if err := checkSignature(cert, cert, false); err != nil {
				t.Errorf("not self-signed: %v", err)
			}
			if uri, _ := ApplicationURI(cert); uri != "urn:ipc01:tagbridge:line1-ipc01" || !slices.Equal(cert.DNSNames, []string{"ipc01"}) {
				t.Errorf("SANs %q %q", uri, cert.DNSNames)
			}
			wantUsage := x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyAgreement
			if cert.KeyUsage&wantUsage != wantUsage {
				t.Errorf("key usage %b, want %b", cert.KeyUsage, wantUsage)
			}
			s, err := OpenStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.Verify(der, VerifyOptions{Now: time.Now(), AutoAccept: AutoAcceptOn, Peer: "plc1"})
			if err != nil || !res.Pending() {
				t.Fatalf("first use: %+v, %v", res, err)
			}
			if err := s.Commit(res); err != nil {
				t.Fatal(err)
			}
			if res, err := s.Verify(der, VerifyOptions{Now: time.Now(), Trust: TrustFull}); err != nil || res.Pending() {
				t.Errorf("pinned: %+v, %v", res, err)
			}
			if _, err := s.Verify(der, VerifyOptions{Now: cert.NotAfter.Add(time.Hour), Trust: TrustFull}); !errors.Is(err, ErrExpired) {
				t.Errorf("after expiry: %v", err)
			}
		})
	}
}
