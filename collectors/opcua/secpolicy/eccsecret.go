package secpolicy

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// EphemeralKeyEncrypter is implemented by the policies that encrypt a user
// token secret to an ephemeral key of the server (the ECC policies, Part 4
// 7.41.2.3 EccEncryptedSecret) instead of to its certificate
// (Policy.EncryptSecret). The client asks for that key with an
// "ECDHPolicyUri" entry in the CreateSession or ActivateSession request's
// additional header; the server answers with "ECDHKey", an
// EphemeralKeyType signed with its application key (check it with Verify).
type EphemeralKeyEncrypter interface {
	// EncryptToEphemeralKey returns the EccEncryptedSecret of secret,
	// bound to serverNonce, for the server's ephemeral key serverKey,
	// carrying and signed with the client's application key pair local.
	EncryptToEphemeralKey(local *KeyPair, serverKey, secret, serverNonce []byte, signingTime time.Time) ([]byte, error)
}

// LegacySequenceNumbers tells whether a channel under p numbers its chunks
// the legacy way (Part 6 6.7.2.4): starting at 1 and wrapping, once above
// MaxUint32-1024, to a number below 1024. The ECC policies do not: their
// numbers start at 0 and go on one by one, from MaxUint32 to 0.
func LegacySequenceNumbers(p Policy) bool {
	_, ecc := p.(*eccPolicy)
	return !ecc
}

// ChannelBinding is implemented by the OpenSecureChannel ChunkCrypto of
// the policies with the channel enhancements of Part 6 1.05.07.
type ChannelBinding interface {
	// ChannelThumbprint is the signature of the first OpenSecureChannel
	// response, nil before it.
	ChannelThumbprint() []byte
}

// ChannelBound tells whether session signatures under p are bound to the
// channel (Part 4 1.05.07 5.6.2, 5.6.3): the channel thumbprint, a nonce,
// the hashes of the certificates (CertificateHash), the other nonce,
// instead of a certificate and a nonce. Their SignatureData algorithm is
// left empty.
func ChannelBound(p Policy) bool {
	e, ok := p.(*eccPolicy)
	return ok && e.enhanced
}

// CertificateHash is the hash of a certificate's leaf DER that a
// channel-bound signature covers: the digest of the policy's curve.
func CertificateHash(p Policy, cert []byte) ([]byte, error) {
	e, ok := p.(*eccPolicy)
	if !ok || !e.enhanced {
		return nil, fmt.Errorf("policy %s binds no signature to the channel", p.Name())
	}
	leaf, err := leafCertificate(cert)
	if err != nil {
		return nil, err
	}
	h := e.hash.New()
	h.Write(leaf.Raw)
	return h.Sum(nil), nil
}

// SupersededBy names the policy Part 7 recommends instead of p, for a
// Debug note: ECC_nistP256 and ECC_nistP384 are deprecated there in favour
// of the AEAD variants, but the secure-connection recipe names them, so
// they are not gated. "" for the others.
func SupersededBy(p Policy) string {
	if e, ok := p.(*eccPolicy); ok {
		return e.successor
	}
	return ""
}

// SessionNonceLength is the least length of the nonces of CreateSession and
// ActivateSession under p: the channel's nonce length, except for the ECC
// policies, whose channel nonces are ephemeral keys while session nonces
// stay 32 random bytes (Part 4 5.6.2).
func SessionNonceLength(p Policy) int {
	if _, ok := p.(*eccPolicy); ok {
		return 32
	}
	return p.NonceLength()
}

