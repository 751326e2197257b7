package certs

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tagbridge/tagbridge/internal/x509ecc"
)

// Trust is how a server certificate is checked (security.trust).
type Trust string

const (
	// TrustFingerprint: the SHA-256 fingerprint matches a certificate in
	// trusted/certs or an entry of VerifyOptions.TrustedFingerprints.
	TrustFingerprint Trust = "fingerprint"
	// TrustFingerprintAndExpiry: as TrustFingerprint, and within its validity period.
	TrustFingerprintAndExpiry Trust = "fingerprint_and_expiry"
	// TrustFull: X.509 chain validation to an anchor in trusted/certs, with
	// validity, key usage, key size, signature algorithm and CRL checks.
	TrustFull Trust = "full"
)

// AutoAccept is trust on first use (security.auto_accept).
type AutoAccept int

const (
	AutoAcceptOff   AutoAccept = iota // an untrusted certificate is refused
	AutoAcceptOn                      // the first certificate is stored and trusted; a different one later is refused
	AutoAcceptForce                   // a changed certificate is accepted and stored too, with a warning
)

// MinRSABits is the shortest RSA key accepted by TrustFull.
const MinRSABits = 2048

// maxChain bounds the certificates in a chain.
const maxChain = 8

// VerifyOptions say how Store.Verify checks a server certificate.
type VerifyOptions struct {
	Trust Trust // "" means TrustFull
	// TrustedFingerprints trust the certificates they name as if they were in
	// trusted/certs, in every Trust mode: with TrustFull such a certificate is
	// an anchor, and its validity, key, usage and revocation are still checked.
	TrustedFingerprints []string
	AutoAccept          AutoAccept
	// Peer names the server for AutoAccept (e.g. the PLC's name): the
	// certificate trusted on first use is stored under it, and a different
	// certificate from the same peer later is a change.
	Peer                   string
	AllowUnknownRevocation bool
	AllowSHA1              bool
	Now                    time.Time // zero means time.Now()
}

// Result describes an accepted certificate.
type Result struct {
	Certificate *x509.Certificate // the parsed server certificate, for VerifyHostname and VerifyApplicationURI
	Subject     string            // the common name
	Fingerprint string            // SHA-256, as Fingerprint returns it
	// Stored is the file auto_accept writes to trusted/certs at Commit, or
	// "" for a certificate that was already trusted.
	Stored string
	// Replaced lists the files of the previously trusted certificate that
	// auto_accept: force removes at Commit; non-empty means the
	// certificate changed.
	Replaced []string

	peer string // whose pin Stored is
}

// Pending tells whether r was accepted on first use and is stored only at
// Commit.
func (r Result) Pending() bool { return r.Stored != "" }

// Notice returns what the caller should log about r: "" for a certificate
// that was already trusted. Replaced deserves a warning, Stored an info line.
func (r Result) Notice() string {
	switch {
	case len(r.Replaced) > 0:
		return fmt.Sprintf("server certificate %q changed; accepted because auto_accept is force and stored as %s (SHA-256 %s), previous certificate removed: %s",
			r.Subject, r.Stored, r.Fingerprint, strings.Join(r.Replaced, ", "))
	case r.Stored != "":
		return fmt.Sprintf("server certificate %q trusted on first use and stored as %s (SHA-256 %s)", r.Subject, r.Stored, r.Fingerprint)
	}
	return ""
}

