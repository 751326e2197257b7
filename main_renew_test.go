package main

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagbridge/tagbridge/certs"
)

func TestCertsRenew(t *testing.T) {
	for _, keyType := range []string{certs.KeyTypeRSA, certs.KeyTypeNistP256} {
		t.Run(keyType, func(t *testing.T) {
			dir := t.TempDir()
			var out bytes.Buffer
			if code := run([]string{"certs", "create", "--dir", dir, "--agent-id", "line1", "--hostname", "ipc1", "--key-type", keyType, "--days", "10"}, &out, &out); code != exitOK {
				t.Fatalf("certs create: exit %d\n%s", code, out.String())
			}
			certName, keyName := "client-cert.pem", "client-key.pem"
			if keyType != certs.KeyTypeRSA {
				certName, keyName = "client-cert-"+keyType+".pem", "client-key-"+keyType+".pem"
			}
			certPath, keyPath := filepath.Join(dir, certName), filepath.Join(dir, keyName)
			first := loadCert(t, certPath)
			firstKey, _ := os.ReadFile(keyPath)

			// Renew keeping the key.
			out.Reset()
			if code := run([]string{"certs", "renew", "--dir", dir, "--key-type", keyType, "--days", "400"}, &out, &out); code != exitOK {
				t.Fatalf("certs renew: exit %d\n%s", code, out.String())
			}
			renewed := loadCert(t, certPath)
			for _, want := range []string{"ApplicationURI:      urn:ipc1:tagbridge:line1 (unchanged)", "key:                 kept", "Import " + strings.TrimSuffix(certPath, ".pem") + ".der into each PLC"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("certs renew output lacks %q:\n%s", want, out.String())
				}
			}
			if renewed.URIs[0].String() != first.URIs[0].String() || renewed.Subject.String() != first.Subject.String() || !slicesEqual(renewed.DNSNames, first.DNSNames) {
				t.Errorf("renewed certificate: URI %v, subject %v, DNS %v; want those of the first", renewed.URIs, renewed.Subject, renewed.DNSNames)
			}
			if !publicKeyEqual(renewed, first) {
				t.Error("renewed certificate has a new key; want the key kept")
			}
			if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 || renewed.NotAfter.Sub(first.NotAfter).Hours() < 389*24 {
				t.Errorf("renewed: serial %v (first %v), not after %v (first %v); want a new serial and 390 more days", renewed.SerialNumber, first.SerialNumber, renewed.NotAfter, first.NotAfter)
			}
			if old := loadCert(t, certPath+".old"); !old.Equal(first) {
				t.Error("the old certificate is not kept as .old")
			}
			if key, _ := os.ReadFile(keyPath); !bytes.Equal(key, firstKey) {
				t.Error("the key file changed though the key was kept")
			}

			// Renew with a new key.
			out.Reset()
			if code := run([]string{"certs", "renew", "--dir", dir, "--key-type", keyType, "--new-key"}, &out, &out); code != exitOK {
				t.Fatalf("certs renew --new-key: exit %d\n%s", code, out.String())
			}
			newer := loadCert(t, certPath)
			if publicKeyEqual(newer, first) || newer.URIs[0].String() != first.URIs[0].String() {
				t.Errorf("renew --new-key: same key %v, URI %v; want a new key and the same URI", publicKeyEqual(newer, first), newer.URIs)
			}
			if old, _ := os.ReadFile(keyPath + ".old"); !bytes.Equal(old, firstKey) {
				t.Error("renew --new-key does not keep the old key as .old")
			}
			if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("new key file mode %v (%v), want 0600", fi.Mode().Perm(), err)
			}
		})
	}
}

func loadCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, _, err := certs.LoadCertificate(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func publicKeyEqual(a, b *x509.Certificate) bool {
	k, ok := a.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b.PublicKey)
}

func slicesEqual(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }
