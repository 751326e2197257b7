package x509ecc

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/ed448"

	"github.com/tagbridge/tagbridge/internal/brainpool"
)

func pemFile(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	return b.Bytes
}

// TestOpenSSLCertificates parses certificates and keys OpenSSL 3 made
// (testdata, `openssl req -x509 -newkey ...`): the names and SANs come
// through x509, the key is the one of the key file, and the self-signature
// OpenSSL made verifies with our ECDSA and circl's Ed448; a flipped bit in
// the signed part does not.
func TestOpenSSLCertificates(t *testing.T) {
	cases := []struct {
		name, keyFile string
		check         func(any) bool
	}{
		{"brainpoolP256r1", "brainpoolP256r1.key", func(k any) bool { p, ok := k.(*brainpool.PublicKey); return ok && p.Curve() == brainpool.P256r1() }},
		{"brainpoolP256r1", "brainpoolP256r1.sec1.key", func(k any) bool { _, ok := k.(*brainpool.PublicKey); return ok }},
		{"brainpoolP384r1", "brainpoolP384r1.key", func(k any) bool { p, ok := k.(*brainpool.PublicKey); return ok && p.Curve() == brainpool.P384r1() }},
		{"ed448", "ed448.key", func(k any) bool { _, ok := k.(ed448.PublicKey); return ok }},
	}
	for _, tc := range cases {
		t.Run(tc.keyFile, func(t *testing.T) {
			der := pemFile(t, tc.name+".pem")
			cert, err := ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(cert.PublicKey) {
				t.Fatalf("public key of type %T", cert.PublicKey)
			}
			if cert.Subject.CommonName != "openssl "+tc.name || len(cert.URIs) != 1 || cert.URIs[0].String() != "urn:test:"+tc.name || cert.DNSNames[0] != "localhost" {
				t.Fatalf("names: %q %v %v", cert.Subject.CommonName, cert.URIs, cert.DNSNames)
			}
			if !bytes.Equal(cert.Raw, der) || !bytes.Contains(der, cert.RawTBSCertificate) || !bytes.Contains(cert.RawTBSCertificate, cert.RawSubjectPublicKeyInfo) {
				t.Fatal("raw fields are not the original bytes")
			}
			if err := CheckSignature(cert, cert); err != nil {
				t.Fatalf("OpenSSL's self-signature: %v", err)
			}
			key, err := ParsePrivateKey(pemFile(t, tc.keyFile))
			if err != nil {
				t.Fatal(err)
			}
			if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
				t.Fatal("key file's key is not the certificate's")
			}
			bad := bytes.Clone(der)
			i := bytes.Index(bad, []byte("openssl "))
			bad[i] ^= 0x20
			badCert, err := ParseCertificate(bad)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckSignature(badCert, cert); err == nil {
				t.Fatal("a changed certificate verifies")
			}
		})
	}
}

// TestCreateSelfSigned makes certificates for new brainpool and Ed448 keys
// and reads them back: key, names, signature algorithm, self-signature;
// the key survives MarshalPrivateKey and ParsePrivateKey.
func TestCreateSelfSigned(t *testing.T) {
	var keys []crypto.Signer
	for _, c := range []*brainpool.Curve{brainpool.P256r1(), brainpool.P384r1()} {
		k, err := c.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	_, edKey, err := ed448.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys = append(keys, edKey)
	uri, _ := url.Parse("urn:host:tagbridge:a1")
	for _, key := range keys {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(42),
			Subject:      pkix.Name{CommonName: "tagbridge a1"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			URIs:         []*url.URL{uri},
			DNSNames:     []string{"host"},
			KeyUsage:     x509.KeyUsageDigitalSignature,
		}
		der, err := CreateSelfSigned(tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
			t.Fatalf("%T: certificate holds another key", key)
		}
		if cert.Subject.CommonName != "tagbridge a1" || cert.URIs[0].String() != uri.String() || cert.DNSNames[0] != "host" || len(cert.SubjectKeyId) != 20 {
			t.Fatalf("%T: names %q %v %v, key id %x", key, cert.Subject.CommonName, cert.URIs, cert.DNSNames, cert.SubjectKeyId)
		}
		if err := CheckSignature(cert, cert); err != nil {
			t.Fatalf("%T: %v", key, err)
		}
		typ, kder, err := MarshalPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParsePrivateKey(kder)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if !back.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
			t.Fatalf("%s: key changed in its encoding", typ)
		}
	}
}

// TestNotOurs: keys x509 handles, and garbage, are not parsed here.
func TestNotOurs(t *testing.T) {
	if _, err := ParsePrivateKey([]byte{0x30, 0}); err == nil {
		t.Error("an empty sequence parsed as a key")
	}
	if _, err := ParseCertificate([]byte("not a certificate")); err == nil {
		t.Error("garbage parsed as a certificate")
	}
}

// FuzzParseCertificate: a certificate from the network never panics the
// parser, and what parses has a key.
func FuzzParseCertificate(f *testing.F) {
	for _, name := range []string{"brainpoolP256r1.pem", "brainpoolP384r1.pem", "ed448.pem"} {
		f.Add(pemFile(f, name))
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := ParseCertificate(der)
		if err != nil {
			return
		}
		if cert.PublicKey == nil {
			t.Fatal("parsed without a key")
		}
		_ = CheckSignature(cert, cert)
	})
}

// TestCRLSignature checks CRLs OpenSSL's `openssl ca -gencrl` signed with a
// brainpoolP256r1 and an Ed448 CA (testdata): they verify with their CA,
// not with the other one, and not once changed.
func TestCRLSignature(t *testing.T) {
	cas := map[string]*x509.Certificate{}
	for _, name := range []string{"brainpoolP256r1-ca", "ed448-ca"} {
		ca, err := ParseCertificate(pemFile(t, name+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckSignature(ca, ca); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cas[name] = ca
	}
	for name, other := range map[string]string{"brainpoolP256r1-ca": "ed448-ca", "ed448-ca": "brainpoolP256r1-ca"} {
		der := pemFile(t, name+".crl.pem")
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckCRLSignature(crl, cas[name]); err != nil {
			t.Errorf("%s CRL: %v", name, err)
		}
		if err := CheckCRLSignature(crl, cas[other]); err == nil {
			t.Errorf("%s CRL verifies with %s", name, other)
		}
		bad := bytes.Clone(der)
		bad[len(bad)-70] ^= 1 // inside the signed part or the signature
		if crl, err := x509.ParseRevocationList(bad); err == nil && CheckCRLSignature(crl, cas[name]) == nil {
			t.Errorf("%s: a changed CRL verifies", name)
		}
	}
}