// Verify decides whether the server certificate der is trusted. The
// directories are read again at each call. An untrusted certificate is
// written to rejected/certs, and the error names it and the command that
// trusts it. Errors wrap the package's sentinels (ErrUntrusted, ErrExpired, ...).
//
// A certificate accepted on first use is not stored yet: the caller stores
// it with Commit once a secure channel and a session succeeded with it, so a
// server that merely presents a certificate never gets it pinned.
func (s *Store) Verify(der []byte, opts VerifyOptions) (Result, error) {
	cert, err := x509ecc.ParseCertificate(der)
	if err != nil {
		return Result{}, fmt.Errorf("server certificate: %w", ErrBadCertificate)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Trust == "" {
		opts.Trust = TrustFull
	}
	res := Result{Certificate: cert, Subject: cert.Subject.CommonName, Fingerprint: Fingerprint(cert.Raw)}
	trusted := s.certs(TrustedCerts)
	err = s.check(cert, trusted, opts)
	if err == nil {
		return res, nil
	}
	if !errors.Is(err, ErrUntrusted) {
		return Result{}, fmt.Errorf("server certificate %q (SHA-256 %s): %w", res.Subject, res.Fingerprint, err)
	}
	if opts.AutoAccept == AutoAcceptOff {
		return Result{}, s.untrusted(cert, err)
	}

	pins := s.pins(cert, trusted, opts.Peer)
	if len(pins) > 0 && opts.AutoAccept != AutoAcceptForce {
		var old []string
		for _, p := range pins {
			old = append(old, fmt.Sprintf("%s (SHA-256 %s)", p.path, Fingerprint(p.cert.Raw)))
		}
		return Result{}, s.untrusted(cert, fail(ErrChanged, "it differs from the certificate trusted on first use, %s; this may be a man in the middle. If the server's certificate was really replaced, remove the old one", strings.Join(old, ", ")))
	}
	// Trusted on first use: everything else must still hold.
	if err := s.check(cert, append(slices.Clone(trusted), storedCert{"", cert}), opts); err != nil {
		return Result{}, fmt.Errorf("server certificate %q (SHA-256 %s): %w", res.Subject, res.Fingerprint, err)
	}
	res.Stored = filepath.Join(s.Path(TrustedCerts), pinPrefix(opts.Peer)+fileName(cert))
	for _, p := range pins {
		res.Replaced = append(res.Replaced, p.path)
	}
	res.peer = opts.Peer
	return res, nil
}

// Commit stores a certificate that Verify accepted on first use and removes
// the pins it replaces; nothing for one that was trusted already.
func (s *Store) Commit(res Result) error {
	if !res.Pending() {
		return nil
	}
	if err := WriteFileAtomic(res.Stored, res.Certificate.Raw, 0o600, true); err != nil {
		return fmt.Errorf("store server certificate %q: %w", res.Subject, err)
	}
	for _, path := range res.Replaced {
		if path != res.Stored && strings.HasPrefix(filepath.Base(path), pinPrefix(res.peer)) {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove replaced certificate: %w", err)
			}
		}
	}
	return nil
}

// pinPrefix starts the name of a certificate stored by auto_accept for peer.
func pinPrefix(peer string) string { return "tofu_" + sanitize(peer, "server") + "__" }

// pins returns the trusted certificates, other than cert, that were stored
// on first use for peer or carry the same ApplicationURI as cert.
func (s *Store) pins(cert *x509.Certificate, trusted []storedCert, peer string) []storedCert {
	var out []storedCert
	for _, t := range trusted {
		if bytes.Equal(t.cert.Raw, cert.Raw) {
			continue
		}
		if strings.HasPrefix(filepath.Base(t.path), pinPrefix(peer)) || sameURI(t.cert, cert) {
			out = append(out, t)
		}
	}
	return out
}

func sameURI(a, b *x509.Certificate) bool {
	return len(a.URIs) > 0 && len(b.URIs) > 0 && a.URIs[0].String() == b.URIs[0].String()
}

// untrusted writes cert to rejected/certs and returns the error telling how to trust it.
func (s *Store) untrusted(cert *x509.Certificate, reason error) error {
	prefix := fmt.Sprintf("server certificate %q (SHA-256 %s) is not trusted: %%w", cert.Subject.CommonName, Fingerprint(cert.Raw))
	path, err := s.reject(cert)
	if err != nil {
		return fmt.Errorf(prefix+"; saving it to %s: %v", reason, s.Path(RejectedCerts), err)
	}
	return fmt.Errorf(prefix+"; saved as %s; to trust it: mv %s %s/%s", reason, path, shellQuote(path), shellQuote(s.Path(TrustedCerts)), s.unreadableNote())
}

