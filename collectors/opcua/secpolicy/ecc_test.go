package secpolicy

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/scripts/open62541/o62proc"

	"github.com/tagbridge/tagbridge/internal/testutil"
)

var eccPolicies = []struct {
	policy Policy
	key    string // testdata key of the policy's curve
}{
	{EccNistP256, "client-p256"},
	{EccNistP384, "client-p384"},
	{EccCurve25519, "client-ed25519"},
	{EccNistP256AesGcm, "client-p256"},
	{EccNistP256ChaChaPoly, "client-p256"},
	{EccBrainpoolP256r1, "client-bp256"},
	{EccBrainpoolP384r1, "client-bp384"},
	{EccCurve448, "client-ed448"},
}

// TestHKDFVectors checks hkdfKey against RFC 5869 appendix A, test cases 1
// to 3 (SHA-256).
func TestHKDFVectors(t *testing.T) {
	for _, tc := range []struct {
		name, ikm, salt, info, okm string
		n                          int
	}{
		{
			name: "A.1 basic", n: 42,
			ikm:  "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
			salt: "000102030405060708090a0b0c",
			info: "f0f1f2f3f4f5f6f7f8f9",
			okm:  "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
		},
		{
			name: "A.2 long inputs", n: 82,
			ikm: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" +
				"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f",
			salt: "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f" +
				"808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
			info: "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf" +
				"d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
			okm: "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c" +
				"59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
		},
		{
			name: "A.3 empty salt and info", n: 42,
			ikm: "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
			okm: "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hkdfKey(sha256.New, testutil.Unhex(t, tc.ikm), testutil.Unhex(t, tc.salt), testutil.Unhex(t, tc.info), tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if want := testutil.Unhex(t, tc.okm); !bytes.Equal(got, want) {
				t.Fatalf("okm\n got %x\nwant %x", got, want)
			}
		})
	}
}

// TestECDSAFixedSignature verifies a raw r‖s signature made by OpenSSL
// (testdata/ecdsa-p256-vector.txt: `openssl dgst -sha256 -sign` over the
// message, the DER's two integers written out), and refuses it altered.
func TestECDSAFixedSignature(t *testing.T) {
	raw, err := os.ReadFile("testdata/ecdsa-p256-vector.txt")
	if err != nil {
		t.Fatal(err)
	}
	var pubHex, msg, sig string
	for line := range strings.Lines(string(raw)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "pub":
			pubHex = v
		case "msg":
			msg = v
		case "sig":
			sig = v
		}
	}
	der, err := hex.DecodeString(pubHex)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatal(err)
	}
	p := EccNistP256.(*eccPolicy)
	s := testutil.Unhex(t, sig)
	if err := p.verifyRaw(pub.(*ecdsa.PublicKey), []byte(msg), s); err != nil {
		t.Fatalf("OpenSSL's signature: %v", err)
	}
	s[5] ^= 1
	if err := p.verifyRaw(pub.(*ecdsa.PublicKey), []byte(msg), s); err == nil {
		t.Fatal("an altered signature verifies")
	}
	if err := p.verifyRaw(pub.(*ecdsa.PublicKey), []byte(msg), s[:63]); err == nil {
		t.Fatal("a short signature verifies")
	}
}

