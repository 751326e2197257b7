// Package x509ecc reads and writes the X.509 certificates and keys that
// crypto/x509 cannot handle and OPC UA's ECC policies use: ECDSA keys on
// brainpoolP256r1 and brainpoolP384r1 (x509 refuses the certificate:
// "unsupported elliptic curve") and Ed448 keys (x509 parses the
// certificate but leaves PublicKey nil).
//
// The rest of such a certificate (names, validity, extensions) is still
// parsed by crypto/x509: ParseCertificate reads the outer DER structure
// itself, swaps the SubjectPublicKeyInfo for a placeholder x509 knows,
// lets x509 parse that, then puts back the original bytes (Raw,
// RawTBSCertificate, RawSubjectPublicKeyInfo) and the real key. Trust
// store, fingerprints, host-name and ApplicationURI checks and expiry thus
// work on the same *x509.Certificate as for any other key.
package x509ecc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/sign/ed448"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/tagbridge/tagbridge/internal/brainpool"
)

var (
	oidECPublicKey     = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidBrainpoolP256r1 = asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 7}
	oidBrainpoolP384r1 = asn1.ObjectIdentifier{1, 3, 36, 3, 3, 2, 8, 1, 1, 11}
	oidEd448           = asn1.ObjectIdentifier{1, 3, 101, 113}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
)

func curveOID(c *brainpool.Curve) asn1.ObjectIdentifier {
	if c == brainpool.P384r1() {
		return oidBrainpoolP384r1
	}
	return oidBrainpoolP256r1
}

func curveByOID(oid asn1.ObjectIdentifier) *brainpool.Curve {
	switch {
	case oid.Equal(oidBrainpoolP256r1):
		return brainpool.P256r1()
	case oid.Equal(oidBrainpoolP384r1):
		return brainpool.P384r1()
	}
	return nil
}

// certParts are the raw elements of a certificate.
type certParts struct {
	tbsFields [][]byte // each element of TBSCertificate, tag and length included
	tbs       []byte   // the whole TBSCertificate element
	sigAlg    []byte   // the outer signatureAlgorithm element
	sig       []byte   // the signature, without the BIT STRING's unused-bits byte
	spki      int      // index of subjectPublicKeyInfo in tbsFields
}

var errMalformed = errors.New("x509ecc: malformed certificate")

func splitCertificate(der []byte) (*certParts, error) {
	input := cryptobyte.String(der)
	var cert cryptobyte.String
	if !input.ReadASN1(&cert, cbasn1.SEQUENCE) || !input.Empty() {
		return nil, errMalformed
	}
	var tbs, sigAlg cryptobyte.String
	var sig asn1.BitString
	if !cert.ReadASN1Element(&tbs, cbasn1.SEQUENCE) || !cert.ReadASN1Element(&sigAlg, cbasn1.SEQUENCE) ||
		!cert.ReadASN1BitString(&sig) || !cert.Empty() || sig.BitLength%8 != 0 {
		return nil, errMalformed
	}
	p := &certParts{tbs: tbs, sigAlg: sigAlg, sig: sig.Bytes}
	inner := tbs
	if !inner.ReadASN1(&inner, cbasn1.SEQUENCE) {
		return nil, errMalformed
	}
	for !inner.Empty() {
		var el cryptobyte.String
		var tag cbasn1.Tag
		if !inner.ReadAnyASN1Element(&el, &tag) {
			return nil, errMalformed
		}
		p.tbsFields = append(p.tbsFields, el)
	}
	// version [0] (optional), serial, signature, issuer, validity, subject, spki
	p.spki = 5
	if len(p.tbsFields) > 0 && len(p.tbsFields[0]) > 0 && p.tbsFields[0][0] == 0xa0 {
		p.spki = 6
	}
	if len(p.tbsFields) <= p.spki {
		return nil, errMalformed
	}
	return p, nil
}