// check applies opts.Trust to cert with the trusted certificates given.
func (s *Store) check(cert *x509.Certificate, trusted []storedCert, opts VerifyOptions) error {
	if opts.Trust != TrustFull {
		if !s.fingerprintTrusted(cert, trusted, opts.TrustedFingerprints) {
			return fail(ErrUntrusted, "its fingerprint is neither in %s nor in trusted_fingerprints", s.Path(TrustedCerts))
		}
		if opts.Trust == TrustFingerprintAndExpiry {
			return validity(cert, "", opts.Now)
		}
		return nil
	}

	if err := validity(cert, "", opts.Now); err != nil {
		return err
	}
	if err := strength(cert, "", opts.AllowSHA1); err != nil {
		return err
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return fail(ErrKeyUsage, "key usage lacks digitalSignature")
	}
	var anchors, cas []*x509.Certificate
	// A listed fingerprint trusts the certificate as trusted/certs would:
	// an anchor, still checked for validity, strength, usage and revocation.
	if s.fingerprintTrusted(cert, nil, opts.TrustedFingerprints) {
		anchors = append(anchors, cert)
	}
	for _, t := range trusted {
		anchors = append(anchors, t.cert)
		if t.cert.IsCA {
			cas = append(cas, t.cert)
		}
	}
	for _, c := range s.certs(IssuersCerts) {
		if c.cert.IsCA {
			cas = append(cas, c.cert)
		}
	}
	b := &builder{anchors: anchors, cas: cas, opts: opts}
	chain := b.build([]*x509.Certificate{cert})
	if chain == nil {
		if b.hint != nil {
			return b.hint
		}
		return fail(ErrUntrusted, "it is neither in %s nor in trusted_fingerprints, and no chain leads to a CA there", s.Path(TrustedCerts))
	}
	return s.revocation(chain, opts)
}

func (s *Store) fingerprintTrusted(cert *x509.Certificate, trusted []storedCert, fps []string) bool {
	for _, t := range trusted {
		if bytes.Equal(t.cert.Raw, cert.Raw) {
			return true
		}
	}
	want := fingerprintHex(cert.Raw)
	for _, f := range fps {
		if n, ok := NormalizeFingerprint(f); ok && n == want {
			return true
		}
	}
	return false
}

// validity checks the validity period of cert; what names it in messages ("" for the server's own).
func validity(cert *x509.Certificate, what string, now time.Time) error {
	const day = "2006-01-02 15:04:05 MST"
	switch {
	case now.Before(cert.NotBefore):
		return fail(ErrNotYetValid, "%svalid from %s, now is %s", what, cert.NotBefore.UTC().Format(day), now.UTC().Format(day))
	case now.After(cert.NotAfter):
		return fail(ErrExpired, "%sexpired on %s, now is %s", what, cert.NotAfter.UTC().Format(day), now.UTC().Format(day))
	}
	return nil
}

// strength refuses short RSA keys and, unless allowed, SHA-1 signatures.
func strength(cert *x509.Certificate, what string, allowSHA1 bool) error {
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); ok && pub.N.BitLen() < MinRSABits {
		return fail(ErrWeakKey, "%sRSA key has %d bits, at least %d required", what, pub.N.BitLen(), MinRSABits)
	}
	if isSHA1(cert.SignatureAlgorithm) && !allowSHA1 {
		return fail(ErrSHA1, "%ssigned with %s (allow_sha1 permits it)", what, cert.SignatureAlgorithm)
	}
	return nil
}

func isSHA1(a x509.SignatureAlgorithm) bool {
	return a == x509.SHA1WithRSA || a == x509.ECDSAWithSHA1 || a == x509.DSAWithSHA1
}

// builder finds a chain from a certificate to an anchor by depth-first search.
type builder struct {
	anchors, cas []*x509.Certificate
	opts         VerifyOptions
	hint         error // why the most promising candidate issuer was refused
}

func (b *builder) isAnchor(c *x509.Certificate) bool {
	return slices.ContainsFunc(b.anchors, func(a *x509.Certificate) bool { return bytes.Equal(a.Raw, c.Raw) })
}

// build extends chain (leaf first) to an anchor, or returns nil.
func (b *builder) build(chain []*x509.Certificate) []*x509.Certificate {
	c := chain[len(chain)-1]
	if b.isAnchor(c) {
		return chain
	}
	if len(chain) >= maxChain {
		return nil
	}
	for _, ca := range b.cas {
		if !bytes.Equal(ca.RawSubject, c.RawIssuer) || slices.ContainsFunc(chain, func(x *x509.Certificate) bool { return bytes.Equal(x.Raw, ca.Raw) }) {
			continue
		}
		if len(c.AuthorityKeyId) > 0 && len(ca.SubjectKeyId) > 0 && !bytes.Equal(c.AuthorityKeyId, ca.SubjectKeyId) {
			continue
		}
		if err := b.link(c, ca, len(chain)-1); err != nil {
			if b.hint == nil {
				b.hint = err
			}
			continue
		}
		if full := b.build(append(slices.Clip(chain), ca)); full != nil {
			return full
		}
	}
	return nil
}

