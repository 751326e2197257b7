package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/cloudflare/circl/sign/ed448"

	"github.com/tagbridge/tagbridge/internal/brainpool"
	"github.com/tagbridge/tagbridge/internal/x509ecc"
)

// RenewOptions describe a renewal: the certificate and key files in use.
type RenewOptions struct {
	CertFile, KeyFile string
	Days              int       // validity; 0 means DefaultDays
	NewKey            bool      // a new key of the same type and size instead of the old one
	Now               time.Time // zero means now
}

// Renew makes a new certificate in place of the one in CertFile: the same
// subject, ApplicationURI, host names and key usages, a new serial number
// and validity. It keeps the key unless NewKey is set; keyPEM is then the
// new key, else nil. Nothing is written.
func Renew(o RenewOptions) (certPEM, keyPEM []byte, err error) {
	old, _, key, err := loadKeyPair(unguarded{}, o.CertFile, o.KeyFile)
	if err != nil {
		return nil, nil, err
	}
	if _, err := ApplicationURI(old); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", o.CertFile, err)
	}
	if o.Days == 0 {
		o.Days = DefaultDays
	}
	if o.Days < 0 {
		return nil, nil, fmt.Errorf("days must be positive, got %d", o.Days)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.NewKey {
		keyType, bits, err := keyTypeOf(key)
		if err != nil {
			return nil, nil, err
		}
		var block *pem.Block
		if key, block, err = generateKey(keyType, bits); err != nil {
			return nil, nil, fmt.Errorf("generate key: %w", err)
		}
		keyPEM = pem.EncodeToMemory(block)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               old.Subject,
		NotBefore:             o.Now.Add(-backdate),
		NotAfter:              o.Now.AddDate(0, 0, o.Days),
		SignatureAlgorithm:    old.SignatureAlgorithm,
		KeyUsage:              old.KeyUsage,
		ExtKeyUsage:           old.ExtKeyUsage,
		BasicConstraintsValid: true,
		URIs:                  old.URIs,
		DNSNames:              old.DNSNames,
		IPAddresses:           old.IPAddresses,
	}
	var der []byte
	switch key.(type) {
	case *brainpool.PrivateKey, ed448.PrivateKey:
		der, err = x509ecc.CreateSelfSigned(tmpl, key)
	default:
		der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// keyTypeOf names a key's type as Generate takes it, with an RSA key's size.
func keyTypeOf(key crypto.Signer) (string, int, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return KeyTypeRSA, k.N.BitLen(), nil
	case *ecdsa.PrivateKey:
		switch k.Curve.Params().Name {
		case "P-256":
			return KeyTypeNistP256, 0, nil
		case "P-384":
			return KeyTypeNistP384, 0, nil
		}
	case ed25519.PrivateKey:
		return KeyTypeEd25519, 0, nil
	case ed448.PrivateKey:
		return KeyTypeEd448, 0, nil
	case *brainpool.PrivateKey:
		switch k.Public().(*brainpool.PublicKey).Curve() {
		case brainpool.P256r1():
			return KeyTypeBrainpoolP256r1, 0, nil
		case brainpool.P384r1():
			return KeyTypeBrainpoolP384r1, 0, nil
		}
	}
	return "", 0, errors.New("renew with a new key: key type not supported")
}
