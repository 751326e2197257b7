package secpolicy

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"

	"github.com/cloudflare/circl/sign/ed448"
	"github.com/gopcua/opcua/ua"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/tagbridge/tagbridge/internal/brainpool"
)

// eccPolicy is one of the ECC policies of Part 7 whose chunks are secured
// like the RSA policies' (HMAC, AES-CBC): ECC_nistP256, ECC_nistP384 and
// the brainpool pair; or, with aead set, the others.
// What differs (Part 6 6.7.4, 6.8.1):
//   - OpenSecureChannel chunks are signed with ECDSA (raw r‖s, each of the
//     curve's coordinate size) and not encrypted, so they carry no padding;
//   - the OpenSecureChannel nonces are ephemeral ECDH public keys (X‖Y,
//     without the 0x04 prefix), a new pair per request, issue or renewal;
//   - the token's keys come from HKDF over the ECDH shared secret (the X
//     coordinate) with salt = info = L (uint16, little endian) ‖ label ‖
//     the sender's nonce ‖ the receiver's nonce, label "opcua-client" for
//     what the client sends and "opcua-server" for what the server sends.
//
// Part 7 deprecates them in favour of the AEAD variants; the recipe we
// follow names them, so they are not gated.
type eccPolicy struct {
	name      string
	key       certKey     // of the certificates: type, curve, signatures
	exchange  keyExchange // of the ephemeral keys
	hash      crypto.Hash // ECDSA digest, HKDF and HMAC
	sigURI    string
	sigKeyLen int // derived HMAC (AEAD: Poly1305 signing) key, bytes
	encKeyLen int // derived AES (AEAD: ChaCha20) key, bytes
	// edwards: ECC_curve25519 and ECC_curve448, EdDSA certificates and
	// signatures, X25519 or X448 ephemeral keys sent as they are.
	edwards bool
	// aead secures MSG chunks with an AEAD cipher (aeadChunks) instead of
	// HMAC and AES-CBC: ChaCha20-Poly1305 or AES-GCM.
	aead func(key []byte) (cipher.AEAD, error)
	// enhanced: the secure channel enhancements of Part 6 1.05.07 (the
	// ECC_nistP256_AesGcm and _ChaChaPoly policies): the first OPN
	// response's signature also covers the request's and becomes the
	// channel thumbprint, session signatures are bound to it, and each
	// renewal's key material chains the previous one (IKM).
	enhanced bool
	// successor is the policy Part 7 recommends instead, for a Debug
	// note; "" when the policy is not deprecated.
	successor string
}