// TestECCSignRoundTrip: Sign makes raw signatures of the curve's size that
// Verify accepts, and a key of the other curve is refused with both named.
func TestECCSignRoundTrip(t *testing.T) {
	for _, tc := range eccPolicies {
		t.Run(tc.policy.Name(), func(t *testing.T) {
			kp := keyPair(t, tc.key)
			sig, err := tc.policy.Sign(kp.Key, []byte("proof"))
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.policy.(*eccPolicy).sigLen(); len(sig) != want {
				t.Fatalf("signature of %d bytes, want %d", len(sig), want)
			}
			if err := tc.policy.Verify(parseCert(t, kp), []byte("proof"), sig); err != nil {
				t.Fatal(err)
			}
			if err := tc.policy.Verify(parseCert(t, kp), []byte("proof!"), sig); err == nil {
				t.Fatal("signature over other data verifies")
			}
		})
	}
	err := EccNistP384.CheckKey(parseCert(t, keyPair(t, "client-p256")).PublicKey)
	if want := "P-256 key, policy ECC_nistP384 needs a P-384 key"; err == nil || err.Error() != want {
		t.Fatalf("CheckKey: %v, want %q", err, want)
	}
	err = EccNistP256.CheckKey(parseCert(t, keyPair(t, "client-2048")).PublicKey)
	if want := "RSA 2048-bit key, policy ECC_nistP256 needs a P-256 key"; err == nil || err.Error() != want {
		t.Fatalf("CheckKey: %v, want %q", err, want)
	}
	_, err = EccNistP256.Asymmetric(sign, keyPair(t, "client-p256"), keyPair(t, "client-p384").Certificate)
	if want := "server certificate: P-384 key, policy ECC_nistP256 needs a P-256 key"; err == nil || err.Error() != want {
		t.Fatalf("Asymmetric: %v, want %q", err, want)
	}
	for _, tc := range []struct {
		policy      Policy
		local, peer string
		want        string
	}{
		{EccBrainpoolP256r1, "client-bp256", "client-bp384", "server certificate: brainpoolP384r1 key, policy ECC_brainpoolP256r1 needs a brainpoolP256r1 key"},
		{EccBrainpoolP384r1, "client-bp384", "client-p384", "server certificate: P-384 key, policy ECC_brainpoolP384r1 needs a brainpoolP384r1 key"},
		{EccNistP256, "client-p256", "client-bp256", "server certificate: brainpoolP256r1 key, policy ECC_nistP256 needs a P-256 key"},
		{EccCurve448, "client-ed448", "client-ed25519", "server certificate: Ed25519 key, policy ECC_curve448 needs an Ed448 key"},
		{EccCurve25519, "client-ed25519", "client-ed448", "server certificate: Ed448 key, policy ECC_curve25519 needs an Ed25519 key"},
		{EccBrainpoolP256r1, "client-p256", "client-bp256", "local certificate: P-256 key, policy ECC_brainpoolP256r1 needs a brainpoolP256r1 key"},
	} {
		_, err = tc.policy.Asymmetric(sign, keyPair(t, tc.local), keyPair(t, tc.peer).Certificate)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Asymmetric: %v, want %q", err, tc.want)
		}
	}
}

