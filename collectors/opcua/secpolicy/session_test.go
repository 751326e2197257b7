package secpolicy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"strings"
	"testing"

	"github.com/gopcua/opcua/ua"
)

// Part 7's algorithm URIs, per policy.
var wantAlgorithms = map[Policy]struct {
	signature, encryption string
	hash                  crypto.Hash
	pss                   bool
	oaep                  func() hash.Hash
}{
	Basic128Rsa15:       {"http://www.w3.org/2000/09/xmldsig#rsa-sha1", "http://www.w3.org/2001/04/xmlenc#rsa-1_5", crypto.SHA1, false, nil},
	Basic256:            {"http://www.w3.org/2000/09/xmldsig#rsa-sha1", "http://www.w3.org/2001/04/xmlenc#rsa-oaep", crypto.SHA1, false, sha1.New},
	Basic256Sha256:      {"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2001/04/xmlenc#rsa-oaep", crypto.SHA256, false, sha1.New},
	Aes128Sha256RsaOaep: {"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2001/04/xmlenc#rsa-oaep", crypto.SHA256, false, sha1.New},
	Aes256Sha256RsaPss:  {"http://opcfoundation.org/UA/security/rsa-pss-sha2-256", "http://opcfoundation.org/UA/security/rsa-oaep-sha2-256", crypto.SHA256, true, sha256.New},
}

// TestSessionSignature signs as the client would (CreateSession's client
// signature) and checks the signature with crypto/rsa directly, with the
// hash and scheme Part 7 names for the policy.
func TestSessionSignature(t *testing.T) {
	data := []byte("server certificate and server nonce")
	for _, rp := range rsaPolicies {
		t.Run(rp.policy.Name(), func(t *testing.T) {
			want := wantAlgorithms[rp.policy]
			if got := rp.policy.SignatureAlgorithm(); got != want.signature {
				t.Errorf("SignatureAlgorithm = %q, want %q", got, want.signature)
			}
			kp := keyPair(t, keyName("client", rp.bits))
			sig, err := rp.policy.Sign(kp.Key, data)
			if err != nil {
				t.Fatal(err)
			}
			pub := &kp.Key.(*rsa.PrivateKey).PublicKey
			h := want.hash.New()
			h.Write(data)
			if want.pss {
				// Part 7: the salt is as long as the hash (32 bytes).
				err = rsa.VerifyPSS(pub, want.hash, h.Sum(nil), sig, &rsa.PSSOptions{SaltLength: 32})
			} else {
				err = rsa.VerifyPKCS1v15(pub, want.hash, h.Sum(nil), sig)
			}
			if err != nil {
				t.Fatalf("crypto/rsa rejects the signature: %v", err)
			}
			cert := parseCert(t, kp)
			if err := rp.policy.Verify(cert, data, sig); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if err := rp.policy.Verify(cert, append(bytes.Clone(data), 0), sig); err == nil {
				t.Fatal("Verify accepted a signature over other data")
			}
			other := parseCert(t, keyPair(t, keyName("server", rp.bits)))
			if err := rp.policy.Verify(other, data, sig); err == nil {
				t.Fatal("Verify accepted a signature of another key")
			}
		})
	}
}

// TestEncryptSecret decrypts the password token with crypto/rsa and reads
// Part 4 7.41.2.2's legacy layout back.
func TestEncryptSecret(t *testing.T) {
	nonce := bytes.Repeat([]byte{0xA5}, 32)
	for _, rp := range rsaPolicies {
		for _, secret := range [][]byte{[]byte("s3cret"), nil, bytes.Repeat([]byte("long password "), 40)} {
			t.Run(rp.policy.Name(), func(t *testing.T) {
				want := wantAlgorithms[rp.policy]
				kp := keyPair(t, keyName("server", rp.bits))
				ct, alg, err := rp.policy.EncryptSecret(parseCert(t, kp), secret, nonce)
				if err != nil {
					t.Fatal(err)
				}
				if alg != want.encryption {
					t.Errorf("algorithm %q, want %q", alg, want.encryption)
				}
				key := kp.Key.(*rsa.PrivateKey)
				if len(ct)%key.Size() != 0 {
					t.Fatalf("%d bytes of ciphertext for a %d-byte key", len(ct), key.Size())
				}
				var plain []byte
				for i := 0; i < len(ct); i += key.Size() {
					var pt []byte
					if want.oaep != nil {
						pt, err = rsa.DecryptOAEP(want.oaep(), nil, key, ct[i:i+key.Size()], nil)
					} else {
						pt, err = rsa.DecryptPKCS1v15(nil, key, ct[i:i+key.Size()])
					}
					if err != nil {
						t.Fatalf("block %d: %v", i/key.Size(), err)
					}
					plain = append(plain, pt...)
				}
				if len(plain) < 4 || int(binary.LittleEndian.Uint32(plain)) != len(secret)+len(nonce) {
					t.Fatalf("length prefix of %x, want %d", plain[:min(4, len(plain))], len(secret)+len(nonce))
				}
				if got := plain[4:]; !bytes.Equal(got, append(bytes.Clone(secret), nonce...)) {
					t.Fatal("plaintext is not secret followed by the server nonce")
				}
			})
		}
	}
}