// The non-AEAD NIST ECC policies (Part 7 "SecurityPolicy - ECC-nistP256",
// "- ECC-nistP384").
var (
	EccNistP256 Policy = &eccPolicy{
		name: "ECC_nistP256", key: nistKey{elliptic.P256()}, exchange: stdExchange{ecdh.P256(), 64, true}, hash: crypto.SHA256,
		sigURI:    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
		sigKeyLen: 32, encKeyLen: 16, successor: "ECC_nistP256_AesGcm",
	}
	EccNistP384 Policy = &eccPolicy{
		name: "ECC_nistP384", key: nistKey{elliptic.P384()}, exchange: stdExchange{ecdh.P384(), 96, true}, hash: crypto.SHA384,
		sigURI:    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
		sigKeyLen: 48, encKeyLen: 32, successor: "ECC_nistP256_AesGcm",
	}
	// EccBrainpoolP256r1 and EccBrainpoolP384r1 (Part 7 "ECC-brainpoolP256r1",
	// "-brainpoolP384r1") are ECC_nistP256 and _nistP384 on the brainpool
	// curves of RFC 5639 (internal/brainpool).
	EccBrainpoolP256r1 Policy = &eccPolicy{
		name: "ECC_brainpoolP256r1", key: brainpoolKey{brainpool.P256r1()}, exchange: brainpoolExchange{brainpool.P256r1()}, hash: crypto.SHA256,
		sigURI:    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
		sigKeyLen: 32, encKeyLen: 16, successor: "ECC_brainpoolP256r1_AesGcm",
	}
	EccBrainpoolP384r1 Policy = &eccPolicy{
		name: "ECC_brainpoolP384r1", key: brainpoolKey{brainpool.P384r1()}, exchange: brainpoolExchange{brainpool.P384r1()}, hash: crypto.SHA384,
		sigURI:    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
		sigKeyLen: 48, encKeyLen: 32, successor: "ECC_brainpoolP384r1_AesGcm",
	}
	// EccCurve25519 is Part 7's "ECC-curve25519": Ed25519 certificates,
	// X25519 ephemeral keys, HKDF-SHA256, ChaCha20-Poly1305 for MSG chunks.
	EccCurve25519 Policy = &eccPolicy{
		name: "ECC_curve25519", key: ed25519Key{}, exchange: stdExchange{ecdh.X25519(), 32, false}, hash: crypto.SHA256,
		sigURI:    "http://www.w3.org/2021/04/xmldsig-more#eddsa-ed25519", // RFC 9231
		sigKeyLen: 32, encKeyLen: 32, edwards: true, aead: chacha20poly1305.New,
	}
	// EccCurve448 is Part 7's "ECC-curve448": ECC_curve25519 with Ed448
	// certificates and signatures and X448 ephemeral keys (circl).
	EccCurve448 Policy = &eccPolicy{
		name: "ECC_curve448", key: ed448Key{}, exchange: x448Exchange{}, hash: crypto.SHA256,
		sigURI:    "http://www.w3.org/2021/04/xmldsig-more#eddsa-ed448", // RFC 9231
		sigKeyLen: 32, encKeyLen: 32, edwards: true, aead: chacha20poly1305.New,
	}
	// EccNistP256AesGcm and EccNistP256ChaChaPoly are Part 7's successors
	// of ECC_nistP256 (1.05.07): the same keys and signatures, AEAD chunks,
	// the channel enhancements. Neither derives a signing key: in mode Sign
	// the tag is made with the encryption key.
	EccNistP256AesGcm Policy = &eccPolicy{
		name: "ECC_nistP256_AesGcm", key: nistKey{elliptic.P256()}, exchange: stdExchange{ecdh.P256(), 64, true}, hash: crypto.SHA256,
		sigURI:    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
		sigKeyLen: 0, encKeyLen: 16, aead: newGCM, enhanced: true,
	}
	EccNistP256ChaChaPoly Policy = &eccPolicy{
		name: "ECC_nistP256_ChaChaPoly", key: nistKey{elliptic.P256()}, exchange: stdExchange{ecdh.P256(), 64, true}, hash: crypto.SHA256,
		sigURI:    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
		sigKeyLen: 0, encKeyLen: 32, aead: chacha20poly1305.New, enhanced: true,
	}
)

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Labels of the key derivations (Part 6 6.8.1; Part 4 7.41.2.3 for the
// user token secret).
const (
	labelClient = "opcua-client"
	labelServer = "opcua-server"
	labelSecret = "opcua-secret"
)

func (p *eccPolicy) URI() string                { return uriPrefix + p.name }
func (p *eccPolicy) Name() string               { return p.name }
func (p *eccPolicy) Deprecated() bool           { return false }
func (p *eccPolicy) SignatureAlgorithm() string { return p.sigURI }

// sigLen is the length of a signature: r‖s, or an EdDSA signature.
func (p *eccPolicy) sigLen() int { return p.key.sigLen() }

// keyName names the key the policy needs: "P-256", "Ed25519".
func (p *eccPolicy) keyName() string { return p.key.name() }

// NonceLength is the length of an ephemeral public key: X‖Y, or an X25519
// or X448 key.
func (p *eccPolicy) NonceLength() int { return p.exchange.nonceLen() }

// CheckKey wants a key of the policy's type and curve. The message reads
// "P-256 key, policy ECC_nistP384 needs a P-384 key": callers prefix what
// the key belongs to.
func (p *eccPolicy) CheckKey(pub crypto.PublicKey) error {
	if !p.key.matches(pub) {
		article := "a"
		if strings.HasPrefix(p.keyName(), "Ed") {
			article = "an"
		}
		return fmt.Errorf("%s, policy %s needs %s %s key", keyKind(pub), p.name, article, p.keyName())
	}
	return nil
}

// keyKind names a key as CheckKey's messages do: "P-256 key", "RSA 2048-bit
// key", "Ed25519 key", "brainpoolP256r1 key".
func keyKind(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case nil:
		return "no key"
	case *ecdsa.PublicKey:
		return k.Curve.Params().Name + " key"
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d-bit key", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519 key"
	case ed448.PublicKey:
		return "Ed448 key"
	case *brainpool.PublicKey:
		return k.Curve().Name() + " key"
	}
	return fmt.Sprintf("key of type %T", pub)
}