// eccServer plays the server's half of an ECC key agreement: the same
// derivation with the labels of the other side.
func eccServerHalf(t *testing.T, p *eccPolicy, mode ua.MessageSecurityMode, clientNonce []byte) ([]byte, ChunkCrypto) {
	t.Helper()
	priv, err := p.newEphemeral()
	if err != nil {
		t.Fatal(err)
	}
	nonce := p.ephemeralNonce(priv)
	secret, err := p.sharedSecret(priv, clientNonce)
	if err != nil {
		t.Fatal(err)
	}
	if p.aead != nil {
		// The client's derivation from the other side: keys swapped.
		c, err := p.aeadSymmetric(mode, secret, clientNonce, nonce)
		if err != nil {
			t.Fatal(err)
		}
		a := c.(*aeadChunks)
		a.send, a.recv = a.recv, a.send
		return nonce, a
	}
	send, err := p.deriveKeys(secret, labelServer, nonce, clientNonce)
	if err != nil {
		t.Fatal(err)
	}
	recv, err := p.deriveKeys(secret, labelClient, clientNonce, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return nonce, &symmetric{name: p.name, hash: p.hash.New, encrypt: mode == encrypt, sigLen: p.hash.Size(), send: send, recv: recv}
}

// openChunk opens a chunk whose body starts with a sequence number, giving
// an AEAD policy the number before it.
func openChunk(c ChunkCrypto, chunk []byte, hdrLen int, seq uint32) ([]byte, error) {
	if b, ok := c.(SequenceBound); ok {
		return b.OpenAfter(chunk, hdrLen, seq-1)
	}
	return c.Open(chunk, hdrLen)
}

// TestECCExchange: both halves derive matching keys, chunks round-trip in
// both modes, a changed byte is refused, and every exchange has a new key.
func TestECCExchange(t *testing.T) {
	for _, tc := range eccPolicies {
		p := tc.policy.(*eccPolicy)
		for _, mode := range []ua.MessageSecurityMode{sign, encrypt} {
			t.Run(fmt.Sprintf("%s/%v", p.name, mode), func(t *testing.T) {
				ex, err := p.NewExchange()
				if err != nil {
					t.Fatal(err)
				}
				ex2, _ := p.NewExchange()
				if bytes.Equal(ex.Nonce(), ex2.Nonce()) || len(ex.Nonce()) != p.NonceLength() {
					t.Fatalf("nonces of %d bytes, equal: %v", len(ex.Nonce()), bytes.Equal(ex.Nonce(), ex2.Nonce()))
				}
				serverNonce, server := eccServerHalf(t, p, mode, ex.Nonce())
				client, err := ex.Symmetric(mode, serverNonce)
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range []int{8, 100, 1000} {
					body := testBody(n)
					sealed, err := client.Seal(testChunk("MSG", 24, body), 24)
					if err != nil {
						t.Fatal(err)
					}
					seq := binary.LittleEndian.Uint32(body)
					got, err := openChunk(server, sealed, 24, seq)
					if err != nil || !bytes.Equal(got, body) {
						t.Fatalf("server opens client chunk: %v", err)
					}
					back, _ := server.Seal(testChunk("MSG", 24, body), 24)
					if got, err := openChunk(client, back, 24, seq); err != nil || !bytes.Equal(got, body) {
						t.Fatalf("client opens server chunk: %v", err)
					}
					if _, err := openChunk(client, back, 24, seq+1); err == nil && p.aead != nil {
						t.Fatal("AEAD chunk opens after another sequence number")
					}
					back[len(back)-20] ^= 1
					if _, err := openChunk(client, back, 24, seq); err == nil {
						t.Fatal("altered chunk opens")
					}
				}
				if _, err := ex.Symmetric(mode, serverNonce[1:]); err == nil {
					t.Fatal("short server key accepted")
				}
				bad := bytes.Clone(serverNonce)
				bad[len(bad)-1] ^= 1 // off the curve
				if p.edwards {
					bad = make([]byte, 32) // a point of small order: no shared secret
				}
				if _, err := ex.Symmetric(mode, bad); err == nil {
					t.Fatal("server key off the curve accepted")
				}
			})
		}
	}
}

// TestECCAsymmetric: OPN chunks are signed, not encrypted, without padding.
func TestECCAsymmetric(t *testing.T) {
	for _, tc := range eccPolicies {
		t.Run(tc.policy.Name(), func(t *testing.T) {
			client, server := keyPair(t, tc.key), keyPair(t, tc.key+"-server")
			c, err := tc.policy.Asymmetric(encrypt, client, server.Certificate)
			if err != nil {
				t.Fatal(err)
			}
			s, err := tc.policy.Asymmetric(encrypt, server, client.Certificate)
			if err != nil {
				t.Fatal(err)
			}
			body := testBody(300)
			sealed, err := c.Seal(testChunk("OPN", 40, body), 40)
			if err != nil {
				t.Fatal(err)
			}
			if want := 40 + len(body) + tc.policy.(*eccPolicy).sigLen(); len(sealed) != want {
				t.Fatalf("sealed chunk of %d bytes, want %d (body and signature only)", len(sealed), want)
			}
			if !bytes.Contains(sealed, body) {
				t.Fatal("OPN body encrypted")
			}
			if got, err := s.Open(sealed, 40); err != nil || !bytes.Equal(got, body) {
				t.Fatalf("open: %v", err)
			}
			if mb := c.MaxBody(8192, 40); mb != 8192-40-tc.policy.(*eccPolicy).sigLen() {
				t.Fatalf("MaxBody %d", mb)
			}
			sealed[50] ^= 1
			if _, err := s.Open(sealed, 40); err == nil {
				t.Fatal("altered OPN chunk opens")
			}
		})
	}
}

// TestInteropOpen62541ECC opens channels with open62541 under each ECC
// policy and mode and sends two requests under the derived keys.
func TestInteropOpen62541ECC(t *testing.T) {
	srv := o62proc.Start(t, o62proc.Options{Policies: []string{"None", "ECC_nistP256", "ECC_nistP384", "ECC_brainpoolP256r1", "ECC_brainpoolP384r1", "ECC_curve25519", "ECC_curve448", "ECC_nistP256_AesGcm", "ECC_nistP256_ChaChaPoly"}})
	for _, tc := range eccPolicies {
		cert := serverCertificate(t, srv.Endpoint, tc.policy.URI())
		for _, mode := range []ua.MessageSecurityMode{sign, encrypt} {
			t.Run(fmt.Sprintf("%s/%v", tc.policy.Name(), mode), func(t *testing.T) {
				c := openChannel(t, srv.Endpoint, tc.policy, mode, keyPair(t, tc.key), cert)
				eps := c.getEndpoints(srv.Endpoint)
				if again := c.getEndpoints(srv.Endpoint); len(eps) == 0 || len(again) != len(eps) {
					t.Fatalf("%d endpoints, then %d", len(eps), len(again))
				}
			})
		}
	}
}

// TestEncryptToEphemeralKey opens an EccEncryptedSecret as a server does
// (Part 4 7.41.2.3): header fields, signature with the client's
// certificate, key from the server's ephemeral key, nonce, secret and
// padding.
func TestEncryptToEphemeralKey(t *testing.T) {
	for _, tc := range eccPolicies {
		p := tc.policy.(*eccPolicy)
		for _, secret := range []string{"", "pw", "a password of more than sixteen bytes"} {
			t.Run(fmt.Sprintf("%s/%d bytes", p.name, len(secret)), func(t *testing.T) {
				client := keyPair(t, tc.key)
				serverPriv, err := p.newEphemeral()
				if err != nil {
					t.Fatal(err)
				}
				serverKey := p.ephemeralNonce(serverPriv)
				nonce := testBody(32)
				when := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
				es, err := p.EncryptToEphemeralKey(client, serverKey, []byte(secret), nonce, when)
				if err != nil {
					t.Fatal(err)
				}
				// As a ByteString (length first): two bare bytes also turn up in
				// random keys and signatures.
				if bytes.Contains(es, appendByteString(nil, []byte(secret))) && secret != "" {
					t.Fatal("secret in plaintext")
				}
				r := &reader{t: t, b: es}
				if typeID := r.next(4); !bytes.Equal(typeID, []byte{1, 0, 0x8a, 0x44}) { // ns=0;i=17546, four-byte form
					t.Fatalf("type id % x", typeID)
				}
				if mask := r.next(1)[0]; mask != 1 {
					t.Fatalf("encoding mask %d", mask)
				}
				if length := r.u32(); int(length) != len(es)-9 {
					t.Fatalf("length %d, want %d", length, len(es)-9)
				}
				if uri := string(r.bytes()); uri != p.URI() {
					t.Fatalf("policy URI %q", uri)
				}
				if cert := r.bytes(); !bytes.Equal(cert, client.Certificate) {
					t.Fatal("certificate is not the client's")
				}
				if ts := int64(binary.LittleEndian.Uint64(r.next(8))); ts != dateTime(when) || ts != 134407728000000000 { // 100 ns since 1601, by Python's datetime
					t.Fatalf("signing time %d", ts)
				}
				keyDataLen := int(binary.LittleEndian.Uint16(r.next(2)))
				at := r.pos
				sender, receiver := r.bytes(), r.bytes()
				if r.pos-at != keyDataLen || !bytes.Equal(receiver, serverKey) {
					t.Fatalf("key data of %d bytes, field says %d; receiver key ours: %v", r.pos-at, keyDataLen, bytes.Equal(receiver, serverKey))
				}
				sigLen := p.sigLen()
				signed, sig := es[:len(es)-sigLen], es[len(es)-sigLen:]
				if err := p.Verify(parseCert(t, client), signed, sig); err != nil {
					t.Fatalf("signature: %v", err)
				}
				shared, err := p.sharedSecret(serverPriv, sender)
				if err != nil {
					t.Fatal(err)
				}
				n := p.encKeyLen + p.ivLen()
				salt := eccSalt(n, "opcua-secret", sender, receiver)
				keys, _ := hkdfKey(p.hash.New, shared, salt, salt, n)
				payload := bytes.Clone(es[r.pos : len(es)-sigLen])
				if p.aead != nil {
					aead, _ := p.aead(keys[:p.encKeyLen])
					if payload, err = aead.Open(nil, keys[p.encKeyLen:], payload, es[:r.pos]); err != nil {
						t.Fatalf("open payload: %v", err)
					}
				} else {
					block, _ := aes.NewCipher(keys[:p.encKeyLen])
					if len(payload)%16 != 0 {
						t.Fatalf("payload of %d bytes", len(payload))
					}
					cipher.NewCBCDecrypter(block, keys[p.encKeyLen:]).CryptBlocks(payload, payload)
				}
				pr := &reader{t: t, b: payload}
				if got := pr.bytes(); !bytes.Equal(got, nonce) {
					t.Fatal("nonce differs")
				}
				if got := string(pr.bytes()); got != secret {
					t.Fatalf("secret %q", got)
				}
				pad := int(binary.LittleEndian.Uint16(payload[len(payload)-2:]))
				if pr.pos+pad+2 != len(payload) || pad+len(secret) < 16 {
					t.Fatalf("padding %d after %d bytes in %d", pad, pr.pos, len(payload))
				}
				for _, c := range payload[pr.pos : pr.pos+pad] {
					if int(c) != pad {
						t.Fatalf("padding byte %d, want %d", c, pad)
					}
				}
			})
		}
	}
}

type reader struct {
	t   *testing.T
	b   []byte
	pos int
}

func (r *reader) next(n int) []byte {
	r.t.Helper()
	if n < 0 || r.pos+n > len(r.b) {
		r.t.Fatalf("read %d bytes at %d of %d", n, r.pos, len(r.b))
	}
	r.pos += n
	return r.b[r.pos-n : r.pos]
}

func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.next(4)) }

