package certs

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/internal/testutil"
)

// testPKI is a root CA, an intermediate CA and certificates they issued.
type testPKI struct {
	root, inter, leaf *issued
}

func newPKI(t *testing.T) testPKI {
	t.Helper()
	root := mkCert(t, certSpec{cn: "Plant Root CA", ca: true, key: key(t, 1), serial: 1}, nil)
	inter := mkCert(t, certSpec{cn: "Plant Issuing CA", ca: true, key: key(t, 2), serial: 2}, root)
	leaf := mkCert(t, certSpec{cn: "plc1", key: key(t, 3), serial: 3, dns: []string{"plc1"}, uri: "urn:plc1:server"}, inter)
	return testPKI{root, inter, leaf}
}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := OpenStore(filepath.Join(t.TempDir(), "pki"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// put writes files into the store: a *issued as DER (PEM for names ending in .pem), []byte as is.
func put(t *testing.T, s *Store, sub, name string, v any) {
	t.Helper()
	var data []byte
	switch v := v.(type) {
	case *issued:
		data = v.cert.Raw
		if strings.HasSuffix(name, ".pem") {
			data = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: v.cert.Raw})
		}
	case []byte:
		data = v
	}
	testutil.WriteFile(t, filepath.Join(s.Path(sub), name), data, 0o600)
}