func (p *eccPolicy) publicKey(cert *x509.Certificate) (crypto.PublicKey, error) {
	if err := p.CheckKey(cert.PublicKey); err != nil {
		return nil, err
	}
	return cert.PublicKey, nil
}

// signer returns the local key as a signer after checking its curve.
func (p *eccPolicy) signer(local crypto.PrivateKey) (crypto.Signer, error) {
	s, ok := local.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("policy %s: the local key of type %T cannot sign", p.name, local)
	}
	if err := p.CheckKey(s.Public()); err != nil {
		return nil, fmt.Errorf("local %w", err)
	}
	return s, nil
}

// signRaw signs data with ECDSA and returns r‖s, each left-padded to the
// coordinate size, as OPC UA sends ECDSA signatures (not ASN.1); or with
// EdDSA (pure, over the data itself).
func (p *eccPolicy) signRaw(key crypto.Signer, data []byte) ([]byte, error) {
	return p.key.sign(key, data, p.hash)
}

// verifyRaw checks a raw r‖s (or EdDSA) signature over data.
func (p *eccPolicy) verifyRaw(pub crypto.PublicKey, data, sig []byte) error {
	return p.key.verify(pub, data, sig, p.hash)
}

func (p *eccPolicy) Sign(local crypto.PrivateKey, data []byte) ([]byte, error) {
	s, err := p.signer(local)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	sig, err := p.signRaw(s, data)
	if err != nil {
		return nil, fmt.Errorf("sign with policy %s: %w", p.name, err)
	}
	return sig, nil
}

func (p *eccPolicy) Verify(cert *x509.Certificate, data, sig []byte) error {
	if cert == nil {
		return fmt.Errorf("verify signature with policy %s: no certificate", p.name)
	}
	pub, err := p.publicKey(cert)
	if err != nil {
		return fmt.Errorf("verify signature: certificate: %w", err)
	}
	if err := p.verifyRaw(pub, data, sig); err != nil {
		return fmt.Errorf("verify signature with policy %s: %w", p.name, err)
	}
	return nil
}

// EncryptSecret cannot serve the ECC policies: their secrets are encrypted
// to an ephemeral key of the server (EncryptEccSecret), not to its
// certificate.
func (p *eccPolicy) EncryptSecret(*x509.Certificate, []byte, []byte) ([]byte, string, error) {
	return nil, "", fmt.Errorf("policy %s encrypts a secret to the server's ephemeral key (EccEncryptedSecret), not to its certificate", p.name)
}

func (p *eccPolicy) Asymmetric(mode ua.MessageSecurityMode, local *KeyPair, remoteCert []byte) (ChunkCrypto, error) {
	switch mode {
	case ua.MessageSecurityModeNone:
		return passThrough{}, nil
	case ua.MessageSecurityModeSign, ua.MessageSecurityModeSignAndEncrypt:
	default:
		return nil, fmt.Errorf("policy %s: invalid security mode %d", p.name, mode)
	}
	if local == nil {
		return nil, fmt.Errorf("policy %s needs a local certificate and key", p.name)
	}
	localCert, err := leafCertificate(local.Certificate)
	if err != nil {
		return nil, fmt.Errorf("policy %s: local certificate: %w", p.name, err)
	}
	if err := p.CheckKey(localCert.PublicKey); err != nil {
		return nil, fmt.Errorf("local certificate: %w", err)
	}
	key, err := p.signer(local.Key)
	if err != nil {
		return nil, err
	}
	if !samePublicKey(localCert.PublicKey, key.Public()) {
		return nil, errors.New("local key does not belong to the local certificate")
	}
	cert, err := leafCertificate(remoteCert)
	if err != nil {
		return nil, fmt.Errorf("policy %s: remote certificate: %w", p.name, err)
	}
	remote, err := p.publicKey(cert)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	return &eccAsymmetric{policy: p, local: key, remote: remote}, nil
}

