package certs

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// now is the fixed present of the trust tests.
var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

var (
	keysOnce sync.Once
	keys     []*rsa.PrivateKey // 2048 bits, shared: generating them is slow under -race
	weakKey  *rsa.PrivateKey   // 1024 bits
)

// key returns shared test key i (0..5).
func key(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	keysOnce.Do(func() {
		for range 6 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keys = append(keys, k)
		}
		var err error
		if weakKey, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
			panic(err)
		}
	})
	return keys[i]
}

type certSpec struct {
	cn        string
	ca        bool
	key       *rsa.PrivateKey
	notBefore time.Time // zero: now - 1 day
	notAfter  time.Time // zero: now + 1 year
	dns       []string
	ips       []string
	uri       string
	usage     x509.KeyUsage // zero: a sensible default
	serial    int64
}

// issued is a certificate with its key.
type issued struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
}

// mkCert creates a certificate from s, signed by parent (self-signed when nil).
func mkCert(t testing.TB, s certSpec, parent *issued) *issued {
	t.Helper()
	if s.key == nil {
		s.key = key(t, 0)
	}
	if s.notBefore.IsZero() {
		s.notBefore = now.AddDate(0, 0, -1)
	}
	if s.notAfter.IsZero() {
		s.notAfter = now.AddDate(1, 0, 0)
	}
	if s.serial == 0 {
		s.serial = int64(len(s.cn)*1000) + time.Now().UnixNano()%1000
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(s.serial),
		Subject:               pkix.Name{CommonName: s.cn},
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		BasicConstraintsValid: true,
		IsCA:                  s.ca,
		DNSNames:              s.dns,
		KeyUsage:              s.usage,
	}
	if tmpl.KeyUsage == 0 {
		if s.ca {
			tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		} else {
			tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		}
	}
	for _, ip := range s.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	if s.uri != "" {
		u, _ := url.Parse(s.uri)
		tmpl.URIs = []*url.URL{u}
	}
	signer, signerCert := s.key, tmpl
	if parent != nil {
		signer, signerCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &s.key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &issued{c, s.key}
}

// mkCRL creates a CRL by ca revoking serials, valid until nextUpdate.
func mkCRL(t testing.TB, ca *issued, nextUpdate time.Time, serials ...*big.Int) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now.AddDate(0, 0, -2)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(1),
		ThisUpdate:                now.AddDate(0, 0, -1),
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
