package secpolicy

import (
	"crypto/rsa"
	"fmt"
)

// asymmetric secures OpenSecureChannel chunks of an RSA policy. Part 6
// 6.7.2: whenever the mode is not None they are signed with the sender's
// private key (over the whole chunk, headers and padding included) and
// then encrypted, from the sequence header to the signature, block by
// block with the receiver's public key.
type asymmetric struct {
	policy *rsaPolicy
	local  *rsa.PrivateKey
	remote *rsa.PublicKey
}

// extraPadding tells whether chunks encrypted with a key of keyLen bytes
// carry the ExtraPaddingSize byte (keys larger than 2048 bits).
func extraPadding(keyLen int) bool { return keyLen > 256 }

func (a *asymmetric) MaxBody(chunkSize, hdrLen int) int {
	cipherBlock := a.remote.Size()
	blocks := (chunkSize - hdrLen) / cipherBlock
	if blocks <= 0 {
		return 0
	}
	minPadding := 1
	if extraPadding(cipherBlock) {
		minPadding = 2
	}
	return max(blocks*a.policy.encryption.plainBlock(cipherBlock)-a.local.Size()-minPadding, 0)
}

func (a *asymmetric) Seal(chunk []byte, hdrLen int) ([]byte, error) {
	if err := checkSealInput(chunk, hdrLen); err != nil {
		return nil, err
	}
	cipherBlock := a.remote.Size()
	plainBlock := a.policy.encryption.plainBlock(cipherBlock)
	extra := extraPadding(cipherBlock)
	sigLen := a.local.Size()
	padLen := paddingLen(len(chunk)-hdrLen+sigLen, plainBlock, extra)
	plainLen := len(chunk) - hdrLen + padLen + sigLen
	if err := putSize(chunk, hdrLen+plainLen/plainBlock*cipherBlock); err != nil {
		return nil, err
	}
	chunk = appendPadding(chunk, padLen, extra)
	sig, err := a.policy.signature.sign(a.local, chunk)
	if err != nil {
		return nil, fmt.Errorf("seal chunk: sign with policy %s: %w", a.policy.name, err)
	}
	chunk = append(chunk, sig...)
	ct, err := a.policy.encryption.encrypt(a.remote, chunk[hdrLen:])
	if err != nil {
		return nil, fmt.Errorf("seal chunk: encrypt with policy %s: %w", a.policy.name, err)
	}
	out := make([]byte, 0, hdrLen+len(ct))
	return append(append(out, chunk[:hdrLen]...), ct...), nil
}

func (a *asymmetric) Open(chunk []byte, hdrLen int) ([]byte, error) {
	if err := checkOpenInput(chunk, hdrLen); err != nil {
		return nil, err
	}
	cipherBlock := a.local.Size()
	ct := chunk[hdrLen:]
	if len(ct) == 0 || len(ct)%cipherBlock != 0 {
		return nil, fmt.Errorf("open chunk: %d encrypted bytes are not whole blocks of our %d-byte key", len(ct), cipherBlock)
	}
	// Plaintext is never longer than the ciphertext: bounded by the chunk.
	plain := make([]byte, hdrLen, len(chunk))
	copy(plain, chunk[:hdrLen])
	for block := range len(ct) / cipherBlock {
		var err error
		plain, err = a.policy.encryption.decryptBlock(plain, a.local, ct[block*cipherBlock:(block+1)*cipherBlock])
		if err != nil {
			return nil, fmt.Errorf("open chunk: decrypt with policy %s: %w", a.policy.name, err)
		}
	}
	sigLen := a.remote.Size()
	if len(plain)-hdrLen < sigLen {
		return nil, fmt.Errorf("open chunk: %d decrypted bytes, shorter than the %d-byte signature", len(plain)-hdrLen, sigLen)
	}
	signed, sig := plain[:len(plain)-sigLen], plain[len(plain)-sigLen:]
	if err := a.policy.signature.verify(a.remote, signed, sig); err != nil {
		return nil, fmt.Errorf("open chunk: verify signature with policy %s: %w", a.policy.name, err)
	}
	body, err := stripPadding(signed[hdrLen:], extraPadding(cipherBlock))
	if err != nil {
		return nil, err
	}
	return checkBody(body)
}
