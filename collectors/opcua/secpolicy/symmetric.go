package secpolicy

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"fmt"
	"hash"

	"github.com/gopcua/opcua/ua"
)

// rsaExchange is the local half of an RSA policy's key agreement: a random
// nonce each way, keys derived with P_SHA (Part 6 6.7.5).
type rsaExchange struct {
	policy *rsaPolicy
	nonce  []byte
}

func (e *rsaExchange) Nonce() []byte { return e.nonce }

// Symmetric derives the token's keys. A side signs and encrypts what it
// sends with P_SHA(secret = the peer's nonce, seed = its own nonce) and
// checks what it receives with P_SHA(its own nonce, the peer's nonce): for
// the client, P_SHA(serverNonce, clientNonce) and P_SHA(clientNonce,
// serverNonce), as Part 6 6.7.5 says. The rule reads the same from the
// server's side, which is how the tests build the server's half.
func (e *rsaExchange) Symmetric(mode ua.MessageSecurityMode, remoteNonce []byte) (ChunkCrypto, error) {
	p := e.policy
	switch mode {
	case ua.MessageSecurityModeNone:
		return passThrough{}, nil
	case ua.MessageSecurityModeSign, ua.MessageSecurityModeSignAndEncrypt:
	default:
		return nil, fmt.Errorf("policy %s: invalid security mode %d", p.name, mode)
	}
	// At least, not exactly: open62541 sends 32-byte nonces for
	// Basic128Rsa15, whose Part 7 length is 16; P_SHA takes any length.
	if len(remoteNonce) < p.nonceLen {
		return nil, fmt.Errorf("policy %s: server nonce of %d bytes, want at least %d", p.name, len(remoteNonce), p.nonceLen)
	}
	send, err := p.deriveKeys(remoteNonce, e.nonce)
	if err != nil {
		return nil, err
	}
	recv, err := p.deriveKeys(e.nonce, remoteNonce)
	if err != nil {
		return nil, err
	}
	return &symmetric{
		name:    p.name,
		hash:    p.symHash,
		encrypt: mode == ua.MessageSecurityModeSignAndEncrypt,
		sigLen:  p.symHash().Size(),
		send:    send,
		recv:    recv,
	}, nil
}

// symKeys are the keys of one direction of a token.
type symKeys struct {
	sign  []byte
	block cipher.Block
	iv    []byte
}

// deriveKeys splits P_SHA(secret, seed) into signature key, encryption key
// and initialisation vector, in this order.
func (p *rsaPolicy) deriveKeys(secret, seed []byte) (symKeys, error) {
	k := pHash(p.symHash, secret, seed, p.sigKeyLen+p.encKeyLen+aes.BlockSize)
	block, err := aes.NewCipher(k[p.sigKeyLen : p.sigKeyLen+p.encKeyLen])
	if err != nil {
		return symKeys{}, fmt.Errorf("policy %s: derive keys: %w", p.name, err)
	}
	return symKeys{sign: k[:p.sigKeyLen], block: block, iv: k[p.sigKeyLen+p.encKeyLen:]}, nil
}

// symmetric secures MSG and CLO chunks with the keys of one token, for the
// RSA and the (non-AEAD) ECC policies alike, which differ only in how the
// keys are derived: an HMAC over the whole chunk (Sign), plus padding and
// AES-CBC from the sequence header to the signature (SignAndEncrypt). Every chunk starts from the
// derived IV (Part 6 6.7.2). Safe for one sender and one reader at once:
// nothing mutable is shared between calls.
type symmetric struct {
	name    string           // policy name, for errors
	hash    func() hash.Hash // of the HMAC
	encrypt bool
	sigLen  int
	send    symKeys
	recv    symKeys
}

func (s *symmetric) mac(key []byte, data []byte) []byte {
	m := hmac.New(s.hash, key)
	m.Write(data)
	return m.Sum(nil)
}

func (s *symmetric) MaxBody(chunkSize, hdrLen int) int {
	if !s.encrypt {
		return max(chunkSize-hdrLen-s.sigLen, 0)
	}
	return max((chunkSize-hdrLen)/aes.BlockSize*aes.BlockSize-s.sigLen-1, 0)
}

func (s *symmetric) Seal(chunk []byte, hdrLen int) ([]byte, error) {
	if err := checkSealInput(chunk, hdrLen); err != nil {
		return nil, err
	}
	padLen := 0
	if s.encrypt {
		padLen = paddingLen(len(chunk)-hdrLen+s.sigLen, aes.BlockSize, false)
	}
	if err := putSize(chunk, len(chunk)+padLen+s.sigLen); err != nil {
		return nil, err
	}
	if s.encrypt {
		chunk = appendPadding(chunk, padLen, false)
	}
	chunk = append(chunk, s.mac(s.send.sign, chunk)...)
	if s.encrypt {
		enc := chunk[hdrLen:]
		cipher.NewCBCEncrypter(s.send.block, s.send.iv).CryptBlocks(enc, enc)
	}
	return chunk, nil
}

func (s *symmetric) Open(chunk []byte, hdrLen int) ([]byte, error) {
	if err := checkOpenInput(chunk, hdrLen); err != nil {
		return nil, err
	}
	plain := chunk
	if s.encrypt {
		ct := chunk[hdrLen:]
		if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
			return nil, fmt.Errorf("open chunk: %d encrypted bytes are not whole AES blocks", len(ct))
		}
		// Decrypt into a copy: the caller's chunk stays as received.
		plain = make([]byte, len(chunk))
		copy(plain, chunk[:hdrLen])
		cipher.NewCBCDecrypter(s.recv.block, s.recv.iv).CryptBlocks(plain[hdrLen:], ct)
	}
	if len(plain)-hdrLen < s.sigLen {
		return nil, fmt.Errorf("open chunk: %d bytes after the headers, shorter than the %d-byte signature", len(plain)-hdrLen, s.sigLen)
	}
	signed, sig := plain[:len(plain)-s.sigLen], plain[len(plain)-s.sigLen:]
	if !hmac.Equal(s.mac(s.recv.sign, signed), sig) {
		return nil, fmt.Errorf("open chunk: policy %s: signature does not match", s.name)
	}
	body := signed[hdrLen:]
	if s.encrypt {
		var err error
		if body, err = stripPadding(body, false); err != nil {
			return nil, err
		}
	}
	return checkBody(body)
}
