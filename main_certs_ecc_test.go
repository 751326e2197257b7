package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign/ed448"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/internal/brainpool"
)

// TestCertsCreateKeyTypes writes a certificate of every key type into one
// directory, each under its own names, with the key of its type.
func TestCertsCreateKeyTypes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	guard := certs.Guard{Dirs: []string{filepath.Dir(dir)}}
	for _, tc := range []struct {
		keyType, cert, key string
		curve              elliptic.Curve // nil: RSA
	}{
		{"rsa", "client-cert.pem", "client-key.pem", nil},
		{"nistP256", "client-cert-nistP256.pem", "client-key-nistP256.pem", elliptic.P256()},
		{"nistP384", "client-cert-nistP384.pem", "client-key-nistP384.pem", elliptic.P384()},
		{"brainpoolP256r1", "client-cert-brainpoolP256r1.pem", "client-key-brainpoolP256r1.pem", nil},
		{"brainpoolP384r1", "client-cert-brainpoolP384r1.pem", "client-key-brainpoolP384r1.pem", nil},
		{"ed25519", "client-cert-ed25519.pem", "client-key-ed25519.pem", nil},
		{"ed448", "client-cert-ed448.pem", "client-key-ed448.pem", nil},
	} {
		t.Run(tc.keyType, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run([]string{"certs", "create", "--dir", dir, "--agent-id", "line1-ipc01", "--hostname", "ipc01", "--key-type", tc.keyType}, &stdout, &stderr); code != 0 {
				t.Fatalf("exit code %d\n%s", code, &stderr)
			}
			cert, der, key, err := guard.LoadAnyKeyPair(filepath.Join(dir, tc.cert), filepath.Join(dir, tc.key))
			if err != nil {
				t.Fatal(err)
			}
			switch k := key.Public().(type) {
			case *rsa.PublicKey:
				if tc.curve != nil {
					t.Fatalf("RSA key, want %s", tc.curve.Params().Name)
				}
			case *ecdsa.PublicKey:
				if k.Curve != tc.curve {
					t.Fatalf("%s key, want %v", k.Curve.Params().Name, tc.curve)
				}
			case ed25519.PublicKey:
				if tc.keyType != "ed25519" {
					t.Fatalf("Ed25519 key, want %s", tc.keyType)
				}
			case ed448.PublicKey:
				if tc.keyType != "ed448" {
					t.Fatalf("Ed448 key, want %s", tc.keyType)
				}
			case *brainpool.PublicKey:
				if k.Curve().Name() != tc.keyType {
					t.Fatalf("%s key, want %s", k.Curve().Name(), tc.keyType)
				}
			default:
				t.Fatalf("%T key", k)
			}
			if uri, _ := certs.ApplicationURI(cert); uri != "urn:ipc01:tagbridge:line1-ipc01" {
				t.Errorf("ApplicationURI %q", uri)
			}
			derFile := strings.TrimSuffix(tc.cert, ".pem") + ".der"
			if d, _ := os.ReadFile(filepath.Join(dir, derFile)); !bytes.Equal(d, der) {
				t.Errorf("%s differs from %s", derFile, tc.cert)
			}
			if fi, err := os.Stat(filepath.Join(dir, tc.key)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v %v", tc.key, fi.Mode().Perm(), err)
			}
			if !strings.Contains(stdout.String(), "Import "+filepath.Join(dir, derFile)) {
				t.Errorf("stdout:\n%s", &stdout)
			}
		})
	}
	for _, tc := range []struct{ args, stderr string }{
		{"--key-type nistP521", "--key-type nistP521: want one of rsa, nistP256, nistP384, brainpoolP256r1, brainpoolP384r1, ed25519, ed448"},
		{"--key-type nistP256 --key-size 4096", "--key-size applies to RSA keys, not to --key-type nistP256"},
	} {
		var stdout, stderr bytes.Buffer
		empty := t.TempDir()
		args := append([]string{"certs", "create", "--dir", empty, "--agent-id", "a"}, strings.Fields(tc.args)...)
		if code := run(args, &stdout, &stderr); code != exitConfig || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%s: exit %d, stderr %q; want %d, %q", tc.args, code, &stderr, exitConfig, tc.stderr)
		}
		if entries, _ := os.ReadDir(empty); len(entries) != 0 {
			t.Errorf("%s wrote %v", tc.args, entries)
		}
	}
}