// eccAsymmetric secures OpenSecureChannel chunks of an ECC policy: signed
// with the sender's ECDSA key over the whole chunk, never encrypted, so
// without padding (Part 6 6.7.4). open62541 1.5 still appends a zero
// PaddingSize byte to the chunks it sends; Open leaves it in the body, where
// the message decoder ignores it as trailing bytes.
//
// Under the channel enhancements the first response's signature is made
// over the chunk and the first request's signature, and becomes the
// channel thumbprint that session signatures are bound to.
type eccAsymmetric struct {
	policy *eccPolicy
	local  crypto.Signer
	remote crypto.PublicKey

	mu         sync.Mutex
	requestSig []byte // of the first request, until its response arrived
	thumbprint []byte // the first response's signature
}

// ChannelThumbprint is the channel thumbprint of Part 6 1.05.07 6.7.5: nil
// before the first response, and for policies without the enhancements.
func (a *eccAsymmetric) ChannelThumbprint() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.thumbprint
}

func (a *eccAsymmetric) sigLen() int { return a.policy.sigLen() }

func (a *eccAsymmetric) MaxBody(chunkSize, hdrLen int) int {
	return max(chunkSize-hdrLen-a.sigLen(), 0)
}

func (a *eccAsymmetric) Seal(chunk []byte, hdrLen int) ([]byte, error) {
	if err := checkSealInput(chunk, hdrLen); err != nil {
		return nil, err
	}
	if err := putSize(chunk, len(chunk)+a.sigLen()); err != nil {
		return nil, err
	}
	sig, err := a.policy.signRaw(a.local, chunk)
	if err != nil {
		return nil, fmt.Errorf("seal chunk: sign with policy %s: %w", a.policy.name, err)
	}
	if a.policy.enhanced {
		a.mu.Lock()
		if a.thumbprint == nil && a.requestSig == nil {
			a.requestSig = bytes.Clone(sig)
		}
		a.mu.Unlock()
	}
	return append(chunk, sig...), nil
}

func (a *eccAsymmetric) Open(chunk []byte, hdrLen int) ([]byte, error) {
	if err := checkOpenInput(chunk, hdrLen); err != nil {
		return nil, err
	}
	n := a.sigLen()
	if len(chunk)-hdrLen < n {
		return nil, fmt.Errorf("open chunk: %d bytes after the headers, shorter than the %d-byte signature", len(chunk)-hdrLen, n)
	}
	signed, sig := chunk[:len(chunk)-n], chunk[len(chunk)-n:]
	a.mu.Lock()
	defer a.mu.Unlock()
	first := a.policy.enhanced && a.thumbprint == nil && a.requestSig != nil
	data := signed
	if first {
		data = append(bytes.Clone(signed), a.requestSig...)
	}
	if err := a.policy.verifyRaw(a.remote, data, sig); err != nil {
		return nil, fmt.Errorf("open chunk: verify signature with policy %s: %w", a.policy.name, err)
	}
	if first {
		a.thumbprint, a.requestSig = bytes.Clone(sig), nil
	}
	return checkBody(signed[hdrLen:])
}

func (p *eccPolicy) NewExchange() (Exchange, error) {
	priv, err := p.newEphemeral()
	if err != nil {
		return nil, err
	}
	return &eccExchange{policy: p, priv: priv, nonce: p.ephemeralNonce(priv)}, nil
}

func (p *eccPolicy) newEphemeral() (ephemeral, error) {
	priv, err := p.exchange.generate()
	if err != nil {
		return nil, fmt.Errorf("policy %s: ephemeral key: %w", p.name, err)
	}
	return priv, nil
}

// ephemeralNonce is the public key of priv as OPC UA sends it: X‖Y, or
// the X25519 or X448 key as it is.
func (p *eccPolicy) ephemeralNonce(priv ephemeral) []byte { return priv.nonce() }

// samePublicKey compares two public keys of any type.
func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// sharedSecret is the ECDH secret between priv and the peer's ephemeral
// key, checked to be a point on the curve.
func (p *eccPolicy) sharedSecret(priv ephemeral, peer []byte) ([]byte, error) {
	if len(peer) != p.NonceLength() {
		return nil, fmt.Errorf("policy %s: ephemeral key of %d bytes, want %d", p.name, len(peer), p.NonceLength())
	}
	secret, err := priv.shared(peer)
	if err != nil {
		return nil, fmt.Errorf("policy %s: ECDH: %w", p.name, err)
	}
	return secret, nil
}

