package x509ecc

import (
	"crypto"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/sign/ed448"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/tagbridge/tagbridge/internal/brainpool"
)

var errBadKey = errors.New("x509ecc: not a brainpool or Ed448 private key")

// ParsePrivateKey parses a DER brainpool key (SEC 1 ECPrivateKey, or
// PKCS#8) or Ed448 key (PKCS#8, RFC 8410): *brainpool.PrivateKey or
// ed448.PrivateKey. Its errors never hold key material.
func ParsePrivateKey(der []byte) (crypto.Signer, error) {
	if k, err := parseSEC1(der, nil); err == nil {
		return k, nil
	}
	s := cryptobyte.String(der)
	var info, algID, key cryptobyte.String
	var version int
	if !s.ReadASN1(&info, cbasn1.SEQUENCE) || !s.Empty() || !info.ReadASN1Integer(&version) || version > 1 ||
		!info.ReadASN1Element(&algID, cbasn1.SEQUENCE) || !info.ReadASN1(&key, cbasn1.OCTET_STRING) {
		return nil, errBadKey
	}
	oid, params, ok := algorithm(algID)
	if !ok {
		return nil, errBadKey
	}
	switch {
	case oid.Equal(oidECPublicKey):
		var curve asn1.ObjectIdentifier
		if !params.ReadASN1ObjectIdentifier(&curve) || curveByOID(curve) == nil {
			return nil, errBadKey
		}
		return parseSEC1(key, curveByOID(curve))
	case oid.Equal(oidEd448):
		var seed cryptobyte.String
		if !key.ReadASN1(&seed, cbasn1.OCTET_STRING) || !key.Empty() || len(seed) != ed448.SeedSize {
			return nil, errBadKey
		}
		return ed448.NewKeyFromSeed(seed), nil
	}
	return nil, errBadKey
}

// parseSEC1 parses an ECPrivateKey (RFC 5915) on a brainpool curve: the one
// named in it, or curve (from PKCS#8) when it names none.
func parseSEC1(der []byte, curve *brainpool.Curve) (*brainpool.PrivateKey, error) {
	s := cryptobyte.String(der)
	var seq, d cryptobyte.String
	var version int
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() || !seq.ReadASN1Integer(&version) || version != 1 ||
		!seq.ReadASN1(&d, cbasn1.OCTET_STRING) {
		return nil, errBadKey
	}
	var params cryptobyte.String
	var present bool
	if !seq.ReadOptionalASN1(&params, &present, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, errBadKey
	}
	if present {
		var oid asn1.ObjectIdentifier
		if !params.ReadASN1ObjectIdentifier(&oid) {
			return nil, errBadKey
		}
		named := curveByOID(oid)
		if named == nil || (curve != nil && named != curve) {
			return nil, errBadKey
		}
		curve = named
	}
	if curve == nil || len(d) > curve.Size() {
		return nil, errBadKey
	}
	scalar := make([]byte, curve.Size())
	copy(scalar[curve.Size()-len(d):], d)
	k, err := curve.NewPrivateKey(scalar)
	clear(scalar)
	if err != nil {
		return nil, fmt.Errorf("x509ecc: %s private key out of range", curve.Name())
	}
	return k, nil
}

// MarshalPrivateKey encodes a brainpool key as SEC 1 (PEM type "EC PRIVATE
// KEY", as for the other ECDSA keys) or an Ed448 key as PKCS#8 ("PRIVATE
// KEY", RFC 8410).
func MarshalPrivateKey(key crypto.Signer) (pemType string, der []byte, err error) {
	var b cryptobyte.Builder
	switch k := key.(type) {
	case *brainpool.PrivateKey:
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(1)
			b.AddASN1OctetString(k.Bytes())
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(curveOID(k.Curve()))
			})
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1BitString(k.PublicKey().Bytes())
			})
		})
		pemType = "EC PRIVATE KEY"
	case ed448.PrivateKey:
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(0)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidEd448) })
			b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) { b.AddASN1OctetString(k.Seed()) })
		})
		pemType = "PRIVATE KEY"
	default:
		return "", nil, fmt.Errorf("x509ecc: key of type %T is neither brainpool nor Ed448", key)
	}
	der, err = b.Bytes()
	return pemType, der, err
}