// link checks that ca may have issued c; below counts the CAs between c's issuer and the leaf.
func (b *builder) link(c, ca *x509.Certificate, below int) error {
	what := fmt.Sprintf("issuer %q ", ca.Subject.CommonName)
	if !ca.BasicConstraintsValid || !ca.IsCA {
		return fail(ErrKeyUsage, "%sis not a CA", what)
	}
	if ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fail(ErrKeyUsage, "%smay not sign certificates (key usage lacks keyCertSign)", what)
	}
	if (ca.MaxPathLen > 0 || ca.MaxPathLenZero) && below > ca.MaxPathLen {
		return fail(ErrKeyUsage, "%sallows %d intermediate CAs below it, the chain has %d", what, ca.MaxPathLen, below)
	}
	if err := validity(ca, what, b.opts.Now); err != nil {
		return err
	}
	if err := strength(ca, what, b.opts.AllowSHA1); err != nil {
		return err
	}
	if err := checkSignature(c, ca, b.opts.AllowSHA1); err != nil {
		return fail(ErrUntrusted, "%q: signature by %s does not verify: %v", c.Subject.CommonName, strings.TrimSpace(what), err)
	}
	return nil
}

// checkSignature verifies c's signature with parent's key, SHA-1 included
// when allowed (crypto/x509 refuses SHA-1 outright).
func checkSignature(c, parent *x509.Certificate, allowSHA1 bool) error {
	if c.SignatureAlgorithm == x509.SHA1WithRSA && allowSHA1 {
		pub, ok := parent.PublicKey.(*rsa.PublicKey)
		if !ok {
			return errors.New("SHA-1 with RSA signature but issuer key is not RSA")
		}
		sum := sha1.Sum(c.RawTBSCertificate)
		return rsa.VerifyPKCS1v15(pub, crypto.SHA1, sum[:], c.Signature)
	}
	return x509ecc.CheckSignature(c, parent) // x509's check, and brainpool and Ed448 issuers
}

// revocation checks each certificate of chain (leaf first) against the CRLs
// of its issuer. The anchor at the end is not checked: nothing above it
// could revoke it.
func (s *Store) revocation(chain []*x509.Certificate, opts VerifyOptions) error {
	if len(chain) < 2 {
		return nil
	}
	crls := append(s.crls(TrustedCRL), s.crls(IssuersCRL)...)
	for i := 0; i+1 < len(chain); i++ {
		c, ca := chain[i], chain[i+1]
		var current []*x509.RevocationList
		stale := false
		for _, crl := range crls {
			if !bytes.Equal(crl.RawIssuer, ca.RawSubject) || x509ecc.CheckCRLSignature(crl, ca) != nil {
				continue
			}
			if !crl.NextUpdate.IsZero() && opts.Now.After(crl.NextUpdate) {
				stale = true
				continue
			}
			current = append(current, crl)
		}
		if len(current) == 0 {
			if opts.AllowUnknownRevocation {
				continue
			}
			why := "no CRL"
			if stale {
				why = "only an out-of-date CRL"
			}
			return fail(ErrRevocationUnknown, "%q: %s from issuer %q in %s or %s (allow_unknown_revocation permits this)",
				c.Subject.CommonName, why, ca.Subject.CommonName, s.Path(TrustedCRL), s.Path(IssuersCRL))
		}
		for _, crl := range current {
			for _, e := range crl.RevokedCertificateEntries {
				if e.SerialNumber != nil && e.SerialNumber.Cmp(c.SerialNumber) == 0 {
					return fail(ErrRevoked, "%q was revoked by %q on %s", c.Subject.CommonName, ca.Subject.CommonName, e.RevocationTime.UTC().Format("2006-01-02"))
				}
			}
		}
	}
	return nil
}