// eccSalt is L (little endian) ‖ label ‖ first ‖ second, the salt and
// info of one HKDF derivation (Part 6 6.8.1).
func eccSalt(length int, label string, first, second []byte) []byte {
	salt := binary.LittleEndian.AppendUint16(make([]byte, 0, 2+len(label)+len(first)+len(second)), uint16(length))
	salt = append(salt, label...)
	salt = append(salt, first...)
	return append(salt, second...)
}

// hkdfKey is HKDF (RFC 5869) with the policy's hash.
func hkdfKey(h func() hash.Hash, secret, salt, info []byte, n int) ([]byte, error) {
	return hkdf.Key(h, secret, salt, string(info), n)
}

// ivLen is the length of the derived IV: an AES block, or a ChaCha20
// nonce.
func (p *eccPolicy) ivLen() int {
	if p.aead != nil {
		return chacha20poly1305.NonceSize // and GCM's standard nonce: 12 bytes
	}
	return aes.BlockSize
}

// keyMaterial derives one direction's key material: signing key,
// encryption key, IV.
func (p *eccPolicy) keyMaterial(secret []byte, label string, sender, receiver []byte) ([]byte, error) {
	n := p.sigKeyLen + p.encKeyLen + p.ivLen()
	salt := eccSalt(n, label, sender, receiver)
	k, err := hkdfKey(p.hash.New, secret, salt, salt, n)
	if err != nil {
		return nil, fmt.Errorf("policy %s: derive keys: %w", p.name, err)
	}
	return k, nil
}

// deriveKeys derives one direction's keys: HMAC key, AES key, IV.
func (p *eccPolicy) deriveKeys(secret []byte, label string, sender, receiver []byte) (symKeys, error) {
	k, err := p.keyMaterial(secret, label, sender, receiver)
	if err != nil {
		return symKeys{}, err
	}
	block, err := aes.NewCipher(k[p.sigKeyLen : p.sigKeyLen+p.encKeyLen])
	if err != nil {
		return symKeys{}, fmt.Errorf("policy %s: derive keys: %w", p.name, err)
	}
	return symKeys{sign: k[:p.sigKeyLen], block: block, iv: k[p.sigKeyLen+p.encKeyLen:]}, nil
}

// eccExchange is the local half of one ECDH key agreement.
type eccExchange struct {
	policy  *eccPolicy
	priv    ephemeral
	nonce   []byte
	prevIKM []byte // the previous token's, for a renewal under the channel enhancements
}

// Chain makes a renewal's exchange derive its keys from prev's too (IKM
// chaining, Part 6 1.05.07 6.8.1); without the channel enhancements it
// does nothing.
func (e *eccExchange) Chain(prev ChunkCrypto) {
	if a, ok := prev.(*aeadChunks); ok && e.policy.enhanced {
		e.prevIKM = a.ikm
	}
}

func (e *eccExchange) Nonce() []byte { return e.nonce }

func (e *eccExchange) Symmetric(mode ua.MessageSecurityMode, remoteNonce []byte) (ChunkCrypto, error) {
	p := e.policy
	switch mode {
	case ua.MessageSecurityModeNone:
		return passThrough{}, nil
	case ua.MessageSecurityModeSign, ua.MessageSecurityModeSignAndEncrypt:
	default:
		return nil, fmt.Errorf("policy %s: invalid security mode %d", p.name, mode)
	}
	secret, err := p.sharedSecret(e.priv, remoteNonce)
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	if p.enhanced {
		// IKM chaining: the key material of a renewal is derived from the
		// previous token's IKM XOR the new shared secret.
		for i := range e.prevIKM {
			if i < len(secret) {
				secret[i] ^= e.prevIKM[i]
			}
		}
	}
	if p.aead != nil {
		return p.aeadSymmetric(mode, secret, e.nonce, remoteNonce)
	}
	send, err := p.deriveKeys(secret, labelClient, e.nonce, remoteNonce)
	if err != nil {
		return nil, err
	}
	recv, err := p.deriveKeys(secret, labelServer, remoteNonce, e.nonce)
	if err != nil {
		return nil, err
	}
	return &symmetric{
		name:    p.name,
		hash:    p.hash.New,
		encrypt: mode == ua.MessageSecurityModeSignAndEncrypt,
		sigLen:  p.hash.Size(),
		send:    send,
		recv:    recv,
	}, nil
}
