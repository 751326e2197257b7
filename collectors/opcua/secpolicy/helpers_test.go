package secpolicy

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/internal/x509ecc"
)

// Test keys are pre-generated (testdata/*.pem, openssl genpkey): making a
// 4096-bit key takes seconds under the race detector.
var testKeys sync.Map // file name -> *KeyPair

// keyPair returns the key of testdata/<name>.pem with a self-signed
// certificate for it.
func keyPair(t testing.TB, name string) *KeyPair {
	t.Helper()
	if kp, ok := testKeys.Load(name); ok {
		return kp.(*KeyPair)
	}
	raw, err := os.ReadFile("testdata/" + name + ".pem")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		t.Fatalf("testdata/%s.pem: no PEM block", name)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		if key, err = x509ecc.ParsePrivateKey(block.Bytes); err != nil { // brainpool, Ed448
			t.Fatalf("testdata/%s.pem: %v", name, err)
		}
	}
	appURI, _ := url.Parse("urn:tagbridge:secpolicy-test:" + name)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "tagbridge secpolicy test " + name, Organization: []string{"tagbridge"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment |
			x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{appURI},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.(crypto.Signer).Public(), key)
	if err != nil {
		der, err = x509ecc.CreateSelfSigned(tmpl, key.(crypto.Signer))
	}
	if err != nil {
		t.Fatalf("certificate for %s: %v", name, err)
	}
	kp, _ := testKeys.LoadOrStore(name, &KeyPair{Certificate: der, Key: key})
	return kp.(*KeyPair)
}

func parseCert(t testing.TB, kp *KeyPair) *x509.Certificate {
	t.Helper()
	c, err := x509ecc.ParseCertificate(kp.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testChunk builds an unsecured chunk: message header, hdrLen-8 bytes of
// channel id and security header filler, then body.
func testChunk(msgType string, hdrLen int, body []byte) []byte {
	c := make([]byte, hdrLen, hdrLen+len(body)+1024)
	copy(c, msgType+"F")
	for i := 8; i < hdrLen; i++ {
		c[i] = byte(i * 7)
	}
	c = append(c, body...)
	binary.LittleEndian.PutUint32(c[4:8], uint32(len(c)))
	return c
}

// testBody is n bytes that start like a sequence header and then count.
func testBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + 5)
	}
	return b
}

// rsaPolicies are all RSA policies with the key sizes their tests use.
var rsaPolicies = []struct {
	policy Policy
	bits   int
}{
	{Basic128Rsa15, 1024},
	{Basic256, 2048},
	{Basic256Sha256, 2048},
	{Aes128Sha256RsaOaep, 2048},
	{Aes256Sha256RsaPss, 4096},
}

func keyName(role string, bits int) string { return fmt.Sprintf("%s-%d", role, bits) }
