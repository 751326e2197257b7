package secpolicy

import (
	"bytes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/gopcua/opcua/ua"
)

const (
	symHdrLen = 16 // message header, channel id, token id
	sign      = ua.MessageSecurityModeSign
	encrypt   = ua.MessageSecurityModeSignAndEncrypt
)

// asymHdrLen is the length of an OPN chunk's headers for a policy and a
// sender certificate: message header, channel id, policy URI, certificate,
// receiver thumbprint.
func asymHdrLen(p Policy, cert []byte) int {
	return 12 + 4 + len(p.URI()) + 4 + len(cert) + 4 + 20
}

// pair is the crypto of both ends of one channel: client as the package
// builds it, server built from the same keys or nonces with roles swapped.
type pair struct {
	name           string
	client, server ChunkCrypto
	hdrLen         int
	msgType        string
	signed         bool
	encrypted      bool
}

func asymPair(t testing.TB, p Policy, mode ua.MessageSecurityMode, clientBits, serverBits int) pair {
	t.Helper()
	ckp, skp := keyPair(t, keyName("client", clientBits)), keyPair(t, keyName("server", serverBits))
	client, err := p.Asymmetric(mode, ckp, skp.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	server, err := p.Asymmetric(mode, skp, ckp.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	return pair{
		name:   fmt.Sprintf("%s/%v/OPN/%d-%d", p.Name(), mode, clientBits, serverBits),
		client: client, server: server,
		hdrLen: asymHdrLen(p, ckp.Certificate), msgType: "OPN",
		signed:    mode != ua.MessageSecurityModeNone && p != None,
		encrypted: mode != ua.MessageSecurityModeNone && p != None,
	}
}

func symPair(t testing.TB, p Policy, mode ua.MessageSecurityMode) pair {
	t.Helper()
	ce, err := p.NewExchange()
	if err != nil {
		t.Fatal(err)
	}
	se, err := p.NewExchange()
	if err != nil {
		t.Fatal(err)
	}
	client, err := ce.Symmetric(mode, se.Nonce())
	if err != nil {
		t.Fatal(err)
	}
	server, err := se.Symmetric(mode, ce.Nonce())
	if err != nil {
		t.Fatal(err)
	}
	return pair{
		name:   fmt.Sprintf("%s/%v/MSG", p.Name(), mode),
		client: client, server: server,
		hdrLen: symHdrLen, msgType: "MSG",
		signed:    mode != ua.MessageSecurityModeNone && p != None,
		encrypted: mode == encrypt && p != None,
	}
}

// allPairs is every policy × mode × chunk kind.
func allPairs(t testing.TB) []pair {
	t.Helper()
	var ps []pair
	for _, rp := range rsaPolicies {
		for _, mode := range []ua.MessageSecurityMode{sign, encrypt} {
			ps = append(ps, asymPair(t, rp.policy, mode, rp.bits, rp.bits), symPair(t, rp.policy, mode))
		}
	}
	ps = append(ps,
		asymPair(t, None, ua.MessageSecurityModeNone, 2048, 2048),
		symPair(t, None, ua.MessageSecurityModeNone),
		asymPair(t, Basic256Sha256, ua.MessageSecurityModeNone, 2048, 2048),
		symPair(t, Basic256Sha256, ua.MessageSecurityModeNone),
	)
	return ps
}

func seal(t testing.TB, c ChunkCrypto, msgType string, hdrLen int, body []byte) []byte {
	t.Helper()
	chunk := testChunk(msgType, hdrLen, body)
	hdr := bytes.Clone(chunk[:hdrLen])
	sealed, err := c.Seal(chunk, hdrLen)
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	if size := binary.LittleEndian.Uint32(sealed[4:8]); int(size) != len(sealed) {
		t.Fatalf("sealed chunk of %d bytes says %d in its header", len(sealed), size)
	}
	if !bytes.Equal(sealed[:4], hdr[:4]) || !bytes.Equal(sealed[8:hdrLen], hdr[8:]) {
		t.Fatal("seal changed the headers beyond the size field")
	}
	return sealed
}

func TestRoundTrip(t *testing.T) {
	for _, pr := range allPairs(t) {
		t.Run(pr.name, func(t *testing.T) {
			sizes := []int{8, 9, 15, 16, 17, 100, 1000, pr.client.MaxBody(8192, pr.hdrLen)}
			for _, n := range sizes {
				body := testBody(n)
				for _, dir := range []struct {
					name           string
					sender, reader ChunkCrypto
				}{{"client to server", pr.client, pr.server}, {"server to client", pr.server, pr.client}} {
					sealed := seal(t, dir.sender, pr.msgType, pr.hdrLen, body)
					got, err := dir.reader.Open(sealed, pr.hdrLen)
					if err != nil {
						t.Fatalf("%s, %d-byte body: open: %v", dir.name, n, err)
					}
					if !bytes.Equal(got, body) {
						t.Fatalf("%s, %d-byte body: open returned %d bytes that differ", dir.name, n, len(got))
					}
					// The sender's own crypto reads the other direction:
					// different keys, so its own chunk fails.
					if _, err := dir.sender.Open(sealed, pr.hdrLen); pr.encrypted && err == nil {
						t.Fatalf("%s: a chunk opened with the keys of the other direction", dir.name)
					}
					inClear := bytes.Contains(sealed[pr.hdrLen:], body)
					if n >= 16 && pr.encrypted == inClear {
						t.Fatalf("%s, %d-byte body: encrypted %v, body in clear %v", dir.name, n, pr.encrypted, inClear)
					}
				}
			}
		})
	}
}

func TestTamperedChunkFails(t *testing.T) {
	for _, pr := range allPairs(t) {
		if !pr.signed {
			continue // None: nothing to detect
		}
		t.Run(pr.name, func(t *testing.T) {
			sealed := seal(t, pr.client, pr.msgType, pr.hdrLen, testBody(200))
			for _, at := range []int{0, 5, 9, pr.hdrLen - 1, pr.hdrLen, pr.hdrLen + 8, (pr.hdrLen + len(sealed)) / 2, len(sealed) - 1} {
				bad := bytes.Clone(sealed)
				bad[at] ^= 0x10
				if _, err := pr.server.Open(bad, pr.hdrLen); err == nil {
					t.Errorf("byte %d of %d flipped: open succeeded", at, len(sealed))
				}
			}
			if _, err := pr.server.Open(sealed, pr.hdrLen); err != nil {
				t.Fatalf("the untouched chunk: %v", err)
			}
		})
	}
}

// TestAsymmetricPadding decrypts sealed OPN chunks by hand and checks the
// padding field against Part 6 6.7.2.5: ExtraPaddingSize only when the
// receiver's key is larger than 2048 bits, padding bytes equal to the low
// byte of the padding size, the plaintext whole blocks.
func TestAsymmetricPadding(t *testing.T) {
	for _, serverBits := range []int{2048, 3072, 4096} {
		pr := asymPair(t, Basic256Sha256, encrypt, 2048, serverBits)
		serverKey := keyPair(t, keyName("server", serverBits)).Key.(*rsa.PrivateKey)
		cipherBlock := serverBits / 8
		plainBlock := cipherBlock - 2*sha1.Size - 2
		extra := serverBits > 2048
		const sigLen = 256 // the client's 2048-bit key
		for _, n := range []int{8, 100, 212, 222, 400, 677} {
			t.Run(fmt.Sprintf("%d-bit/%d-byte body", serverBits, n), func(t *testing.T) {
				body := testBody(n)
				sealed := seal(t, pr.client, pr.msgType, pr.hdrLen, body)
				ct := sealed[pr.hdrLen:]
				if len(ct)%cipherBlock != 0 {
					t.Fatalf("%d encrypted bytes for %d-byte blocks", len(ct), cipherBlock)
				}
				var plain []byte
				for i := 0; i < len(ct); i += cipherBlock {
					pt, err := rsa.DecryptOAEP(sha1.New(), nil, serverKey, ct[i:i+cipherBlock], nil)
					if err != nil {
						t.Fatal(err)
					}
					if len(pt) != plainBlock {
						t.Fatalf("block of %d plaintext bytes, want full blocks of %d", len(pt), plainBlock)
					}
					plain = append(plain, pt...)
				}
				if !bytes.Equal(plain[:n], body) {
					t.Fatal("the plaintext does not start with the body")
				}
				field := plain[n : len(plain)-sigLen]
				padding := len(field) - 1
				if extra {
					padding--
				}
				if padding < 0 || padding >= plainBlock {
					t.Fatalf("padding of %d bytes for %d-byte blocks", padding, plainBlock)
				}
				want := []byte{byte(padding)}
				for range padding {
					want = append(want, byte(padding))
				}
				if extra {
					want = append(want, byte(padding>>8))
				}
				if !bytes.Equal(field, want) {
					t.Fatalf("padding field %x, want %x", field, want)
				}
				if got, err := pr.server.Open(sealed, pr.hdrLen); err != nil || !bytes.Equal(got, body) {
					t.Fatalf("open: %v", err)
				}
				t.Logf("padding %d bytes (ExtraPaddingSize %v)", padding, extra)
			})
		}
	}
}

// TestMaxBody: the largest body MaxBody allows fits into the chunk once
// sealed; one byte more does not.
func TestMaxBody(t *testing.T) {
	pairs := allPairs(t)
	pairs = append(pairs,
		asymPair(t, Basic256Sha256, encrypt, 2048, 3072),
		asymPair(t, Basic256Sha256, encrypt, 4096, 2048),
		asymPair(t, Aes256Sha256RsaPss, encrypt, 2048, 4096),
		asymPair(t, Basic128Rsa15, encrypt, 2048, 1024),
	)
	for _, pr := range pairs {
		for _, chunkSize := range []int{8192, 8195, 65535, 65536} {
			t.Run(fmt.Sprintf("%s/%d", pr.name, chunkSize), func(t *testing.T) {
				maxBody := pr.client.MaxBody(chunkSize, pr.hdrLen)
				if maxBody < chunkSize/2 {
					t.Fatalf("MaxBody %d for %d-byte chunks", maxBody, chunkSize)
				}
				if got := len(seal(t, pr.client, pr.msgType, pr.hdrLen, testBody(maxBody))); got > chunkSize {
					t.Fatalf("a body of MaxBody %d sealed to %d bytes, more than %d", maxBody, got, chunkSize)
				}
				if got := len(seal(t, pr.client, pr.msgType, pr.hdrLen, testBody(maxBody+1))); got <= chunkSize {
					t.Fatalf("a body of MaxBody+1 = %d bytes sealed to %d: MaxBody is too small", maxBody+1, got)
				}
			})
		}
	}
}

// sealRaw secures chunk[hdrLen:] as it is, padding included, with the
// client's sending keys: the test builds padding the package never would.
func sealRaw(t *testing.T, pr pair, chunk []byte) []byte {
	t.Helper()
	binary.LittleEndian.PutUint32(chunk[4:8], uint32(len(chunk)))
	switch c := pr.client.(type) {
	case *symmetric:
		binary.LittleEndian.PutUint32(chunk[4:8], uint32(len(chunk)+c.sigLen))
		chunk = append(chunk, c.mac(c.send.sign, chunk)...)
		enc := chunk[pr.hdrLen:]
		if len(enc)%16 != 0 {
			t.Fatalf("raw plaintext of %d bytes is not whole AES blocks", len(enc))
		}
		cbcEncrypt(c, enc)
		return chunk
	case *asymmetric:
		plainBlock := c.policy.encryption.plainBlock(c.remote.Size())
		n := len(chunk) - pr.hdrLen + c.local.Size()
		if n%plainBlock != 0 {
			t.Fatalf("raw plaintext of %d bytes is not whole blocks of %d", n, plainBlock)
		}
		binary.LittleEndian.PutUint32(chunk[4:8], uint32(pr.hdrLen+n/plainBlock*c.remote.Size()))
		sig, err := c.policy.signature.sign(c.local, chunk)
		if err != nil {
			t.Fatal(err)
		}
		ct, err := c.policy.encryption.encrypt(c.remote, append(chunk, sig...)[pr.hdrLen:])
		if err != nil {
			t.Fatal(err)
		}
		return append(chunk[:pr.hdrLen:pr.hdrLen], ct...)
	}
	t.Fatalf("no raw sealing for %T", pr.client)
	return nil
}

// TestOpenRefuses feeds Open what a hostile or broken server might send.
func TestOpenRefuses(t *testing.T) {
	sym := symPair(t, Basic256Sha256, encrypt)
	symSign := symPair(t, Basic256Sha256, sign)
	asym := asymPair(t, Basic256Sha256, encrypt, 2048, 2048)
	asymExtra := asymPair(t, Basic256Sha256, encrypt, 2048, 4096)
	symBlockPlain := func(body []byte, padField ...byte) []byte {
		c := testChunk("MSG", symHdrLen, body)
		return append(c, padField...)
	}
	// 16 + 8 + 7 + 1 + 32 = 64: whole AES blocks after the 16-byte header.
	asymPlain := func(pr pair, body, padField []byte) []byte {
		c := testChunk("OPN", pr.hdrLen, body)
		return append(c, padField...)
	}
	asymFill := func(pr pair, fixed int) int { // padding making whole blocks
		c := pr.client.(*asymmetric)
		pb := c.policy.encryption.plainBlock(c.remote.Size())
		return (pb - (8+fixed+c.local.Size())%pb) % pb
	}
	repeat := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

	cases := []struct {
		name   string
		pr     pair
		chunk  func() []byte
		hdrLen int // 0: the pair's
		want   string
	}{
		{"empty", sym, func() []byte { return nil }, 0, "shorter than a message header"},
		{"7 bytes", sym, func() []byte { return []byte("MSGF\x07\x00\x00") }, 0, "shorter than a message header"},
		{"size field lies", sym, func() []byte {
			c := seal(t, sym.client, "MSG", symHdrLen, testBody(40))
			binary.LittleEndian.PutUint32(c[4:8], 1<<31)
			return c
		}, 0, "size field says"},
		{"header length beyond the chunk", sym, func() []byte { return seal(t, sym.client, "MSG", symHdrLen, testBody(40)) }, 1 << 20, "header length"},
		{"header length negative", sym, func() []byte { return seal(t, sym.client, "MSG", symHdrLen, testBody(40)) }, -5, "header length"},
		{"no ciphertext", sym, func() []byte { return testChunk("MSG", symHdrLen, nil) }, 0, "not whole AES blocks"},
		{"ciphertext not whole blocks", sym, func() []byte { return testChunk("MSG", symHdrLen, testBody(33)) }, 0, "not whole AES blocks"},
		{"shorter than the signature", symSign, func() []byte { return testChunk("MSG", symHdrLen, testBody(31)) }, 0, "shorter than the 32-byte signature"},
		{"padding size beyond the plaintext", sym, func() []byte {
			return sealRaw(t, sym, symBlockPlain(testBody(8), append(repeat(200, 7), 200)...))
		}, 0, "bad padding"},
		{"padding bytes differ from their size", sym, func() []byte {
			return sealRaw(t, sym, symBlockPlain(testBody(8), 7, 7, 7, 1, 7, 7, 7, 7))
		}, 0, "bad padding"},
		{"body shorter than a sequence header", sym, func() []byte {
			return sealRaw(t, sym, symBlockPlain(testBody(4), repeat(11, 12)...))
		}, 0, "shorter than a sequence header"},
		{"asymmetric ciphertext not whole key blocks", asym, func() []byte { return testChunk("OPN", asym.hdrLen, testBody(300)) }, 0, "not whole blocks"},
		{"asymmetric garbage blocks", asym, func() []byte { return testChunk("OPN", asym.hdrLen, testBody(512)) }, 0, "decrypt"},
		{"asymmetric padding size beyond the plaintext", asym, func() []byte {
			n := asymFill(asym, 1)
			return sealRaw(t, asym, asymPlain(asym, testBody(8), append(repeat(byte(n), n), 250)))
		}, 0, "bad padding"},
		{"asymmetric extra padding size beyond the plaintext", asymExtra, func() []byte {
			n := asymFill(asymExtra, 2)
			return sealRaw(t, asymExtra, asymPlain(asymExtra, testBody(8), append(repeat(byte(n), n+1), 3)))
		}, 0, "bad padding"},
		{"asymmetric padding bytes differ", asym, func() []byte {
			n := asymFill(asym, 1)
			field := repeat(byte(n), n+1)
			field[1] ^= 1
			return sealRaw(t, asym, asymPlain(asym, testBody(8), field))
		}, 0, "bad padding"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdrLen := tc.hdrLen
			if hdrLen == 0 {
				hdrLen = tc.pr.hdrLen
			}
			body, err := tc.pr.server.Open(tc.chunk(), hdrLen)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("open = %d bytes, %v; want an error with %q", len(body), err, tc.want)
			}
		})
	}
}

func cbcEncrypt(c *symmetric, b []byte) {
	cipher.NewCBCEncrypter(c.send.block, c.send.iv).CryptBlocks(b, b)
}