// sha1Cert re-signs the certificate of spec with SHA-1 by hand: crypto/x509
// refuses to create SHA-1 signatures.
func sha1Cert(t *testing.T, spec certSpec, parent *issued) *issued {
	t.Helper()
	c := mkCert(t, spec, parent)
	var tbs asn1.RawValue
	if _, err := asn1.Unmarshal(c.cert.RawTBSCertificate, &tbs); err != nil {
		t.Fatal(err)
	}
	var fields []asn1.RawValue
	for rest := tbs.Bytes; len(rest) > 0; {
		var f asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &f); err != nil {
			t.Fatal(err)
		}
		fields = append(fields, f)
	}
	algID, err := asn1.Marshal(struct {
		OID  asn1.ObjectIdentifier
		Null asn1.RawValue
	}{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}, asn1.NullRawValue})
	if err != nil {
		t.Fatal(err)
	}
	fields[2] = asn1.RawValue{FullBytes: algID} // after [0] version and the serial number
	var body []byte
	for _, f := range fields {
		body = append(body, f.FullBytes...)
	}
	newTBS, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
	if err != nil {
		t.Fatal(err)
	}
	signer := spec.key
	if parent != nil {
		signer = parent.key
	}
	sum := sha1.Sum(newTBS)
	sig, err := rsa.SignPKCS1v15(rand.Reader, signer, crypto.SHA1, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(struct {
		TBS asn1.RawValue
		Alg asn1.RawValue
		Sig asn1.BitString
	}{asn1.RawValue{FullBytes: newTBS}, asn1.RawValue{FullBytes: algID}, asn1.BitString{Bytes: sig, BitLength: len(sig) * 8}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if cert.SignatureAlgorithm != x509.SHA1WithRSA {
		t.Fatalf("hand-made certificate has %s", cert.SignatureAlgorithm)
	}
	return &issued{cert, spec.key}
}

func TestVerifyFull(t *testing.T) {
	p := newPKI(t)
	self := mkCert(t, certSpec{cn: "plc2", key: key(t, 4), dns: []string{"plc2"}}, nil)
	expired := mkCert(t, certSpec{cn: "old", key: key(t, 4), notBefore: now.AddDate(-2, 0, 0), notAfter: now.AddDate(0, 0, -1)}, nil)
	future := mkCert(t, certSpec{cn: "future", key: key(t, 4), notBefore: now.AddDate(0, 0, 1)}, nil)
	key(t, 0)
	weak := mkCert(t, certSpec{cn: "weak", key: weakKey}, nil)
	noSig := mkCert(t, certSpec{cn: "nosig", key: key(t, 4), usage: x509.KeyUsageKeyEncipherment}, nil)
	oldInter := mkCert(t, certSpec{cn: "Old Issuing CA", ca: true, key: key(t, 2), serial: 20, notBefore: now.AddDate(-3, 0, 0), notAfter: now.AddDate(0, 0, -10)}, p.root)
	underOld := mkCert(t, certSpec{cn: "plc3", key: key(t, 3), serial: 30}, oldInter)
	notCA := mkCert(t, certSpec{cn: "not a CA", key: key(t, 5)}, nil)
	underNotCA := mkCert(t, certSpec{cn: "plc4", key: key(t, 3)}, notCA)
	sha1Self := sha1Cert(t, certSpec{cn: "sha1", key: key(t, 4)}, nil)
	sha1Leaf := sha1Cert(t, certSpec{cn: "sha1-leaf", key: key(t, 3), serial: 40}, p.inter)

	rootCRL := mkCRL(t, p.root, now.AddDate(0, 1, 0))
	interCRL := mkCRL(t, p.inter, now.AddDate(0, 1, 0))
	interRevokesLeaf := mkCRL(t, p.inter, now.AddDate(0, 1, 0), big.NewInt(99), p.leaf.cert.SerialNumber)
	rootRevokesInter := mkCRL(t, p.root, now.AddDate(0, 1, 0), p.inter.cert.SerialNumber)
	staleInterCRL := mkCRL(t, p.inter, now.AddDate(0, 0, -1))
	chain := func(s *Store, crls ...[]byte) {
		put(t, s, TrustedCerts, "root.pem", p.root)
		put(t, s, IssuersCerts, "inter.der", p.inter)
		for i, c := range crls {
			sub := TrustedCRL
			if i%2 == 1 {
				sub = IssuersCRL
			}
			put(t, s, sub, string(rune('a'+i))+".crl", c)
		}
	}

	tests := []struct {
		name  string
		setup func(s *Store)
		cert  *issued
		opts  VerifyOptions
		err   error
		msg   string // substring of the error
	}{
		{name: "self-signed trusted", cert: self, setup: func(s *Store) { put(t, s, TrustedCerts, "plc2.der", self) }},
		{name: "self-signed trusted as PEM", cert: self, setup: func(s *Store) { put(t, s, TrustedCerts, "plc2.pem", self) }},
		{name: "self-signed untrusted", cert: self, err: ErrUntrusted, msg: "no chain leads to a CA there"},
		{name: "chain with CRLs", cert: p.leaf, setup: func(s *Store) { chain(s, rootCRL, interCRL) }},
		{name: "chain with CRLs, PEM CRL", cert: p.leaf, setup: func(s *Store) {
			chain(s, rootCRL, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: interCRL}))
		}},
		{name: "intermediate in trusted", cert: p.leaf, setup: func(s *Store) {
			put(t, s, TrustedCerts, "root.der", p.root)
			put(t, s, TrustedCerts, "inter.der", p.inter)
			put(t, s, TrustedCRL, "root.crl", rootCRL)
			put(t, s, TrustedCRL, "inter.crl", interCRL)
		}},
		{name: "leaf trusted directly", cert: p.leaf, setup: func(s *Store) { put(t, s, TrustedCerts, "plc1.der", p.leaf) }},
		{name: "no CRL", cert: p.leaf, setup: func(s *Store) { chain(s, rootCRL) }, err: ErrRevocationUnknown,
			msg: `"plc1": no CRL from issuer "Plant Issuing CA" in `},
		{name: "no CRL allowed", cert: p.leaf, setup: func(s *Store) { chain(s) }, opts: VerifyOptions{AllowUnknownRevocation: true}},
		{name: "stale CRL", cert: p.leaf, setup: func(s *Store) { chain(s, rootCRL, staleInterCRL) }, err: ErrRevocationUnknown,
			msg: `"plc1": only an out-of-date CRL from issuer "Plant Issuing CA"`},
		{name: "leaf revoked", cert: p.leaf, setup: func(s *Store) { chain(s, rootCRL, interRevokesLeaf) }, err: ErrRevoked,
			msg: `"plc1" was revoked by "Plant Issuing CA" on 2026-11-20`},
		{name: "intermediate revoked", cert: p.leaf, setup: func(s *Store) { chain(s, rootRevokesInter, interCRL) }, err: ErrRevoked,
			msg: `"Plant Issuing CA" was revoked by "Plant Root CA"`},
		{name: "revoked even with unknown revocation allowed", cert: p.leaf, setup: func(s *Store) { chain(s, interRevokesLeaf) },
			opts: VerifyOptions{AllowUnknownRevocation: true}, err: ErrRevoked},
		{name: "intermediate missing", cert: p.leaf, setup: func(s *Store) { put(t, s, TrustedCerts, "root.der", p.root) }, err: ErrUntrusted},
		{name: "CAs only in issuers", cert: p.leaf, setup: func(s *Store) {
			put(t, s, IssuersCerts, "root.der", p.root)
			put(t, s, IssuersCerts, "inter.der", p.inter)
		}, err: ErrUntrusted},
		{name: "expired", cert: expired, setup: func(s *Store) { put(t, s, TrustedCerts, "old.der", expired) }, err: ErrExpired,
			msg: "expired on 2026-11-21 12:00:00 UTC, now is 2026-11-22 12:00:00 UTC"},
		{name: "not yet valid", cert: future, setup: func(s *Store) { put(t, s, TrustedCerts, "f.der", future) }, err: ErrNotYetValid,
			msg: "valid from 2026-11-23 12:00:00 UTC, now is 2026-11-22 12:00:00 UTC"},
		{name: "expired intermediate", cert: underOld, setup: func(s *Store) {
			put(t, s, TrustedCerts, "root.der", p.root)
			put(t, s, IssuersCerts, "old.der", oldInter)
		}, opts: VerifyOptions{AllowUnknownRevocation: true}, err: ErrExpired, msg: `issuer "Old Issuing CA" expired on 2026-11-12`},
		{name: "weak key", cert: weak, setup: func(s *Store) { put(t, s, TrustedCerts, "weak.der", weak) }, err: ErrWeakKey,
			msg: "RSA key has 1024 bits, at least 2048 required"},
		{name: "key usage", cert: noSig, setup: func(s *Store) { put(t, s, TrustedCerts, "nosig.der", noSig) }, err: ErrKeyUsage,
			msg: "key usage lacks digitalSignature"},
		{name: "issuer not a CA", cert: underNotCA, setup: func(s *Store) { put(t, s, TrustedCerts, "notca.der", notCA) }, err: ErrUntrusted},
		{name: "SHA-1 self-signed", cert: sha1Self, setup: func(s *Store) { put(t, s, TrustedCerts, "sha1.der", sha1Self) }, err: ErrSHA1,
			msg: "signed with SHA1-RSA (allow_sha1 permits it)"},
		{name: "SHA-1 self-signed allowed", cert: sha1Self, setup: func(s *Store) { put(t, s, TrustedCerts, "sha1.der", sha1Self) },
			opts: VerifyOptions{AllowSHA1: true}},
		{name: "SHA-1 chain", cert: sha1Leaf, setup: func(s *Store) { chain(s, rootCRL, interCRL) }, err: ErrSHA1},
		{name: "SHA-1 chain allowed", cert: sha1Leaf, setup: func(s *Store) { chain(s, rootCRL, interCRL) }, opts: VerifyOptions{AllowSHA1: true}},
		// trust: full takes trusted_fingerprints into account: the listed
		// certificate is an anchor, and everything else is still checked.
		{name: "self-signed in trusted_fingerprints", cert: self, opts: VerifyOptions{TrustedFingerprints: []string{Fingerprint(self.cert.Raw)}}},
		{name: "another fingerprint listed", cert: self, opts: VerifyOptions{TrustedFingerprints: []string{Fingerprint(expired.cert.Raw)}},
			err: ErrUntrusted, msg: "nor in trusted_fingerprints, and no chain leads to a CA there"},
		{name: "expired in trusted_fingerprints", cert: expired, opts: VerifyOptions{TrustedFingerprints: []string{Fingerprint(expired.cert.Raw)}},
			err: ErrExpired, msg: "expired on 2026-11-21"},
		{name: "weak key in trusted_fingerprints", cert: weak, opts: VerifyOptions{TrustedFingerprints: []string{Fingerprint(weak.cert.Raw)}},
			err: ErrWeakKey},
		{name: "garbage in the store is skipped", cert: self, setup: func(s *Store) {
			put(t, s, TrustedCerts, "junk.der", []byte("junk"))
			put(t, s, TrustedCRL, "junk.crl", []byte("junk"))
			put(t, s, TrustedCerts, "plc2.der", self)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			if tc.setup != nil {
				tc.setup(s)
			}
			tc.opts.Now = now
			res, err := s.Verify(tc.cert.cert.Raw, tc.opts)
			if tc.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				if res.Fingerprint != Fingerprint(tc.cert.cert.Raw) || res.Notice() != "" || res.Certificate == nil || res.Subject != tc.cert.cert.Subject.CommonName {
					t.Errorf("result %+v", res)
				}
				return
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v\nwant %v containing %q", err, tc.err, tc.msg)
			}
			if !strings.Contains(err.Error(), Fingerprint(tc.cert.cert.Raw)) || !strings.Contains(err.Error(), `"`+tc.cert.cert.Subject.CommonName+`"`) {
				t.Errorf("error does not name subject and fingerprint: %v", err)
			}
			rejected, _ := os.ReadDir(s.Path(RejectedCerts))
			if errors.Is(err, ErrUntrusted) != (len(rejected) == 1) {
				t.Errorf("%d files in rejected/certs for %v", len(rejected), err)
			}
		})
	}
}

