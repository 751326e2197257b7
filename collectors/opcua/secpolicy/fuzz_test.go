package secpolicy

import (
	"bytes"
	"testing"
)

// FuzzOpen feeds symmetric and asymmetric Open whatever a hostile server
// might send: it must return an error or a body inside the chunk, never
// panic. Seeds are valid chunks of each kind, ECC OpenSecureChannel chunks
// (ECDSA on P-256 and brainpoolP256r1, Ed448) included.
func FuzzOpen(f *testing.F) {
	pairs := []pair{
		symPair(f, Basic256Sha256, sign),
		symPair(f, Basic256Sha256, encrypt),
		symPair(f, Basic128Rsa15, encrypt),
		asymPair(f, Basic256Sha256, encrypt, 2048, 2048),
		asymPair(f, Basic256Sha256, encrypt, 2048, 4096),
		asymPair(f, Aes256Sha256RsaPss, encrypt, 2048, 2048),
		eccAsymPair(f, EccNistP256, "client-p256"),
		eccAsymPair(f, EccBrainpoolP256r1, "client-bp256"),
		eccAsymPair(f, EccCurve448, "client-ed448"),
	}
	for i, pr := range pairs {
		for _, n := range []int{8, 100} {
			f.Add(uint8(i), uint16(pr.hdrLen), seal(f, pr.client, pr.msgType, pr.hdrLen, testBody(n)))
		}
	}
	f.Add(uint8(0), uint16(16), []byte("MSGF\x10\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, which uint8, hdrLen uint16, chunk []byte) {
		pr := pairs[int(which)%len(pairs)]
		in := bytes.Clone(chunk)
		body, err := pr.server.Open(chunk, int(hdrLen))
		if !bytes.Equal(in, chunk) {
			t.Fatal("Open changed its input")
		}
		if err == nil && (len(body) < sequenceHeaderLen || len(body) > len(chunk)) {
			t.Fatalf("a body of %d bytes from a chunk of %d", len(body), len(chunk))
		}
	})
}

// eccAsymPair is the OPN crypto of an ECC policy between the key named
// and its "-server" sibling: signed chunks, verified on Open.
func eccAsymPair(t testing.TB, p Policy, key string) pair {
	t.Helper()
	ckp, skp := keyPair(t, key), keyPair(t, key+"-server")
	client, err := p.Asymmetric(sign, ckp, skp.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	server, err := p.Asymmetric(sign, skp, ckp.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	return pair{name: p.Name() + "/OPN", client: client, server: server, hdrLen: asymHdrLen(p, ckp.Certificate), msgType: "OPN", signed: true}
}

// FuzzStripPadding reaches the padding checks the signature guards in
// FuzzOpen.
func FuzzStripPadding(f *testing.F) {
	f.Add([]byte{1, 2, 3, 2, 2, 2}, false)
	f.Add([]byte{1, 2, 3, 1, 1, 0}, true)
	f.Add([]byte{0xff}, true)
	f.Fuzz(func(t *testing.T, p []byte, extra bool) {
		body, err := stripPadding(p, extra)
		if err != nil {
			return
		}
		fixed := 1
		if extra {
			fixed = 2
		}
		if len(body) > len(p)-fixed || !bytes.Equal(body, p[:len(body)]) {
			t.Fatalf("stripPadding(%x, %v) = %x", p, extra, body)
		}
	})
}
