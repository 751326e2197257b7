package secpolicy

import (
	"bytes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gopcua/opcua/ua"
	"golang.org/x/crypto/chacha20poly1305"
)

// SequenceBound is implemented by the ChunkCrypto of the AEAD policies,
// whose MSG and CLO chunks are bound to the sequence number of the chunk
// before them: the AEAD nonce is the derived IV with its first four bytes
// masked by the token id and the next four by that number. The sender
// reads it from the chunk it seals; the receiver of an encrypted chunk
// cannot, so the channel opens such chunks with OpenAfter and the last
// sequence number it received.
type SequenceBound interface {
	OpenAfter(chunk []byte, hdrLen int, prevSeq uint32) ([]byte, error)
}

// aeadKeys are one direction's keys of an AEAD token.
type aeadKeys struct {
	sign, enc cipher.AEAD // Sign: a tag with the signing key; SignAndEncrypt: the encryption key
	iv        []byte
}

// aeadChunks secures MSG and CLO chunks with ChaCha20-Poly1305 or AES-GCM
// (ECC_curve25519, ECC_nistP256_ChaChaPoly, ECC_nistP256_AesGcm), without
// padding: in mode Sign the whole chunk is the associated data of an empty
// message under the signing key (AES-GCM: the encryption key), and the
// tag is appended; in SignAndEncrypt the body is encrypted under the
// encryption key with the headers (hdrLen bytes) as associated data, and
// the tag follows the ciphertext.
type aeadChunks struct {
	name       string
	encrypt    bool
	send, recv aeadKeys
	ikm        []byte // the token's input key material, which a renewal chains (enhanced policies)
}

const aeadTagLen = chacha20poly1305.Overhead

func (p *eccPolicy) aeadSymmetric(mode ua.MessageSecurityMode, secret, clientNonce, serverNonce []byte) (ChunkCrypto, error) {
	keys := func(label string, sender, receiver []byte) (aeadKeys, error) {
		k, err := p.keyMaterial(secret, label, sender, receiver)
		if err != nil {
			return aeadKeys{}, err
		}
		enc, err := p.aead(k[p.sigKeyLen : p.sigKeyLen+p.encKeyLen])
		if err != nil {
			return aeadKeys{}, fmt.Errorf("policy %s: derive keys: %w", p.name, err)
		}
		sign := enc
		if p.sigKeyLen > 0 {
			if sign, err = p.aead(k[:p.sigKeyLen]); err != nil {
				return aeadKeys{}, fmt.Errorf("policy %s: derive keys: %w", p.name, err)
			}
		}
		return aeadKeys{sign: sign, enc: enc, iv: k[p.sigKeyLen+p.encKeyLen:]}, nil
	}
	send, err := keys(labelClient, clientNonce, serverNonce)
	if err != nil {
		return nil, err
	}
	recv, err := keys(labelServer, serverNonce, clientNonce)
	if err != nil {
		return nil, err
	}
	return &aeadChunks{name: p.name, encrypt: mode == ua.MessageSecurityModeSignAndEncrypt, send: send, recv: recv,
		ikm: bytes.Clone(secret)}, nil
}

// maskedNonce is iv with the token id and a sequence number XORed into
// its first eight bytes, both little endian.
func maskedNonce(iv []byte, tokenID, seq uint32) []byte {
	n := make([]byte, len(iv))
	copy(n, iv)
	var m [8]byte
	binary.LittleEndian.PutUint32(m[:4], tokenID)
	binary.LittleEndian.PutUint32(m[4:], seq)
	for i, b := range m {
		n[i] ^= b
	}
	return n
}

func (a *aeadChunks) MaxBody(chunkSize, hdrLen int) int { return max(chunkSize-hdrLen-aeadTagLen, 0) }

// checkHeaders makes sure the chunk has a symmetric security header (the
// token id in the four bytes before hdrLen).
func checkAEADHeader(hdrLen int) error {
	if hdrLen < messageHeaderLen+8 {
		return fmt.Errorf("AEAD chunk: header of %d bytes has no token id", hdrLen)
	}
	return nil
}

func (a *aeadChunks) Seal(chunk []byte, hdrLen int) ([]byte, error) {
	if err := checkSealInput(chunk, hdrLen); err != nil {
		return nil, err
	}
	if err := checkAEADHeader(hdrLen); err != nil {
		return nil, err
	}
	if len(chunk)-hdrLen < sequenceHeaderLen {
		return nil, errors.New("seal chunk: no sequence header")
	}
	if err := putSize(chunk, len(chunk)+aeadTagLen); err != nil {
		return nil, err
	}
	tokenID := binary.LittleEndian.Uint32(chunk[hdrLen-4:])
	prev := binary.LittleEndian.Uint32(chunk[hdrLen:])
	if prev > 0 {
		prev-- // the number of the chunk before; the first chunk of a channel masks with 0
	}
	nonce := maskedNonce(a.send.iv, tokenID, prev)
	if a.encrypt {
		return a.send.enc.Seal(chunk[:hdrLen], nonce, chunk[hdrLen:], chunk[:hdrLen]), nil
	}
	return a.send.sign.Seal(chunk, nonce, nil, chunk), nil
}

// Open cannot open an AEAD chunk: its nonce needs the sequence number of
// the chunk before (OpenAfter).
func (a *aeadChunks) Open([]byte, int) ([]byte, error) {
	return nil, fmt.Errorf("open chunk: policy %s binds chunks to the previous sequence number: use OpenAfter", a.name)
}

func (a *aeadChunks) OpenAfter(chunk []byte, hdrLen int, prevSeq uint32) ([]byte, error) {
	if err := checkOpenInput(chunk, hdrLen); err != nil {
		return nil, err
	}
	if err := checkAEADHeader(hdrLen); err != nil {
		return nil, err
	}
	if len(chunk)-hdrLen < aeadTagLen {
		return nil, fmt.Errorf("open chunk: %d bytes after the headers, shorter than the %d-byte tag", len(chunk)-hdrLen, aeadTagLen)
	}
	nonce := maskedNonce(a.recv.iv, binary.LittleEndian.Uint32(chunk[hdrLen-4:]), prevSeq)
	if a.encrypt {
		body, err := a.recv.enc.Open(nil, nonce, chunk[hdrLen:], chunk[:hdrLen])
		if err != nil {
			return nil, fmt.Errorf("open chunk: policy %s: %w", a.name, err)
		}
		return checkBody(body)
	}
	signed, tag := chunk[:len(chunk)-aeadTagLen], chunk[len(chunk)-aeadTagLen:]
	if _, err := a.recv.sign.Open(nil, nonce, tag, signed); err != nil {
		return nil, fmt.Errorf("open chunk: policy %s: signature does not match", a.name)
	}
	return checkBody(signed[hdrLen:])
}

// ChainedExchange is an Exchange whose renewal keys depend on those of the
// token before (IKM chaining of the channel enhancements): the channel
// calls Chain with the current token's crypto before a renewal's
// Symmetric.
type ChainedExchange interface {
	Exchange
	Chain(prev ChunkCrypto)
}