func TestVerifyRejectedThenTrusted(t *testing.T) {
	s := newStore(t)
	cert := mkCert(t, certSpec{cn: "PLC 1/Line A", key: key(t, 4)}, nil)
	fp := Fingerprint(cert.cert.Raw)
	_, err := s.Verify(cert.cert.Raw, VerifyOptions{Now: now})
	rejected := filepath.Join(s.Path(RejectedCerts), "PLC_1_Line_A_"+fingerprintHex(cert.cert.Raw)+".der")
	want := `server certificate "PLC 1/Line A" (SHA-256 ` + fp + `) is not trusted: it is neither in ` + s.Path(TrustedCerts) +
		` nor in trusted_fingerprints, and no chain leads to a CA there; saved as ` + rejected + `; to trust it: mv ` + rejected + ` ` + s.Path(TrustedCerts) + `/`
	if !errors.Is(err, ErrUntrusted) || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if b, err := os.ReadFile(rejected); err != nil || string(b) != string(cert.cert.Raw) {
		t.Fatalf("rejected file: %v", err)
	}
	// A second refusal leaves one file.
	if _, err := s.Verify(cert.cert.Raw, VerifyOptions{Now: now}); !errors.Is(err, ErrUntrusted) {
		t.Fatal(err)
	}
	// What the message says to do, then the next attempt succeeds.
	if err := os.Rename(rejected, filepath.Join(s.Path(TrustedCerts), filepath.Base(rejected))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(cert.cert.Raw, VerifyOptions{Now: now}); err != nil {
		t.Fatalf("after moving to trusted: %v", err)
	}
	// Removing it from trusted/certs takes effect too (the cache follows the directory).
	os.Remove(filepath.Join(s.Path(TrustedCerts), filepath.Base(rejected)))
	if _, err := s.Verify(cert.cert.Raw, VerifyOptions{Now: now}); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("after removing from trusted: %v", err)
	}
}

