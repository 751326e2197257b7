package certs

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxFile bounds what is read from a certificate, key or CRL file, so a path
// like /dev/zero cannot exhaust memory.
const maxFile = 1 << 20

// LoadKeyPair reads an application instance certificate and its RSA private
// key. Either file may be PEM or DER; the key may be PKCS#1 or PKCS#8. A key
// file that group or others may read is refused, as ssh does. Errors name the
// files but never show their contents.
func LoadKeyPair(certFile, keyFile string) (*x509.Certificate, []byte, *rsa.PrivateKey, error) {
	cert, der, err := LoadCertificate(certFile)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := LoadKey(keyFile)
	if err != nil {
		return nil, nil, nil, err
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, nil, nil, fail(ErrKeyMismatch, "key %s does not match certificate %s", keyFile, certFile)
	}
	return cert, der, key, nil
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
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, ErrBadCertificate // x509's message may quote bytes of the input
	}
	return cert, der, nil
}

// LoadKey reads an RSA private key, PEM or DER, PKCS#1 or PKCS#8, after
// checking the file's permissions with CheckKeyFile.
func LoadKey(file string) (*rsa.PrivateKey, error) {
	if err := CheckKeyFile(file); err != nil {
		return nil, err
	}
	data, err := readFile(file)
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
// DER, PKCS#1 or PKCS#8. Its errors never hold key material.
func ParseKey(data []byte) (*rsa.PrivateKey, error) {
	// "BEGIN ENCRYPTED PRIVATE KEY" (PKCS#8) or "Proc-Type: 4,ENCRYPTED" (legacy PEM).
	if head := string(data[:min(len(data), 4096)]); strings.Contains(head, "-----BEGIN ENCRYPTED") || strings.Contains(head, "4,ENCRYPTED") {
		return nil, fail(ErrBadKey, "encrypted keys are not supported (decrypt with openssl pkey, then chmod 600)")
	}
	der := data
	if b, ok := pemBlock(data, "RSA PRIVATE KEY", "PRIVATE KEY"); ok {
		der = b
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, ErrBadKey
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fail(ErrBadKey, "%T keys are not supported (OPC UA needs RSA)", k)
	}
	return rk, nil
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
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("%s: larger than 1 MiB", file)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%s: empty file", file)
	}
	return data, nil
}
