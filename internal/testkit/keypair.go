package testkit

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tagbridge/tagbridge/certs"
)

// KeyPairFiles generates a certificate and key as `tagbridge certs create`
// does and writes them into dir as client-cert.pem (0644) and
// client-key.pem (0600).
func KeyPairFiles(t testing.TB, dir string, o certs.Options) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := certs.Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "client-cert.pem"), filepath.Join(dir, "client-key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