func (r *reader) bytes() []byte { return r.next(int(int32(r.u32()))) }

// FuzzECCOpenSecureChannelResponse feeds what an ECC server's
// OpenSecureChannel response carries to the code that takes it: the
// signed, unencrypted chunk (eccAsymmetric.Open) and the server's
// ephemeral key (Exchange.Symmetric), then an AEAD MSG chunk under the
// keys it gave. Nothing may panic, change its input, or return a body
// outside the chunk. Seeds are valid responses of each ECC policy.
func FuzzECCOpenSecureChannelResponse(f *testing.F) {
	type side struct {
		asym  ChunkCrypto
		ex    Exchange
		mode  ua.MessageSecurityMode
		p     *eccPolicy
		nonce []byte
	}
	var sides []side
	for _, tc := range eccPolicies {
		p := tc.policy.(*eccPolicy)
		client, server := keyPair(f, tc.key), keyPair(f, tc.key+"-server")
		c, err := p.Asymmetric(encrypt, client, server.Certificate)
		if err != nil {
			f.Fatal(err)
		}
		s, err := p.Asymmetric(encrypt, server, client.Certificate)
		if err != nil {
			f.Fatal(err)
		}
		ex, err := p.NewExchange()
		if err != nil {
			f.Fatal(err)
		}
		priv, err := p.newEphemeral()
		if err != nil {
			f.Fatal(err)
		}
		nonce := p.ephemeralNonce(priv)
		for _, mode := range []ua.MessageSecurityMode{sign, encrypt} {
			sealed, err := s.Seal(testChunk("OPN", 40, testBody(200)), 40)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(len(sides)), sealed, nonce, testChunk("MSG", 16, testBody(40)))
			sides = append(sides, side{asym: c, ex: ex, mode: mode, p: p, nonce: nonce})
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, opn, nonce, msg []byte) {
		sd := sides[int(which)%len(sides)]
		in := bytes.Clone(opn)
		body, err := sd.asym.Open(opn, 40)
		if !bytes.Equal(in, opn) {
			t.Fatal("Open changed its input")
		}
		if err == nil && (len(body) < sequenceHeaderLen || len(body) > len(opn)) {
			t.Fatalf("a body of %d bytes from a chunk of %d", len(body), len(opn))
		}
		sym, err := sd.ex.Symmetric(sd.mode, nonce)
		if err != nil {
			if bytes.Equal(nonce, sd.nonce) {
				t.Fatalf("a valid server key refused: %v", err)
			}
			return
		}
		in = bytes.Clone(msg)
		if b, ok := sym.(SequenceBound); ok {
			body, err = b.OpenAfter(msg, 16, 7)
		} else {
			body, err = sym.Open(msg, 16)
		}
		if !bytes.Equal(in, msg) {
			t.Fatal("Open changed its input")
		}
		if err == nil && (len(body) < sequenceHeaderLen || len(body) > len(msg)) {
			t.Fatalf("a body of %d bytes from a chunk of %d", len(body), len(msg))
		}
	})
}

