package brainpool

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"os"
	"testing"

	"github.com/tagbridge/tagbridge/internal/testutil"
)

// TestRFC7027 checks key derivation and ECDH against RFC 7027 Appendix A.1
// (brainpoolP256r1) and A.2 (brainpoolP384r1): dA·G, dB·G and the shared
// x coordinate both ways.
func TestRFC7027(t *testing.T) {
	cases := []struct {
		name                      string
		curve                     *Curve
		dA, xA, yA, dB, xB, yB, z string
	}{
		{
			name:  "A.1 brainpoolP256r1",
			curve: P256r1(),
			dA:    "81DB1EE100150FF2EA338D708271BE38300CB54241D79950F77B063039804F1D",
			xA:    "44106E913F92BC02A1705D9953A8414DB95E1AAA49E81D9E85F929A8E3100BE5",
			yA:    "8AB4846F11CACCB73CE49CBDD120F5A900A69FD32C272223F789EF10EB089BDC",
			dB:    "55E40BC41E37E3E2AD25C3C6654511FFA8474A91A0032087593852D3E7D76BD3",
			xB:    "8D2D688C6CF93E1160AD04CC4429117DC2C41825E1E9FCA0ADDD34E6F1B39F7B",
			yB:    "990C57520812BE512641E47034832106BC7D3E8DD0E4C7F1136D7006547CEC6A",
			z:     "89AFC39D41D3B327814B80940B042590F96556EC91E6AE7939BCE31F3A18BF2B",
		},
		{
			name:  "A.2 brainpoolP384r1",
			curve: P384r1(),
			dA:    "1e20f5e048a5886f1f157c74e91bde2b98c8b52d58e5003d57053fc4b0bd65d6f15eb5d1ee1610df870795143627d042",
			xA:    "68b665dd91c195800650cdd363c625f4e742e8134667b767b1b476793588f885ab698c852d4a6e77a252d6380fcaf068",
			yA:    "55bc91a39c9ec01dee36017b7d673a931236d2f1f5c83942d049e3fa20607493e0d038ff2fd30c2ab67d15c85f7faa59",
			dB:    "032640bc6003c59260f7250c3db58ce647f98e1260acce4acda3dd869f74e01f8ba5e0324309db6a9831497abac96670",
			xB:    "4d44326f269a597a5b58bba565da5556ed7fd9a8a9eb76c25f46db69d19dc8ce6ad18e404b15738b2086df37e71d1eb4",
			yB:    "62d692136de56cbe93bf5fa3188ef58bc8a3a0ec6c1e151a21038a42e9185329b5b275903d192f8d4e1f32fe9cc78c48",
			z:     "0bd9d3a7ea0b3d519d09d8e48d0785fb744a6b355e6304bc51c229fbbce239bbadf6403715c35d4fb2a5444f575d4f42",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.curve
			a, err := c.NewPrivateKey(testutil.Unhex(t, tc.dA))
			if err != nil {
				t.Fatal(err)
			}
			b, err := c.NewPrivateKey(testutil.Unhex(t, tc.dB))
			if err != nil {
				t.Fatal(err)
			}
			wantA := append(append([]byte{4}, testutil.Unhex(t, tc.xA)...), testutil.Unhex(t, tc.yA)...)
			wantB := append(append([]byte{4}, testutil.Unhex(t, tc.xB)...), testutil.Unhex(t, tc.yB)...)
			if got := a.PublicKey().Bytes(); !bytes.Equal(got, wantA) {
				t.Fatalf("dA·G = %x, want %x", got, wantA)
			}
			if got := b.PublicKey().Bytes(); !bytes.Equal(got, wantB) {
				t.Fatalf("dB·G = %x, want %x", got, wantB)
			}
			qA, err := c.NewPublicKey(wantA)
			if err != nil {
				t.Fatal(err)
			}
			qB, err := c.NewPublicKey(wantB)
			if err != nil {
				t.Fatal(err)
			}
			for name, pair := range map[string]struct {
				k *PrivateKey
				q *PublicKey
			}{"dA·QB": {a, qB}, "dB·QA": {b, qA}} {
				z, err := pair.k.ECDH(pair.q)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(z, testutil.Unhex(t, tc.z)) {
					t.Errorf("%s = %x, want %x", name, z, testutil.Unhex(t, tc.z))
				}
			}
			// A point off the curve is refused.
			bad := bytes.Clone(wantA)
			bad[len(bad)-1] ^= 1
			if _, err := c.NewPublicKey(bad); err == nil {
				t.Error("a point off the curve was accepted")
			}
		})
	}
}