func TestVerifyCacheFollowsReplacedFile(t *testing.T) {
	s := newStore(t)
	a := mkCert(t, certSpec{cn: "a", key: key(t, 4)}, nil)
	b := mkCert(t, certSpec{cn: "b", key: key(t, 5)}, nil)
	file := filepath.Join(s.Path(TrustedCerts), "plc.der")
	testutil.WriteFile(t, file, a.cert.Raw, 0o600)
	if _, err := s.Verify(a.cert.Raw, VerifyOptions{Now: now}); err != nil {
		t.Fatal(err)
	}
	testutil.WriteFile(t, file, b.cert.Raw, 0o600)
	later := time.Now().Add(time.Minute)
	os.Chtimes(file, later, later)
	if _, err := s.Verify(b.cert.Raw, VerifyOptions{Now: now}); err != nil {
		t.Fatalf("replaced file not re-read: %v", err)
	}
}

func TestVerifyFingerprint(t *testing.T) {
	expired := mkCert(t, certSpec{cn: "old", key: key(t, 4), notBefore: now.AddDate(-2, 0, 0), notAfter: now.AddDate(0, 0, -1)}, nil)
	other := mkCert(t, certSpec{cn: "other", key: key(t, 5)}, nil)
	fp := Fingerprint(expired.cert.Raw)
	plain := strings.ToLower(strings.ReplaceAll(fp, ":", ""))
	tests := []struct {
		name    string
		trust   Trust
		fps     []string
		inStore bool
		err     error
	}{
		{name: "listed with colons", trust: TrustFingerprint, fps: []string{fp}},
		{name: "listed lower case without colons", trust: TrustFingerprint, fps: []string{"not a fingerprint", plain}},
		{name: "in trusted/certs", trust: TrustFingerprint, inStore: true},
		{name: "not listed", trust: TrustFingerprint, fps: []string{Fingerprint(other.cert.Raw)}, err: ErrUntrusted},
		{name: "and expiry: expired", trust: TrustFingerprintAndExpiry, fps: []string{fp}, err: ErrExpired},
		{name: "and expiry: not listed", trust: TrustFingerprintAndExpiry, err: ErrUntrusted},
		{name: "full: expired", trust: TrustFull, inStore: true, err: ErrExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			if tc.inStore {
				put(t, s, TrustedCerts, "old.der", expired)
			}
			_, err := s.Verify(expired.cert.Raw, VerifyOptions{Trust: tc.trust, TrustedFingerprints: tc.fps, Now: now})
			if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if errors.Is(err, ErrUntrusted) && !strings.Contains(err.Error(), "its fingerprint is neither in "+s.Path(TrustedCerts)+" nor in trusted_fingerprints") {
				t.Errorf("message: %v", err)
			}
		})
	}
}