// assemble builds a certificate of TBS fields, signature algorithm and
// signature.
func assemble(fields [][]byte, sigAlg, sig []byte) ([]byte, []byte, error) {
	var tb cryptobyte.Builder
	tb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, f := range fields {
			b.AddBytes(f)
		}
	})
	tbs, err := tb.Bytes()
	if err != nil {
		return nil, nil, err
	}
	var cb cryptobyte.Builder
	cb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(sigAlg)
		b.AddASN1BitString(sig)
	})
	der, err := cb.Bytes()
	return der, tbs, err
}

// algorithm reads an AlgorithmIdentifier: its OID and raw parameters.
func algorithm(s cryptobyte.String) (asn1.ObjectIdentifier, cryptobyte.String, bool) {
	var alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return nil, nil, false
	}
	return oid, alg, true
}

// ParsePublicKey parses a SubjectPublicKeyInfo holding a brainpool or
// Ed448 key: *brainpool.PublicKey or ed448.PublicKey.
func ParsePublicKey(spki []byte) (crypto.PublicKey, error) {
	s := cryptobyte.String(spki)
	var inner cryptobyte.String
	var bits asn1.BitString
	if !s.ReadASN1(&inner, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, errors.New("x509ecc: malformed public key info")
	}
	var algID cryptobyte.String
	if !inner.ReadASN1Element(&algID, cbasn1.SEQUENCE) || !inner.ReadASN1BitString(&bits) || !inner.Empty() || bits.BitLength%8 != 0 {
		return nil, errors.New("x509ecc: malformed public key info")
	}
	oid, params, ok := algorithm(algID)
	if !ok {
		return nil, errors.New("x509ecc: malformed public key algorithm")
	}
	switch {
	case oid.Equal(oidECPublicKey):
		var curve asn1.ObjectIdentifier
		if !params.ReadASN1ObjectIdentifier(&curve) || !params.Empty() {
			return nil, errors.New("x509ecc: EC public key without a named curve")
		}
		c := curveByOID(curve)
		if c == nil {
			return nil, fmt.Errorf("x509ecc: unsupported elliptic curve %v", curve)
		}
		return c.NewPublicKey(bits.Bytes)
	case oid.Equal(oidEd448):
		if !params.Empty() || len(bits.Bytes) != ed448.PublicKeySize {
			return nil, errors.New("x509ecc: malformed Ed448 public key")
		}
		return ed448.PublicKey(append([]byte(nil), bits.Bytes...)), nil
	}
	return nil, fmt.Errorf("x509ecc: unsupported public key algorithm %v", oid)
}

// MarshalPublicKey is the SubjectPublicKeyInfo of a brainpool or Ed448 key.
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	var b cryptobyte.Builder
	switch k := pub.(type) {
	case *brainpool.PublicKey:
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidECPublicKey)
				b.AddASN1ObjectIdentifier(curveOID(k.Curve()))
			})
			b.AddASN1BitString(k.Bytes())
		})
	case ed448.PublicKey:
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidEd448)
			})
			b.AddASN1BitString(k)
		})
	default:
		return nil, fmt.Errorf("x509ecc: key of type %T is neither brainpool nor Ed448", pub)
	}
	return b.Bytes()
}

// placeholderSPKI is a P-256 key (the base point) that x509 parses in place
// of a key it cannot.
var placeholderSPKI = func() []byte {
	p := elliptic.P256().Params()
	der, err := x509.MarshalPKIXPublicKey(&ecdsa.PublicKey{Curve: elliptic.P256(), X: p.Gx, Y: p.Gy})
	if err != nil {
		panic(err)
	}
	return der
}()