type wycheproofFile struct {
	TestGroups []struct {
		PublicKey struct {
			Uncompressed string `json:"uncompressed"`
		} `json:"publicKey"`
		Tests []struct {
			TcID   int    `json:"tcId"`
			Msg    string `json:"msg"`
			Sig    string `json:"sig"`
			Result string `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// TestWycheproofECDSA runs every vector of Wycheproof's IEEE P1363 (r ‖ s)
// ECDSA files for brainpoolP256r1/SHA-256 and brainpoolP384r1/SHA-384
// (C2SP/wycheproof testvectors_v1, copied unchanged into testdata):
// valid signatures verify, invalid ones (edge cases, out-of-range r and s,
// wrong sizes) do not.
func TestWycheproofECDSA(t *testing.T) {
	files := []struct {
		file  string
		curve *Curve
		hash  func([]byte) []byte
	}{
		{"ecdsa_brainpoolP256r1_sha256_p1363_test.json", P256r1(), func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }},
		{"ecdsa_brainpoolP384r1_sha384_p1363_test.json", P384r1(), func(b []byte) []byte { s := sha512.Sum384(b); return s[:] }},
	}
	for _, f := range files {
		t.Run(f.curve.Name(), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile("testdata/" + f.file)
			if err != nil {
				t.Fatal(err)
			}
			var w wycheproofFile
			if err := json.Unmarshal(data, &w); err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, g := range w.TestGroups {
				pub, err := f.curve.NewPublicKey(testutil.Unhex(t, g.PublicKey.Uncompressed))
				if err != nil {
					t.Fatalf("public key %s: %v", g.PublicKey.Uncompressed, err)
				}
				for _, tc := range g.Tests {
					n++
					got := VerifyRaw(pub, f.hash(testutil.Unhex(t, tc.Msg)), testutil.Unhex(t, tc.Sig))
					if want := tc.Result == "valid"; got != want {
						t.Errorf("tcId %d: verify = %v, want %v (%s)", tc.TcID, got, want, tc.Result)
					}
				}
			}
			if n < 200 {
				t.Fatalf("only %d vectors read", n)
			}
		})
	}
}

// TestSignVerify signs with a key of RFC 7027 and checks the signature
// with VerifyRaw and VerifyASN1 (whose verification the Wycheproof vectors
// hold); a changed digest fails.
func TestSignVerify(t *testing.T) {
	for _, c := range []*Curve{P256r1(), P384r1()} {
		t.Run(c.Name(), func(t *testing.T) {
			k, err := c.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			digest := sha512.Sum512([]byte("tagbridge"))
			sig, err := k.SignRaw(rand.Reader, digest[:c.Size()])
			if err != nil {
				t.Fatal(err)
			}
			if len(sig) != 2*c.Size() || !VerifyRaw(k.PublicKey(), digest[:c.Size()], sig) {
				t.Fatalf("own raw signature of %d bytes does not verify", len(sig))
			}
			der, err := k.Sign(rand.Reader, digest[:c.Size()], nil)
			if err != nil {
				t.Fatal(err)
			}
			if !VerifyASN1(k.PublicKey(), digest[:c.Size()], der) {
				t.Fatal("own DER signature does not verify")
			}
			digest[0] ^= 1
			if VerifyRaw(k.PublicKey(), digest[:c.Size()], sig) {
				t.Fatal("signature verifies for another digest")
			}
			other, err := c.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			z1, err := k.ECDH(other.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			z2, err := other.ECDH(k.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(z1, z2) {
				t.Fatal("ECDH differs between the two sides")
			}
		})
	}
}
