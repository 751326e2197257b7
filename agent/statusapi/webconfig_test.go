package statusapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
)

// TestWebConfigTLSBasicAuth: with a web config naming a certificate and a
// user, /metrics is served over TLS to that user's password only, and a
// plain HTTP request is not answered with metrics.
func TestWebConfigTLSBasicAuth(t *testing.T) {
	dir := t.TempDir()
	certPEM := writeSelfSigned(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("scrape-pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	yml := "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  prometheus: " + string(hash) + "\n"
	if err := os.WriteFile(webConfig, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}

	s, err := New(testkit.Addr(t), config.Secret(token), "ipc01", healthySource(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetWebConfig(webConfig); err != nil {
		s.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	base := "https://" + s.Addr()
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	code, _, body := get(t, client, base, "/metrics", basic("prometheus", "scrape-pass"))
	if code != http.StatusOK || !strings.Contains(body, "tagbridge_healthy 1") {
		t.Errorf("GET /metrics with the user's password: %d\n%.300s", code, body)
	}
	for _, auth := range []string{basic("prometheus", "wrong"), "Bearer " + token, ""} {
		if code, _, _ := get(t, client, base, "/metrics", auth); code != http.StatusUnauthorized {
			t.Errorf("GET /metrics with %q: %d, want 401", strings.Fields(auth + " none")[0], code)
		}
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + s.Addr() + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered 200")
		}
	}
}

// TestWebConfigRefused: a web config that does not load stops the start,
// and it is not for a unix socket.
func TestWebConfigRefused(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(bad, []byte("tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(testkit.Addr(t), config.Secret(token), "ipc01", healthySource(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetWebConfig(bad); err == nil || !strings.Contains(err.Error(), "web.yml") {
		t.Errorf("SetWebConfig(missing certificate) = %v, want an error naming the file", err)
	}
	sock := filepath.Join(dir, "status.sock")
	u, err := New(sock, config.Secret(token), "ipc01", healthySource(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := u.SetWebConfig(bad); err == nil || !strings.Contains(err.Error(), "unix socket") {
		t.Errorf("SetWebConfig on a socket = %v, want refused", err)
	}
}

// writeSelfSigned writes cert.pem and key.pem for localhost and 127.0.0.1
// into dir and returns the certificate's PEM.
func writeSelfSigned(t *testing.T, dir string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certPEM
}
