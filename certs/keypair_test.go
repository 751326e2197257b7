package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/internal/testutil"
)

func TestLoadKeyPair(t *testing.T) {
	k := key(t, 0)
	leaf := mkCert(t, certSpec{cn: "tagbridge", key: k, uri: "urn:host:tagbridge:ipc01"}, nil)
	other := mkCert(t, certSpec{cn: "other", key: key(t, 1)}, nil)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecSEC1, _ := x509.MarshalECPrivateKey(ec)
	ecSEC1PEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecSEC1})
	ecCertPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ecCert(t, ec)})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.cert.Raw})
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	pkcs8PEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})

	tests := []struct {
		name     string
		cert     []byte
		key      []byte
		keyPerm  os.FileMode
		err      error
		contains string
	}{
		{name: "PEM cert, PKCS#1 PEM key", cert: certPEM, key: pkcs1PEM},
		{name: "PEM cert, PKCS#8 PEM key", cert: certPEM, key: pkcs8PEM},
		{name: "DER cert, PKCS#1 DER key", cert: leaf.cert.Raw, key: x509.MarshalPKCS1PrivateKey(k)},
		{name: "DER cert, PKCS#8 DER key", cert: leaf.cert.Raw, key: pkcs8},
		{name: "PEM with a comment before", cert: append([]byte("subject=CN=tagbridge\n"), certPEM...), key: append([]byte("# tagbridge key\n"), pkcs1PEM...)},
		{name: "key read-only for owner", cert: certPEM, key: pkcs1PEM, keyPerm: 0o400},
		{name: "key readable by others", cert: certPEM, key: pkcs1PEM, keyPerm: 0o644, err: ErrKeyPermissions, contains: "is readable by group or others (mode 0644); chmod 600 "},
		{name: "key readable by group", cert: certPEM, key: pkcs1PEM, keyPerm: 0o640, err: ErrKeyPermissions, contains: "(mode 0640)"},
		{name: "key of another certificate", cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.cert.Raw}), key: pkcs1PEM, err: ErrKeyMismatch, contains: "does not match certificate"},
		{name: "garbage certificate", cert: []byte("hello"), key: pkcs1PEM, err: ErrBadCertificate, contains: "not a valid certificate"},
		{name: "garbage key", cert: certPEM, key: []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"), err: ErrBadKey},
		{name: "EC key, RSA certificate", cert: certPEM, key: ecDER, err: ErrKeyMismatch, contains: "(ECDSA P-256) does not match certificate "},
		{name: "RSA key, EC certificate", cert: ecCertPEM, key: pkcs1PEM, err: ErrKeyMismatch, contains: "(RSA 2048-bit) does not match certificate "},
		// Not "invalid": ECC certificates are for the ECC policies.
		{name: "EC key and certificate", cert: ecCertPEM, key: ecSEC1PEM, err: ErrKeyType, contains: " holds an ECDSA P-256 key; the RSA security policies need an RSA key"},
		{name: "RSA key of another certificate: same type", cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.cert.Raw}), key: pkcs8PEM, err: ErrKeyMismatch, contains: "(both RSA 2048-bit, but not the same key)"},
		{name: "legacy encrypted PEM key", cert: certPEM, key: []byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"), err: ErrBadKey, contains: "encrypted keys are not supported"},
		{name: "encrypted key", cert: certPEM, key: []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), err: ErrBadKey, contains: "encrypted keys are not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "cert"), filepath.Join(dir, "key")
			testutil.WriteFile(t, certFile, tc.cert, 0o644)
			perm := tc.keyPerm
			if perm == 0 {
				perm = 0o600
			}
			testutil.WriteFile(t, keyFile, tc.key, perm)
			cert, der, got, err := LoadKeyPair(certFile, keyFile)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.contains) {
					t.Fatalf("err = %v, want %v containing %q", err, tc.err, tc.contains)
				}
				checkNoKeyMaterial(t, err.Error(), tc.key)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(k) || string(der) != string(leaf.cert.Raw) || cert.Subject.CommonName != "tagbridge" {
				t.Fatal("wrong key pair loaded")
			}
			if uri, err := ApplicationURI(cert); err != nil || uri != "urn:host:tagbridge:ipc01" {
				t.Errorf("ApplicationURI = %q, %v", uri, err)
			}
		})
	}
}

