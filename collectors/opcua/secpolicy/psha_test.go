package secpolicy

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The TLS 1.2 PRF with SHA-256 is P_SHA256(secret, label + seed) (RFC 5246
// section 5). Vector: "Generating 100 bytes of pseudo-randomness using
// TLS1.2PRF-SHA256", "TLS1.2 PRF test vectors" on the IETF TLS mailing
// list, https://www.ietf.org/mail-archive/web/tls/current/msg03416.html.
func TestPSHA256(t *testing.T) {
	secret := mustHex(t, "9bbe436ba940f017b17652849a71db35")
	seed := append([]byte("test label"), mustHex(t, "a0ba9f936cda311827a6f796ffd5198c")...)
	want := mustHex(t, "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a"+
		"6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab"+
		"4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701"+
		"87347b66")
	for _, n := range []int{1, 32, 33, 64, 100} {
		if got := pHash(sha256.New, secret, seed, n); !bytes.Equal(got, want[:n]) {
			t.Errorf("P_SHA256, %d bytes:\n got %x\nwant %x", n, got, want[:n])
		}
	}
}

// P_SHA1 has no TLS 1.2 vector of its own; two published sources check it.
func TestPSHA1(t *testing.T) {
	// TLS 1.0/1.1: PRF = P_MD5(S1, label + seed) XOR P_SHA1(S2, label +
	// seed), S1 and S2 the halves of the secret (RFC 2246 section 5).
	// Vector: NIST CAVP SP 800-135 KDF, TLS 1.0/1.1, COUNT = 0: the master
	// secret from the pre-master secret, label "master secret", seed
	// ClientHello.random + ServerHello.random (the same vector is OpenSSL's
	// test/recipes/30-test_evp_data/evpkdf_tls11_prf.txt).
	t.Run("nist-cavp-tls10-prf", func(t *testing.T) {
		preMaster := mustHex(t, "bded7fa5c1699c010be23dd06ada3a48349f21e5f86263d512c0c5cc379f0e780ec55d9844b2f1db02a96453513568d0")
		seed := append([]byte("master secret"), mustHex(t,
			"e5acaf549cd25c22d964c0d930fa4b5261d2507fad84c33715b7b9a864020693"+
				"135e4d557fdf3aa6406d82975d5c606a9734c9334b42136e96990fbd5358cdb2")...)
		want := mustHex(t, "2f6962dfbc744c4b2138bb6b3d33054c5ecc14f24851d9896395a44ab3964efc2090c5bf51a0891209f46c1e1e998f62")
		half := len(preMaster) / 2
		got := pHash(md5.New, preMaster[:half], seed, len(want))
		for i, b := range pHash(sha1.New, preMaster[half:], seed, len(want)) {
			got[i] ^= b
		}
		if !bytes.Equal(got, want) {
			t.Errorf("TLS 1.0 PRF:\n got %x\nwant %x", got, want)
		}
	})
	// P_SHA1 alone, with an OPC UA key derivation's lengths: the key
	// derivation vectors of ASNeG OpcUaStack
	// (tst/OpcUaStackCore/Certificate/Random_t.cpp: secret 16 or 32 bytes
	// of 0x01, seed of 0x02, 48 and 72 bytes out); OpenSSL 3.0's
	// `openssl kdf -kdfopt digest:SHA1 ... TLS1-PRF` gives the same bytes.
	t.Run("opcua-basic128rsa15-lengths", func(t *testing.T) {
		got := pHash(sha1.New, bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16), 48)
		want := mustHex(t, "306505906ad66ce8510e76ceda07ecfcd90802c961646b1aa3694de3f096081e18459aa73ef7aedcb8efaa4230c97201")
		if !bytes.Equal(got, want) {
			t.Errorf("P_SHA1:\n got %x\nwant %x", got, want)
		}
	})
	t.Run("opcua-basic256-lengths", func(t *testing.T) {
		got := pHash(sha1.New, bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), 72)
		want := mustHex(t, "e7dee695899af2c5b5603c57cc0bbfb1cef01b0c5b4c1f113a95b064cebd65ed592a4d53dd0b0eb6245c0c64257d8db0"+
			"03bbf1539d01a1c1819027e920114887f9ba1ad070a4b887")
		if !bytes.Equal(got, want) {
			t.Errorf("P_SHA1:\n got %x\nwant %x", got, want)
		}
	})
}
