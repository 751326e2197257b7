package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cloudflare/circl/sign/ed448"

	"github.com/tagbridge/tagbridge/internal/brainpool"
	"github.com/tagbridge/tagbridge/internal/x509ecc"
)

// maxFile bounds what is read from a certificate, key or CRL file, so a path
// like /dev/zero cannot exhaust memory.
const maxFile = 1 << 20

// LoadKeyPair reads an application instance certificate and its RSA private
// key. Either file may be PEM or DER; the key may be PKCS#1 or PKCS#8. A key
// file that group or others may read is refused, as ssh does. Errors name the
// files but never show their contents. It does not confine the files to the
// allowed directories: at run time, use Guard.LoadKeyPair.
func LoadKeyPair(certFile, keyFile string) (*x509.Certificate, []byte, *rsa.PrivateKey, error) {
	return rsaPair(certFile)(loadKeyPair(unguarded{}, certFile, keyFile))
}

// LoadKeyPair is the package's LoadKeyPair for files that must lie in the
// allowed directories, checked on the files actually opened.
func (g Guard) LoadKeyPair(certFile, keyFile string) (*x509.Certificate, []byte, *rsa.PrivateKey, error) {
	return rsaPair(certFile)(loadKeyPair(g, certFile, keyFile))
}

// LoadAnyKeyPair is Guard.LoadKeyPair for a key of any type tagbridge can
// parse (RSA, ECDSA, Ed25519), for checks that say what a policy needs
// rather than refuse every key that is not RSA.
func (g Guard) LoadAnyKeyPair(certFile, keyFile string) (*x509.Certificate, []byte, crypto.Signer, error) {
	return loadKeyPair(g, certFile, keyFile)
}

// fileReader reads certificate and key files: guarded or not.
type fileReader interface {
	ReadFile(path string) ([]byte, error)
	ReadKeyFile(path string) ([]byte, error)
}

type unguarded struct{}

func (unguarded) ReadFile(path string) ([]byte, error) { return readFile(path) }

func (unguarded) ReadKeyFile(path string) ([]byte, error) {
	if err := CheckKeyFile(path); err != nil {
		return nil, err
	}
	return readFile(path)
}

func loadKeyPair(r fileReader, certFile, keyFile string) (*x509.Certificate, []byte, crypto.Signer, error) {
	data, err := r.ReadFile(certFile)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, der, err := ParseCertificate(data)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certificate file %s: %w", certFile, err)
	}
	if data, err = r.ReadKeyFile(keyFile); err != nil {
		return nil, nil, nil, err
	}
	key, err := parsePrivateKey(data)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("key file %s: %w", keyFile, err)
	}
	if !samePublicKey(cert.PublicKey, key.Public()) {
		cd, kd := DescribeKey(cert.PublicKey), DescribeKey(key.Public())
		if cd != kd {
			return nil, nil, nil, fail(ErrKeyMismatch, "key %s (%s) does not match certificate %s (%s)", keyFile, kd, certFile, cd)
		}
		return nil, nil, nil, fail(ErrKeyMismatch, "key %s does not match certificate %s (both %s, but not the same key)", keyFile, certFile, cd)
	}
	return cert, der, key, nil
}

// rsaPair narrows a pair loaded from certFile to RSA, which the RSA
// security policies need.
func rsaPair(certFile string) func(*x509.Certificate, []byte, crypto.Signer, error) (*x509.Certificate, []byte, *rsa.PrivateKey, error) {
	return func(cert *x509.Certificate, der []byte, key crypto.Signer, err error) (*x509.Certificate, []byte, *rsa.PrivateKey, error) {
		if err != nil {
			return nil, nil, nil, err
		}
		rk, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, nil, nil, fail(ErrKeyType, "certificate %s holds an %s key; the RSA security policies need an RSA key", certFile, DescribeKey(key.Public()))
		}
		return cert, der, rk, nil
	}
}

func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// DescribeKey names a public key's type and size the way a user compares
// them with a policy: "RSA 2048-bit", "ECDSA P-256", "Ed25519".
func DescribeKey(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d-bit", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case ed448.PublicKey:
		return "Ed448"
	case *brainpool.PublicKey:
		return "ECDSA " + k.Curve().Name()
	}
	return fmt.Sprintf("%T", pub)
}

// CheckValidity refuses a certificate of the agent's own that is expired
// or not yet valid at now; the message gives the whole validity period.
func CheckValidity(file string, cert *x509.Certificate, now time.Time) error {
	const day = "2006-01-02 15:04:05 MST"
	period := fmt.Sprintf("valid from %s to %s", cert.NotBefore.UTC().Format(day), cert.NotAfter.UTC().Format(day))
	switch {
	case now.Before(cert.NotBefore):
		return fail(ErrNotYetValid, "certificate %s is not valid yet (%s; now is %s; is the clock right?)", file, period, now.UTC().Format(day))
	case now.After(cert.NotAfter):
		return fail(ErrExpired, "certificate %s expired on %s (%s; tagbridge certs create writes a new one)", file, cert.NotAfter.UTC().Format(day), period)
	}
	return nil
}