func TestVerifyAutoAccept(t *testing.T) {
	s := newStore(t)
	first := mkCert(t, certSpec{cn: "plc1", key: key(t, 4), uri: "urn:plc1"}, nil)
	second := mkCert(t, certSpec{cn: "plc1", key: key(t, 5), uri: "urn:plc1"}, nil)
	otherPLC := mkCert(t, certSpec{cn: "plc9", key: key(t, 3), uri: "urn:plc9"}, nil)
	expired := mkCert(t, certSpec{cn: "plc7", key: key(t, 3), notBefore: now.AddDate(-2, 0, 0), notAfter: now.AddDate(0, 0, -1)}, nil)
	on := VerifyOptions{AutoAccept: AutoAcceptOn, Peer: "press/1", Now: now}

	res, err := s.Verify(first.cert.Raw, on)
	if err != nil {
		t.Fatal(err)
	}
	stored := filepath.Join(s.Path(TrustedCerts), "tofu_press_1__plc1_"+fingerprintHex(first.cert.Raw)+".der")
	if res.Stored != stored || len(res.Replaced) != 0 {
		t.Fatalf("first use: %+v", res)
	}
	if want := `server certificate "plc1" trusted on first use and stored as ` + stored + ` (SHA-256 ` + Fingerprint(first.cert.Raw) + `)`; res.Notice() != want {
		t.Errorf("notice %q\nwant %q", res.Notice(), want)
	}
	// Nothing is stored until the session succeeded with it.
	if _, err := os.Stat(stored); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stored before Commit: %v", err)
	}
	if res, err := s.Verify(first.cert.Raw, on); err != nil || !res.Pending() {
		t.Fatalf("before Commit, a second first use: %+v, %v", res, err)
	}
	if err := s.Commit(res); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Verify(first.cert.Raw, on); err != nil || res.Notice() != "" || res.Pending() {
		t.Fatalf("second use: %+v, %v", res, err)
	}
	// Another PLC's first use does not count as a change of this one.
	if res, err := s.Verify(otherPLC.cert.Raw, VerifyOptions{AutoAccept: AutoAcceptOn, Peer: "press2", Now: now}); err != nil || res.Stored == "" || s.Commit(res) != nil {
		t.Fatalf("other PLC: %+v, %v", res, err)
	}
	// A changed certificate is refused as a possible man in the middle.
	_, err = s.Verify(second.cert.Raw, on)
	if !errors.Is(err, ErrChanged) || !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "differs from the certificate trusted on first use, "+stored) ||
		!strings.Contains(err.Error(), "man in the middle") || !strings.Contains(err.Error(), "to trust it: mv ") {
		t.Fatalf("changed: %v", err)
	}
	// Also without auto_accept's pin name: the same ApplicationURI in trusted/certs counts.
	if _, err := s.Verify(second.cert.Raw, VerifyOptions{AutoAccept: AutoAcceptOn, Peer: "renamed", Now: now}); !errors.Is(err, ErrChanged) {
		t.Fatalf("changed, other peer name: %v", err)
	}
	// force accepts it, replacing the first.
	force := on
	force.AutoAccept = AutoAcceptForce
	res, err = s.Verify(second.cert.Raw, force)
	if err != nil || res.Stored == "" || len(res.Replaced) != 1 || res.Replaced[0] != stored {
		t.Fatalf("force: %+v, %v", res, err)
	}
	if !strings.Contains(res.Notice(), `server certificate "plc1" changed; accepted because auto_accept is force`) {
		t.Errorf("notice %q", res.Notice())
	}
	if err := s.Commit(res); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stored); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old certificate still trusted: %v", err)
	}
	if _, err := s.Verify(first.cert.Raw, on); !errors.Is(err, ErrChanged) {
		t.Errorf("old certificate after force: %v", err)
	}
	// First use does not override the other checks.
	if _, err := s.Verify(expired.cert.Raw, VerifyOptions{AutoAccept: AutoAcceptOn, Peer: "press7", Now: now}); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired on first use: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(s.Path(TrustedCerts), "tofu_press7__*")); len(m) != 0 {
		t.Errorf("expired certificate stored: %v", m)
	}
}

func TestOpenStoreLayout(t *testing.T) {
	s := newStore(t)
	for _, sub := range []string{TrustedCerts, TrustedCRL, IssuersCerts, IssuersCRL, RejectedCerts} {
		fi, err := os.Stat(s.Path(sub))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v", sub, fi.Mode(), err)
		}
	}
	if _, err := s.Verify([]byte("garbage"), VerifyOptions{}); !errors.Is(err, ErrBadCertificate) {
		t.Errorf("garbage: %v", err)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	s := newStore(t)
	a := mkCert(t, certSpec{cn: "a", key: key(t, 4)}, nil)
	b := mkCert(t, certSpec{cn: "b", key: key(t, 5)}, nil)
	put(t, s, TrustedCerts, "a.der", a)
	done := make(chan error)
	for i := range 8 {
		go func() {
			var err error
			if i%2 == 0 {
				_, err = s.Verify(a.cert.Raw, VerifyOptions{Now: now})
			} else if _, err = s.Verify(b.cert.Raw, VerifyOptions{Now: now}); errors.Is(err, ErrUntrusted) {
				err = nil
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