// EncryptToEphemeralKey builds the EccEncryptedSecret (Part 4 7.41.2.3):
//
//	common header: TypeId (EccEncryptedSecret), EncodingMask 1, Length
//	  (bytes after this field), SecurityPolicyUri, client Certificate,
//	  SigningTime, KeyDataLength
//	policy header: SenderPublicKey (a new ephemeral key of ours),
//	  ReceiverPublicKey (the server's)
//	payload, AES-CBC encrypted: Nonce (the server's session nonce),
//	  Secret, padding bytes of the padding's length, PaddingSize (uint16)
//	signature: ECDSA of everything before it, with the client's key
//
// The payload key and IV come from HKDF over the ECDH secret of the two
// ephemeral keys with salt = info = L ‖ "opcua-secret" ‖ SenderPublicKey ‖
// ReceiverPublicKey.
func (p *eccPolicy) EncryptToEphemeralKey(local *KeyPair, serverKey, secret, serverNonce []byte, signingTime time.Time) ([]byte, error) {
	fail := func(step string, err error) ([]byte, error) {
		return nil, fmt.Errorf("encrypt secret with policy %s: %s: %w", p.name, step, err)
	}
	if local == nil {
		return fail("client key", fmt.Errorf("no client certificate and key"))
	}
	signer, err := p.signer(local.Key)
	if err != nil {
		return fail("client key", err)
	}
	priv, err := p.newEphemeral()
	if err != nil {
		return fail("ephemeral key", err)
	}
	senderKey := p.ephemeralNonce(priv)
	shared, err := p.sharedSecret(priv, serverKey)
	if err != nil {
		return fail("server's ephemeral key", err)
	}
	defer clear(shared)
	n := p.encKeyLen + p.ivLen()
	salt := eccSalt(n, labelSecret, senderKey, serverKey)
	keys, err := hkdfKey(p.hash.New, shared, salt, salt, n)
	if err != nil {
		return fail("derive key", err)
	}
	defer clear(keys)
	// AES-CBC, or for the AEAD policies ChaCha20-Poly1305 with the headers
	// as associated data and the IV unmasked.
	var block cipher.Block
	var aead cipher.AEAD
	tagLen := 0
	if p.aead != nil {
		aead, err = p.aead(keys[:p.encKeyLen])
		tagLen = aeadTagLen
	} else {
		block, err = aes.NewCipher(keys[:p.encKeyLen])
	}
	if err != nil {
		return fail("derive key", err)
	}
	if len(secret) > math.MaxInt32-len(serverNonce)-64 {
		return fail("secret", fmt.Errorf("too long"))
	}

	// The compact four-byte form: open62541 recomputes the header length
	// from the decoded id in its shortest encoding.
	typeID, err := ua.NewFourByteNodeID(0, id.EccEncryptedSecret).Encode()
	if err != nil {
		return fail("encode", err)
	}
	policyHeader := appendByteString(appendByteString(nil, senderKey), serverKey)
	payload := appendByteString(appendByteString(nil, serverNonce), secret)
	defer clear(payload) // holds the secret
	pad := 0
	if rem := (len(payload) + 2) % aes.BlockSize; rem != 0 {
		pad = aes.BlockSize - rem
	}
	if pad+len(secret) < aes.BlockSize { // a short secret is hidden in a block of padding
		pad += aes.BlockSize
	}
	for range pad {
		payload = append(payload, byte(pad))
	}
	payload = binary.LittleEndian.AppendUint16(payload, uint16(pad))

	out := append(typeID, 1)
	lengthAt := len(out)
	out = binary.LittleEndian.AppendUint32(out, 0) // Length, set below
	out = appendByteString(out, []byte(p.URI()))
	out = appendByteString(out, local.Certificate)
	out = binary.LittleEndian.AppendUint64(out, uint64(dateTime(signingTime)))
	out = binary.LittleEndian.AppendUint16(out, uint16(len(policyHeader)))
	out = append(out, policyHeader...)
	binary.LittleEndian.PutUint32(out[lengthAt:], uint32(len(out)+len(payload)+tagLen+p.sigLen()-lengthAt-4))
	if aead != nil {
		out = aead.Seal(out, keys[p.encKeyLen:], payload, out)
	} else {
		encAt := len(out)
		out = append(out, payload...)
		cipher.NewCBCEncrypter(block, keys[p.encKeyLen:]).CryptBlocks(out[encAt:], out[encAt:])
	}
	sig, err := p.signRaw(signer, out)
	if err != nil {
		return fail("sign", err)
	}
	return append(out, sig...), nil
}

// appendByteString appends b as an OPC UA ByteString (int32 length, bytes).
func appendByteString(dst, b []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

// dateTime is t as an OPC UA DateTime: 100 ns intervals since 1601-01-01.
func dateTime(t time.Time) int64 {
	const epochDiff = 116444736000000000 // 1601 to 1970 in 100 ns
	return t.UnixNano()/100 + epochDiff
}