// ParseCertificate parses one DER certificate, as x509.ParseCertificate
// does, and also those with brainpool or Ed448 keys, whose PublicKey is a
// *brainpool.PublicKey (PublicKeyAlgorithm x509.ECDSA) or an
// ed448.PublicKey (PublicKeyAlgorithm unknown to x509).
func ParseCertificate(der []byte) (*x509.Certificate, error) {
	cert, xerr := x509.ParseCertificate(der)
	if xerr == nil && cert.PublicKey != nil {
		return cert, nil
	}
	parts, err := splitCertificate(der)
	if err != nil {
		if xerr != nil {
			return nil, xerr
		}
		return nil, err
	}
	spki := parts.tbsFields[parts.spki]
	pub, err := ParsePublicKey(spki)
	if err != nil {
		if xerr != nil {
			return nil, xerr
		}
		return nil, err
	}
	if xerr == nil { // Ed448: x509 parsed all but the key
		cert.PublicKey = pub
		return cert, nil
	}
	fields := append([][]byte(nil), parts.tbsFields...)
	fields[parts.spki] = placeholderSPKI
	sub, _, err := assemble(fields, parts.sigAlg, parts.sig)
	if err != nil {
		return nil, err
	}
	if cert, err = x509.ParseCertificate(sub); err != nil {
		return nil, err
	}
	cert.Raw = der
	cert.RawTBSCertificate = parts.tbs
	cert.RawSubjectPublicKeyInfo = spki
	cert.PublicKey = pub
	cert.PublicKeyAlgorithm = x509.ECDSA
	return cert, nil
}

// CheckSignature checks that parent's key signed c: ECDSA with SHA-256 or
// SHA-384 for a brainpool key, Ed448 for an Ed448 key, x509's
// CheckSignature for any other.
func CheckSignature(c, parent *x509.Certificate) error {
	switch parent.PublicKey.(type) {
	case *brainpool.PublicKey, ed448.PublicKey:
		return checkSigned(c.Raw, parent.PublicKey)
	}
	return parent.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature)
}

// CheckCRLSignature checks that issuer's key signed crl, as CheckSignature
// does for certificates.
func CheckCRLSignature(crl *x509.RevocationList, issuer *x509.Certificate) error {
	switch issuer.PublicKey.(type) {
	case *brainpool.PublicKey, ed448.PublicKey:
		return checkSigned(crl.Raw, issuer.PublicKey)
	}
	return crl.CheckSignatureFrom(issuer)
}

// splitSigned splits a signed structure (certificate, CRL): to-be-signed
// part, signature algorithm, signature.
func splitSigned(der []byte) (tbs, sigAlg, sig []byte, err error) {
	input := cryptobyte.String(der)
	var outer, t, a cryptobyte.String
	var bits asn1.BitString
	if !input.ReadASN1(&outer, cbasn1.SEQUENCE) || !input.Empty() || !outer.ReadASN1Element(&t, cbasn1.SEQUENCE) ||
		!outer.ReadASN1Element(&a, cbasn1.SEQUENCE) || !outer.ReadASN1BitString(&bits) || !outer.Empty() || bits.BitLength%8 != 0 {
		return nil, nil, nil, errMalformed
	}
	return t, a, bits.Bytes, nil
}