// ecCert is a self-signed certificate for an ECDSA key.
func ecCert(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "ec"}, NotBefore: now.AddDate(0, 0, -1), NotAfter: now.AddDate(1, 0, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestLoadAnyKeyPair(t *testing.T) {
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	testutil.WriteFile(t, filepath.Join(dir, "cert"), ecCert(t, ec), 0o644)
	testutil.WriteFile(t, filepath.Join(dir, "key"), ecDER, 0o600)
	cert, _, k, err := Guard{Dirs: []string{dir}}.LoadAnyKeyPair(filepath.Join(dir, "cert"), filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	if got := DescribeKey(cert.PublicKey); got != "ECDSA P-384" || !ec.Equal(k) {
		t.Errorf("DescribeKey = %q, key equal %v", got, ec.Equal(k))
	}
	if got := DescribeKey(&key(t, 0).PublicKey); got != "RSA 2048-bit" {
		t.Errorf("DescribeKey(RSA) = %q", got)
	}
}

func TestCheckValidity(t *testing.T) {
	c := mkCert(t, certSpec{cn: "agent", notBefore: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), notAfter: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, nil)
	tests := []struct {
		now  time.Time
		err  error
		want string
	}{
		{now: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)},
		{now: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), err: ErrExpired,
			want: "certificate c.pem expired on 2026-01-01 00:00:00 UTC (valid from 2025-01-01 00:00:00 UTC to 2026-01-01 00:00:00 UTC; tagbridge certs create writes a new one)"},
		{now: time.Date(2024, 12, 1, 0, 0, 0, 0, time.UTC), err: ErrNotYetValid,
			want: "certificate c.pem is not valid yet (valid from 2025-01-01 00:00:00 UTC to 2026-01-01 00:00:00 UTC; now is 2024-12-01 00:00:00 UTC; is the clock right?)"},
	}
	for _, tc := range tests {
		err := CheckValidity("c.pem", c.cert, tc.now)
		if tc.err == nil {
			if err != nil {
				t.Errorf("%v: %v", tc.now, err)
			}
			continue
		}
		if !errors.Is(err, tc.err) || err.Error() != tc.want {
			t.Errorf("%v: %v\nwant %s", tc.now, err, tc.want)
		}
	}
}

func TestKeyPermissionsMessage(t *testing.T) {
	file := filepath.Join(t.TempDir(), "client.key")
	testutil.WriteFile(t, file, []byte("x"), 0o644)
	_, err := LoadKey(file)
	want := "key file " + file + " is readable by group or others (mode 0644); chmod 600 " + file
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	_, _, err := LoadCertificate("/nonexistent/cert.pem")
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "/nonexistent/cert.pem") {
		t.Errorf("err = %v", err)
	}
	if _, _, err := LoadCertificate("/dev/null"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("err = %v, want not a regular file", err)
	}
}

func TestApplicationURIMissing(t *testing.T) {
	c := mkCert(t, certSpec{cn: "plc"}, nil)
	if _, err := ApplicationURI(c.cert); err == nil || !strings.Contains(err.Error(), `certificate "plc" has no URI`) {
		t.Errorf("err = %v", err)
	}
}

func TestFingerprint(t *testing.T) {
	c := mkCert(t, certSpec{cn: "plc"}, nil)
	fp := Fingerprint(c.cert.Raw)
	if len(fp) != 95 || strings.ToUpper(fp) != fp {
		t.Fatalf("Fingerprint = %q", fp)
	}
	plain := strings.ReplaceAll(fp, ":", "")
	for _, in := range []string{fp, strings.ToLower(fp), plain, strings.ToLower(plain), " " + plain + "\n"} {
		n, ok := NormalizeFingerprint(in)
		if !ok || n != strings.ToLower(plain) {
			t.Errorf("NormalizeFingerprint(%q) = %q, %v", in, n, ok)
		}
	}
	for _, in := range []string{"", "abc", plain[:62], strings.Repeat("zz", 32)} {
		if _, ok := NormalizeFingerprint(in); ok {
			t.Errorf("NormalizeFingerprint(%q) ok", in)
		}
	}
}

// checkNoKeyMaterial fails when msg holds PEM armour or any 16-character
// run of the key's bytes in base64.
func checkNoKeyMaterial(t *testing.T, msg string, keyData []byte) {
	t.Helper()
	if strings.Contains(msg, "-----BEGIN") || strings.Contains(msg, "PRIVATE KEY-----") {
		t.Errorf("error shows PEM armour: %s", msg)
	}
	b64 := base64.StdEncoding.EncodeToString(keyData)
	if p, ok := pemBlock(keyData, "RSA PRIVATE KEY", "PRIVATE KEY"); ok {
		b64 += " " + base64.StdEncoding.EncodeToString(p)
	}
	for i := 0; i+16 <= len(b64); i += 8 {
		if chunk := b64[i : i+16]; !strings.Contains(chunk, " ") && strings.Contains(msg, chunk) {
			t.Errorf("error shows key material %q: %s", chunk, msg)
			return
		}
	}
}

func TestNoKeyMaterialInErrors(t *testing.T) {
	k := key(t, 0)
	der := x509.MarshalPKCS1PrivateKey(k)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der})
	broken := append([]byte(nil), der...)
	broken[len(broken)/2] ^= 0xff
	inputs := map[string][]byte{
		"PEM as certificate":     keyPEM,
		"DER as certificate":     der,
		"truncated PEM key":      keyPEM[:len(keyPEM)/2],
		"corrupted DER key":      broken,
		"PEM key wrong type":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"PEM key in certificate": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: broken}),
	}
	dir := t.TempDir()
	for name, data := range inputs {
		file := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		testutil.WriteFile(t, file, data, 0o600)
		for _, err := range []error{
			func() error { _, _, err := LoadCertificate(file); return err }(),
			func() error { _, err := LoadKey(file); return err }(),
			func() error { _, _, _, err := LoadKeyPair(file, file); return err }(),
		} {
			if err != nil {
				checkNoKeyMaterial(t, err.Error(), keyPEM)
				checkNoKeyMaterial(t, err.Error(), der)
			}
		}
	}
	testutil.WriteFile(t, filepath.Join(dir, "open"), keyPEM, 0o644)
	_, err := LoadKey(filepath.Join(dir, "open"))
	if err == nil {
		t.Fatal("world-readable key loaded")
	}
	checkNoKeyMaterial(t, err.Error(), keyPEM)
}
