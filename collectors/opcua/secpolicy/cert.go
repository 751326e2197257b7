package secpolicy

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/sign/ed448"

	"github.com/tagbridge/tagbridge/internal/brainpool"
	"github.com/tagbridge/tagbridge/internal/x509ecc"
)

// leafCertificate parses the first certificate of der: OPC UA sends a
// certificate followed by its chain as one ByteString, and
// x509.ParseCertificate refuses trailing data.
func leafCertificate(der []byte) (*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, errors.New("no certificate")
	}
	var first asn1.RawValue
	if _, err := asn1.Unmarshal(der, &first); err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	cert, err := x509ecc.ParseCertificate(first.FullBytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

// describeKey names a public key's type for errors: "an RSA 2048-bit key",
// "an ECDSA P-256 key".
func describeKey(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case nil:
		return "no key"
	case *rsa.PublicKey:
		return fmt.Sprintf("an RSA %d-bit key", k.N.BitLen())
	case *ecdsa.PublicKey:
		return fmt.Sprintf("an ECDSA %s key", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return "an Ed25519 key"
	case ed448.PublicKey:
		return "an Ed448 key"
	case *brainpool.PublicKey:
		return "an ECDSA " + k.Curve().Name() + " key"
	case *ecdh.PublicKey:
		return fmt.Sprintf("an ECDH %v key", k.Curve())
	}
	return fmt.Sprintf("a key of type %T", pub)
}