// LoadCertificate reads one certificate, PEM or DER, and returns it with its DER bytes.
func LoadCertificate(file string) (*x509.Certificate, []byte, error) {
	data, err := readFile(file)
	if err != nil {
		return nil, nil, err
	}
	cert, der, err := ParseCertificate(data)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate file %s: %w", file, err)
	}
	return cert, der, nil
}

// ParseCertificate parses the first certificate of PEM data, or DER data.
func ParseCertificate(data []byte) (*x509.Certificate, []byte, error) {
	der := data
	if b, ok := pemBlock(data, "CERTIFICATE"); ok {
		der = b
	}
	cert, err := x509ecc.ParseCertificate(der) // x509's parser, and brainpool and Ed448 keys
	if err != nil {
		return nil, nil, ErrBadCertificate // x509's message may quote bytes of the input
	}
	return cert, der, nil
}

// LoadKey reads an RSA private key, PEM or DER, PKCS#1 or PKCS#8, after
// checking the file's permissions with CheckKeyFile.
func LoadKey(file string) (*rsa.PrivateKey, error) {
	data, err := unguarded{}.ReadKeyFile(file)
	if err != nil {
		return nil, err
	}
	key, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", file, err)
	}
	return key, nil
}

// ParseKey parses an RSA private key: PEM (RSA PRIVATE KEY or PRIVATE KEY) or
// DER, PKCS#1 or PKCS#8. Its errors never hold key material; a key of
// another type is ErrKeyType, naming the type.
func ParseKey(data []byte) (*rsa.PrivateKey, error) {
	k, err := parsePrivateKey(data)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fail(ErrKeyType, "holds an %s key; the RSA security policies need an RSA key", DescribeKey(k.Public()))
	}
	return rk, nil
}

// parsePrivateKey parses a private key of any type: PEM or DER, PKCS#1,
// SEC 1 (EC PRIVATE KEY) or PKCS#8.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	// "BEGIN ENCRYPTED PRIVATE KEY" (PKCS#8) or "Proc-Type: 4,ENCRYPTED" (legacy PEM).
	if head := string(data[:min(len(data), 4096)]); strings.Contains(head, "-----BEGIN ENCRYPTED") || strings.Contains(head, "4,ENCRYPTED") {
		return nil, fail(ErrBadKey, "encrypted keys are not supported (decrypt with openssl pkey, then chmod 600)")
	}
	der := data
	if b, ok := pemBlock(data, "RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY"); ok {
		der = b
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		if k, err := x509ecc.ParsePrivateKey(der); err == nil { // brainpool, Ed448
			return k, nil
		}
		return nil, ErrBadKey
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fail(ErrBadKey, "%T keys are not supported", k)
	}
	return signer, nil
}

// CheckKeyFile refuses a private key file with any permission bit for group
// or others, as ssh does.
func CheckKeyFile(file string) error {
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		return fail(ErrKeyPermissions, "key file %s is readable by group or others (mode %04o); chmod 600 %s", file, mode, file)
	}
	return nil
}

// ApplicationURI returns the certificate's URI SAN, the ApplicationURI an
// OPC UA application must present with it.
func ApplicationURI(cert *x509.Certificate) (string, error) {
	if len(cert.URIs) == 0 {
		return "", fmt.Errorf("certificate %q has no URI in its subject alternative names (OPC UA needs the ApplicationURI there)", cert.Subject.CommonName)
	}
	return cert.URIs[0].String(), nil
}

// Fingerprint returns the SHA-256 fingerprint of a DER certificate as
// colon-separated upper-case hex, the way UaExpert and openssl show it.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// NormalizeFingerprint returns a SHA-256 fingerprint written with or without
// colons (or spaces), in any case, as lower-case hex; ok is false when it is not 64 hex digits.
func NormalizeFingerprint(s string) (string, bool) {
	s = strings.ToLower(strings.NewReplacer(":", "", " ", "", "-", "").Replace(strings.TrimSpace(s)))
	if len(s) != 64 {
		return "", false
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", false
	}
	return s, true
}

func fingerprintHex(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// pemBlock returns the bytes of the first PEM block of one of types.
func pemBlock(data []byte, types ...string) ([]byte, bool) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, false
		}
		for _, t := range types {
			if b.Type == t {
				return b.Bytes, true
			}
		}
	}
}

// readFile reads a regular file of at most maxFile bytes.
func readFile(file string) ([]byte, error) {
	// Checked before opening: opening a FIFO could block.
	if fi, err := os.Stat(file); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", file)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAll(f, file)
}