func TestNonePolicy(t *testing.T) {
	secret := []byte("plain")
	got, alg, err := None.EncryptSecret(nil, secret, []byte("nonce"))
	if err != nil || alg != "" || !bytes.Equal(got, secret) {
		t.Fatalf("EncryptSecret = %q, %q, %v; want the secret as is with no algorithm", got, alg, err)
	}
	if sig, err := None.Sign(nil, []byte("x")); sig != nil || err != nil {
		t.Fatalf("Sign = %x, %v", sig, err)
	}
	if None.SignatureAlgorithm() != "" || None.NonceLength() != 0 || None.Deprecated() {
		t.Fatal("None signs, has a nonce or is deprecated")
	}
	ex, err := None.NewExchange()
	if err != nil || len(ex.Nonce()) != 0 {
		t.Fatalf("None exchange: nonce %x, %v", ex.Nonce(), err)
	}
}

func TestCheckKey(t *testing.T) {
	ec := keyPair(t, "ec-p256").Key.(*ecdsa.PrivateKey).Public()
	rsaPub := func(bits int) crypto.PublicKey {
		return keyPair(t, keyName("client", bits)).Key.(*rsa.PrivateKey).Public()
	}
	cases := []struct {
		policy Policy
		key    crypto.PublicKey
		want   string // "" for usable
	}{
		{Basic256Sha256, ec, "policy Basic256Sha256 needs an RSA key; the certificate has an ECDSA P-256 key"},
		{Aes256Sha256RsaPss, ec, "policy Aes256_Sha256_RsaPss needs an RSA key; the certificate has an ECDSA P-256 key"},
		{Basic256Sha256, rsaPub(1024), "policy Basic256Sha256 needs an RSA key of 2048 to 4096 bits; the certificate has an RSA 1024-bit key"},
		{Basic128Rsa15, rsaPub(3072), "policy Basic128Rsa15 needs an RSA key of 1024 to 2048 bits; the certificate has an RSA 3072-bit key"},
		{Basic256, rsaPub(4096), "policy Basic256 needs an RSA key of 1024 to 2048 bits; the certificate has an RSA 4096-bit key"},
		{Basic128Rsa15, rsaPub(1024), ""},
		{Basic256, rsaPub(2048), ""},
		{Basic256Sha256, rsaPub(2048), ""},
		{Aes128Sha256RsaOaep, rsaPub(3072), ""},
		{Aes256Sha256RsaPss, rsaPub(4096), ""},
		{None, ec, ""},
		{None, nil, ""},
	}
	for _, tc := range cases {
		err := tc.policy.CheckKey(tc.key)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || err.Error() != tc.want) {
			t.Errorf("%s.CheckKey(%s) = %v, want %q", tc.policy.Name(), describeKey(tc.key), err, tc.want)
		}
	}
}

func TestAsymmetricRefusesKeys(t *testing.T) {
	client, server := keyPair(t, "client-2048"), keyPair(t, "server-2048")
	ec := keyPair(t, "ec-p256")
	cases := []struct {
		name   string
		local  *KeyPair
		remote []byte
		want   string
	}{
		{"no local key pair", nil, server.Certificate, "needs a local certificate and key"},
		{"EC server certificate", client, ec.Certificate, "remote certificate: policy Basic256Sha256 needs an RSA key; the certificate has an ECDSA P-256 key"},
		{"EC local key", ec, server.Certificate, "needs an RSA key; the local key is of type *ecdsa.PrivateKey"},
		{"key of another certificate", &KeyPair{Certificate: client.Certificate, Key: server.Key}, server.Certificate, "local key does not belong to the local certificate"},
		{"no server certificate", client, nil, "remote certificate: no certificate"},
		{"garbage server certificate", client, []byte{0x30, 0x03, 1, 2, 3}, "remote certificate: parse certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Basic256Sha256.Asymmetric(encrypt, tc.local, tc.remote)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Asymmetric: %v; want an error with %q", err, tc.want)
			}
		})
	}
	// A certificate followed by its chain, as OPC UA sends it.
	chained := append(bytes.Clone(server.Certificate), client.Certificate...)
	if _, err := Basic256Sha256.Asymmetric(encrypt, client, chained); err != nil {
		t.Fatalf("certificate with chain: %v", err)
	}
}

