package certs

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

// FuzzParse feeds garbage to the certificate, key and CRL parsers: they may
// refuse it but must not panic, and a refusal never echoes the input.
func FuzzParse(f *testing.F) {
	k := key(f, 0)
	c := mkCert(f, certSpec{cn: "seed", key: k}, nil)
	f.Add(c.cert.Raw)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw}))
	f.Add(x509.MarshalPKCS1PrivateKey(k))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("ENCRYPTED"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, _, err := ParseCertificate(data); err != nil && len(data) > 8 && containsBytes(err.Error(), data) {
			t.Fatalf("certificate error echoes input: %v", err)
		}
		if _, err := ParseKey(data); err != nil && len(data) > 8 && containsBytes(err.Error(), data) {
			t.Fatalf("key error echoes input: %v", err)
		}
		parseCRL(data)
		NormalizeFingerprint(string(data))
	})
}

func containsBytes(s string, b []byte) bool { return strings.Contains(s, string(b)) }