// TestChannelThumbprint: under ECC_nistP256_AesGcm the first response must
// be signed over the request's signature too, and its signature becomes the
// channel thumbprint; later responses are signed as usual.
func TestChannelThumbprint(t *testing.T) {
	p := EccNistP256AesGcm.(*eccPolicy)
	client, server := keyPair(t, "client-p256"), keyPair(t, "client-p256-server")
	c, err := p.Asymmetric(encrypt, client, server.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	serverKey := server.Key.(crypto.Signer)
	respond := func(withRequestSig []byte) []byte {
		chunk := testChunk("OPN", 40, testBody(100))
		binary.LittleEndian.PutUint32(chunk[4:8], uint32(len(chunk)+p.sigLen()))
		sig, err := p.signRaw(serverKey, append(bytes.Clone(chunk), withRequestSig...))
		if err != nil {
			t.Fatal(err)
		}
		return append(chunk, sig...)
	}
	req, err := c.Seal(testChunk("OPN", 40, testBody(100)), 40)
	if err != nil {
		t.Fatal(err)
	}
	reqSig := req[len(req)-p.sigLen():]
	if _, err := c.Open(respond(nil), 40); err == nil {
		t.Fatal("a first response signed without the request's signature opens")
	}
	resp := respond(reqSig)
	if _, err := c.Open(resp, 40); err != nil {
		t.Fatalf("first response: %v", err)
	}
	if tp := c.(ChannelBinding).ChannelThumbprint(); !bytes.Equal(tp, resp[len(resp)-p.sigLen():]) {
		t.Fatalf("thumbprint %x, want the first response's signature", tp)
	}
	if _, err := c.Seal(testChunk("OPN", 40, testBody(50)), 40); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(respond(nil), 40); err != nil {
		t.Fatalf("renewal response: %v", err)
	}
	if c, _ := EccNistP256.Asymmetric(encrypt, client, server.Certificate); c.(ChannelBinding).ChannelThumbprint() != nil {
		t.Fatal("ECC_nistP256 has a thumbprint")
	}
}

func TestSupersededBy(t *testing.T) {
	for p, want := range map[Policy]string{
		EccNistP256: "ECC_nistP256_AesGcm", EccNistP384: "ECC_nistP256_AesGcm",
		EccBrainpoolP256r1: "ECC_brainpoolP256r1_AesGcm", EccBrainpoolP384r1: "ECC_brainpoolP384r1_AesGcm",
		EccNistP256AesGcm: "", EccNistP256ChaChaPoly: "", EccCurve25519: "", EccCurve448: "", Basic256Sha256: "",
	} {
		if got := SupersededBy(p); got != want {
			t.Errorf("SupersededBy(%s) = %q, want %q", p.Name(), got, want)
		}
	}
}

// TestIKMChaining: a renewal under the channel enhancements derives from
// the previous token's input key material XOR the new shared secret, so
// the same nonces give other keys when chained.
func TestIKMChaining(t *testing.T) {
	p := EccNistP256ChaChaPoly.(*eccPolicy)
	first, _ := p.NewExchange()
	serverNonce, _ := eccServerHalf(t, p, encrypt, first.Nonce())
	tok1, err := first.Symmetric(encrypt, serverNonce)
	if err != nil {
		t.Fatal(err)
	}
	renewal, _ := p.NewExchange()
	renewNonce, server := eccServerHalf(t, p, encrypt, renewal.Nonce())
	plain, err := renewal.Symmetric(encrypt, renewNonce)
	if err != nil {
		t.Fatal(err)
	}
	renewal.(ChainedExchange).Chain(tok1)
	chained, err := renewal.Symmetric(encrypt, renewNonce)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, len(tok1.(*aeadChunks).ikm))
	for i := range want {
		want[i] = tok1.(*aeadChunks).ikm[i] ^ plain.(*aeadChunks).ikm[i]
	}
	if got := chained.(*aeadChunks).ikm; !bytes.Equal(got, want) {
		t.Fatalf("chained IKM %x, want previous XOR shared secret %x", got, want)
	}
	sealed, _ := chained.Seal(testChunk("MSG", 16, testBody(64)), 16)
	if _, err := openChunk(server, sealed, 16, binary.LittleEndian.Uint32(testBody(64))); err == nil {
		t.Fatal("an unchained server half opens a chained chunk")
	}
}