func TestExchangeNonces(t *testing.T) {
	for _, rp := range rsaPolicies {
		p := rp.policy
		a, err := p.NewExchange()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := p.NewExchange()
		if len(a.Nonce()) != p.NonceLength() || bytes.Equal(a.Nonce(), b.Nonce()) {
			t.Errorf("%s: nonces %x and %x, want two different of %d bytes", p.Name(), a.Nonce(), b.Nonce(), p.NonceLength())
		}
		for _, n := range []int{0, 1, p.NonceLength() - 1} {
			if _, err := a.Symmetric(encrypt, make([]byte, n)); err == nil {
				t.Errorf("%s: a server nonce of %d bytes accepted", p.Name(), n)
			}
		}
		if _, err := a.Symmetric(encrypt, make([]byte, 64)); err != nil {
			t.Errorf("%s: a longer server nonce refused: %v", p.Name(), err)
		}
	}
	if Basic128Rsa15.NonceLength() != 16 || Basic256Sha256.NonceLength() != 32 {
		t.Fatal("nonce lengths differ from Part 7")
	}
}

func TestLookup(t *testing.T) {
	want := map[string]Policy{
		"None":                  None,
		"Basic128Rsa15":         Basic128Rsa15,
		"Basic256":              Basic256,
		"Basic256Sha256":        Basic256Sha256,
		"Aes128_Sha256_RsaOaep": Aes128Sha256RsaOaep,
		"Aes256_Sha256_RsaPss":  Aes256Sha256RsaPss,
		"ECC_nistP256":          EccNistP256,
		"ECC_nistP384":          EccNistP384,
	}
	for name, p := range want {
		if got, err := ByName(name); err != nil || got != p {
			t.Errorf("ByName(%q) = %v, %v", name, got, err)
		}
		uri := "http://opcfoundation.org/UA/SecurityPolicy#" + name
		if got, err := ByURI(uri); err != nil || got != p || p.URI() != uri {
			t.Errorf("ByURI(%q) = %v, %v", uri, got, err)
		}
		if p.Deprecated() != (name == "Basic128Rsa15" || name == "Basic256") {
			t.Errorf("%s: Deprecated() = %v", name, p.Deprecated())
		}
	}
	if _, err := ByName("Basic512"); err == nil || !strings.Contains(err.Error(), `"Basic512"`) {
		t.Errorf("ByName(Basic512) = %v", err)
	}
	uri := "http://opcfoundation.org/UA/SecurityPolicy#ECC_sect571r1"
	if _, err := ByURI(uri); err == nil || !strings.Contains(err.Error(), uri) {
		t.Errorf("ByURI(ECC_sect571r1) = %v", err)
	}
}

// The security mode None on an RSA policy, and the None policy, leave
// chunks as they are.
func TestModeNonePassesThrough(t *testing.T) {
	for _, c := range []ChunkCrypto{
		asymPair(t, Basic256Sha256, ua.MessageSecurityModeNone, 2048, 2048).client,
		asymPair(t, None, ua.MessageSecurityModeNone, 2048, 2048).client,
		symPair(t, None, ua.MessageSecurityModeNone).client,
	} {
		body := testBody(50)
		in := testChunk("MSG", symHdrLen, body)
		want := bytes.Clone(in)
		out, err := c.Seal(in, symHdrLen)
		if err != nil || !bytes.Equal(out, want) {
			t.Fatalf("%T: Seal changed the chunk (%v)", c, err)
		}
		if got, err := c.Open(out, symHdrLen); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%T: Open: %v", c, err)
		}
		if got := c.MaxBody(8192, symHdrLen); got != 8192-symHdrLen {
			t.Fatalf("%T: MaxBody = %d", c, got)
		}
	}
}
