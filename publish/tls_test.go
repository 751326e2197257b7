package publish

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
)

// pki writes a CA, and certificates and keys it signed, as PEM files in dir.
type pki struct {
	t    *testing.T
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate
}

func newPKI(t *testing.T, name string) *pki {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{t: t, dir: dir, ca: ca, key: key, file: filepath.Join(dir, name+".pem")}
	p.write(p.file, "CERTIFICATE", der)
	return p
}

// issue returns the files of a new certificate for dnsName.
func (p *pki) issue(name, dnsName string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: dnsName},
		DNSNames:  []string{dnsName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+".key")
	p.write(certFile, "CERTIFICATE", der)
	p.write(keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func (p *pki) write(file, typ string, der []byte) {
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

func TestPublishTLS(t *testing.T) {
	ca := newPKI(t, "ca")
	other := newPKI(t, "other-ca")
	serverCert, serverKey := ca.issue("server", "broker.test", x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := ca.issue("client", "tagbridge", x509.ExtKeyUsageClientAuth)
	// The certificate names broker.test only, so the address does not match.
	b := testkit.StartBroker(t, testkit.WithTLS(serverCert, serverKey, ca.file))

	tests := []struct {
		name string
		tls  config.TLS
		want string // "" to connect, else a part of the logged error
	}{
		{"verified", config.TLS{CAFile: ca.file, ServerName: "broker.test", CertFile: clientCert, KeyFile: clientKey}, ""},
		{"insecure", config.TLS{InsecureSkipVerify: true, CertFile: clientCert, KeyFile: clientKey}, ""},
		{"address not in certificate", config.TLS{CAFile: ca.file, CertFile: clientCert, KeyFile: clientKey}, "doesn't contain any IP SANs"},
		{"unknown authority", config.TLS{CAFile: other.file, ServerName: "broker.test", CertFile: clientCert, KeyFile: clientKey}, "certificate signed by unknown authority"},
		{"no client certificate", config.TLS{CAFile: ca.file, ServerName: "broker.test"}, "cannot connect to broker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := testkit.NewLogger(t, "publisher")
			cfg := testkit.Config(b.URL(), 1)
			cfg.MQTT.TLS = tt.tls
			cfg.Agent.AllowedCertDirs = []string{ca.dir, other.dir}
			p := newPublisher(t, cfg, log)
			in := make(chan collectors.Event, 1)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx, in) }()
			if tt.want == "" {
				in <- collectors.Event{Batch: collectors.Batch{seqSample(1)}}
				close(in)
				if err := result(t, done); err != nil {
					t.Fatalf("Run: %v", err)
				}
				if st := p.Stats(); st.Published != 1 {
					t.Errorf("Stats = %+v, want 1 published", st)
				}
				cancel()
				return
			}
			logs.WaitFor(t, wait, "cannot connect to broker", tt.want)
			cancel()
			if err := result(t, done); err != nil {
				t.Errorf("Run = %v", err)
			}
		})
	}
}

func TestTLSConfig(t *testing.T) {
	ca := newPKI(t, "ca")
	cert, key := ca.issue("client", "tagbridge", x509.ExtKeyUsageClientAuth)
	guard := certs.Guard{Dirs: []string{ca.dir}}
	tc, err := tlsConfig(config.TLS{CAFile: ca.file, CertFile: cert, KeyFile: key, ServerName: "b"}, guard)
	if err != nil {
		t.Fatal(err)
	}
	if tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "b" || tc.InsecureSkipVerify {
		t.Errorf("tls.Config = %+v", tc)
	}
	if _, err := tlsConfig(config.TLS{CAFile: key}, guard); err == nil || err.Error() != "ca_file "+key+": no PEM certificate found" {
		t.Errorf("key as CA: %v", err)
	}
	// A key reached through a symlink that leads out of the allowed
	// directories is refused when it is opened, not only at load.
	outside := t.TempDir()
	moved := filepath.Join(outside, "key.pem")
	if err := os.Rename(key, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(moved, key); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsConfig(config.TLS{CertFile: cert, KeyFile: key}, guard); !errors.Is(err, certs.ErrNotAllowed) {
		t.Errorf("key outside the allowed directories: %v", err)
	}
}