// checkSigned verifies the signature of a signed structure with a
// brainpool or Ed448 key.
func checkSigned(der []byte, key crypto.PublicKey) error {
	tbs, sigAlg, sig, err := splitSigned(der)
	if err != nil {
		return err
	}
	oid, _, ok := algorithm(sigAlg)
	if !ok {
		return errMalformed
	}
	switch pub := key.(type) {
	case *brainpool.PublicKey:
		var digest []byte
		switch {
		case oid.Equal(oidECDSAWithSHA256):
			d := sha256.Sum256(tbs)
			digest = d[:]
		case oid.Equal(oidECDSAWithSHA384):
			d := sha512.Sum384(tbs)
			digest = d[:]
		default:
			return fmt.Errorf("x509ecc: signature algorithm %v does not go with a %s key", oid, pub.Curve().Name())
		}
		if !brainpool.VerifyASN1(pub, digest, sig) {
			return errors.New("x509ecc: ECDSA signature does not verify")
		}
		return nil
	case ed448.PublicKey:
		if !oid.Equal(oidEd448) {
			return fmt.Errorf("x509ecc: signature algorithm %v does not go with an Ed448 key", oid)
		}
		if !ed448.Verify(pub, tbs, sig, "") {
			return errors.New("x509ecc: Ed448 signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("x509ecc: key of type %T is neither brainpool nor Ed448", key)
}

// CreateSelfSigned makes a self-signed certificate of template for a
// brainpool or Ed448 key. crypto/x509 builds it with a throwaway key of a
// type it knows (P-256, Ed25519); the subjectPublicKeyInfo and the
// signature algorithm are then replaced and the TBSCertificate signed
// again with key. The subject key identifier is the real key's.
func CreateSelfSigned(template *x509.Certificate, key crypto.Signer) ([]byte, error) {
	spki, err := MarshalPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	t := *template
	var throwaway crypto.Signer
	var sigAlg []byte
	var sign func(tbs []byte) ([]byte, error)
	switch k := key.(type) {
	case *brainpool.PrivateKey:
		if throwaway, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, err
		}
		oid := oidECDSAWithSHA256
		t.SignatureAlgorithm = x509.ECDSAWithSHA256
		h := crypto.SHA256
		if k.Curve() == brainpool.P384r1() {
			oid, t.SignatureAlgorithm, h = oidECDSAWithSHA384, x509.ECDSAWithSHA384, crypto.SHA384
		}
		if sigAlg, err = algorithmIdentifier(oid); err != nil {
			return nil, err
		}
		sign = func(tbs []byte) ([]byte, error) {
			d := h.New()
			d.Write(tbs)
			return k.Sign(rand.Reader, d.Sum(nil), h)
		}
	case ed448.PrivateKey:
		if _, throwaway, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return nil, err
		}
		t.SignatureAlgorithm = x509.PureEd25519
		if sigAlg, err = algorithmIdentifier(oidEd448); err != nil {
			return nil, err
		}
		sign = func(tbs []byte) ([]byte, error) { return ed448.Sign(k, tbs, ""), nil }
	default:
		return nil, fmt.Errorf("x509ecc: key of type %T is neither brainpool nor Ed448", key)
	}
	if len(t.SubjectKeyId) == 0 {
		s, err := subjectKeyID(spki)
		if err != nil {
			return nil, err
		}
		t.SubjectKeyId = s
	}
	tmp, err := x509.CreateCertificate(rand.Reader, &t, &t, throwaway.Public(), throwaway)
	if err != nil {
		return nil, err
	}
	parts, err := splitCertificate(tmp)
	if err != nil {
		return nil, err
	}
	fields := append([][]byte(nil), parts.tbsFields...)
	fields[parts.spki] = spki
	fields[parts.spki-4] = sigAlg
	_, tbs, err := assemble(fields, sigAlg, nil)
	if err != nil {
		return nil, err
	}
	sig, err := sign(tbs)
	if err != nil {
		return nil, fmt.Errorf("x509ecc: sign certificate: %w", err)
	}
	der, _, err := assemble(fields, sigAlg, sig)
	return der, err
}

func algorithmIdentifier(oid asn1.ObjectIdentifier) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oid) })
	return b.Bytes()
}

// subjectKeyID is the SHA-1 of the key's BIT STRING (RFC 5280 4.2.1.2 (1)).
func subjectKeyID(spki []byte) ([]byte, error) {
	s := cryptobyte.String(spki)
	var inner cryptobyte.String
	var bits asn1.BitString
	if !s.ReadASN1(&inner, cbasn1.SEQUENCE) || !inner.SkipASN1(cbasn1.SEQUENCE) || !inner.ReadASN1BitString(&bits) {
		return nil, errors.New("x509ecc: malformed public key info")
	}
	sum := sha1.Sum(bits.Bytes)
	return sum[:], nil
}
