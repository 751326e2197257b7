package secpolicy

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math"

	"github.com/gopcua/opcua/ua"
)

// rsaSignature is an asymmetric signature algorithm of Part 7.
type rsaSignature struct {
	uri  string
	hash crypto.Hash
	pss  bool // RSA-PSS with a salt as long as the hash; PKCS #1 v1.5 otherwise
}

var (
	rsaPKCS1SHA1 = rsaSignature{
		uri:  "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
		hash: crypto.SHA1,
	}
	rsaPKCS1SHA256 = rsaSignature{
		uri:  "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
		hash: crypto.SHA256,
	}
	rsaPSSSHA256 = rsaSignature{
		uri:  "http://opcfoundation.org/UA/security/rsa-pss-sha2-256",
		hash: crypto.SHA256,
		pss:  true,
	}
)

func (s rsaSignature) digest(data []byte) []byte {
	h := s.hash.New()
	h.Write(data)
	return h.Sum(nil)
}

func (s rsaSignature) sign(key crypto.Signer, data []byte) ([]byte, error) {
	var opts crypto.SignerOpts = s.hash
	if s.pss {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: s.hash}
	}
	return key.Sign(rand.Reader, s.digest(data), opts)
}

func (s rsaSignature) verify(pub *rsa.PublicKey, data, sig []byte) error {
	if s.pss {
		return rsa.VerifyPSS(pub, s.hash, s.digest(data), sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	}
	return rsa.VerifyPKCS1v15(pub, s.hash, s.digest(data), sig)
}

// rsaEncryption is an asymmetric encryption algorithm of Part 7.
type rsaEncryption struct {
	uri      string
	overhead int              // bytes of a key-sized block taken by the scheme's padding
	oaepHash func() hash.Hash // nil for PKCS #1 v1.5
}

var (
	rsaPKCS1v15 = rsaEncryption{
		uri:      "http://www.w3.org/2001/04/xmlenc#rsa-1_5",
		overhead: 11,
	}
	rsaOAEPSHA1 = rsaEncryption{
		uri:      "http://www.w3.org/2001/04/xmlenc#rsa-oaep",
		overhead: 2*sha1.Size + 2,
		oaepHash: sha1.New,
	}
	rsaOAEPSHA256 = rsaEncryption{
		uri:      "http://opcfoundation.org/UA/security/rsa-oaep-sha2-256",
		overhead: 2*sha256.Size + 2,
		oaepHash: sha256.New,
	}
)

// plainBlock is how many plaintext bytes one block under a key of keyLen
// bytes carries.
func (e rsaEncryption) plainBlock(keyLen int) int { return keyLen - e.overhead }

// encrypt encrypts data block by block; every block but the last is full.
func (e rsaEncryption) encrypt(pub *rsa.PublicKey, data []byte) ([]byte, error) {
	block := e.plainBlock(pub.Size())
	out := make([]byte, 0, (len(data)+block-1)/block*pub.Size())
	for len(data) > 0 {
		n := min(block, len(data))
		var ct []byte
		var err error
		if e.oaepHash != nil {
			ct, err = rsa.EncryptOAEP(e.oaepHash(), rand.Reader, pub, data[:n], nil)
		} else {
			ct, err = rsa.EncryptPKCS1v15(rand.Reader, pub, data[:n])
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ct...)
		data = data[n:]
	}
	return out, nil
}

// decryptBlock decrypts one key-sized block into dst.
func (e rsaEncryption) decryptBlock(dst []byte, key *rsa.PrivateKey, block []byte) ([]byte, error) {
	var pt []byte
	var err error
	if e.oaepHash != nil {
		pt, err = rsa.DecryptOAEP(e.oaepHash(), nil, key, block, nil)
	} else {
		pt, err = rsa.DecryptPKCS1v15(nil, key, block)
	}
	if err != nil {
		return nil, err
	}
	return append(dst, pt...), nil
}

// rsaPolicy is one of the RSA policies of Part 7: they differ only in the
// algorithms and lengths of this table.
type rsaPolicy struct {
	name       string
	deprecated bool
	minBits    int // asymmetric key sizes allowed
	maxBits    int
	signature  rsaSignature
	encryption rsaEncryption
	symHash    func() hash.Hash // symmetric signature (HMAC) and key derivation (P_SHA)
	sigKeyLen  int              // derived signature key, bytes
	encKeyLen  int              // derived encryption key (AES-128 or AES-256), bytes
	nonceLen   int
}

const uriPrefix = "http://opcfoundation.org/UA/SecurityPolicy#"

// The RSA policies (Part 7, "SecurityPolicy - ..." profiles).
var (
	Basic128Rsa15 Policy = &rsaPolicy{
		name: "Basic128Rsa15", deprecated: true,
		minBits: 1024, maxBits: 2048,
		signature: rsaPKCS1SHA1, encryption: rsaPKCS1v15,
		symHash: sha1.New, sigKeyLen: 16, encKeyLen: 16, nonceLen: 16,
	}
	Basic256 Policy = &rsaPolicy{
		name: "Basic256", deprecated: true,
		minBits: 1024, maxBits: 2048,
		signature: rsaPKCS1SHA1, encryption: rsaOAEPSHA1,
		symHash: sha1.New, sigKeyLen: 24, encKeyLen: 32, nonceLen: 32,
	}
	Basic256Sha256 Policy = &rsaPolicy{
		name:    "Basic256Sha256",
		minBits: 2048, maxBits: 4096,
		signature: rsaPKCS1SHA256, encryption: rsaOAEPSHA1,
		symHash: sha256.New, sigKeyLen: 32, encKeyLen: 32, nonceLen: 32,
	}
	Aes128Sha256RsaOaep Policy = &rsaPolicy{
		name:    "Aes128_Sha256_RsaOaep",
		minBits: 2048, maxBits: 4096,
		signature: rsaPKCS1SHA256, encryption: rsaOAEPSHA1,
		symHash: sha256.New, sigKeyLen: 32, encKeyLen: 16, nonceLen: 32,
	}
	Aes256Sha256RsaPss Policy = &rsaPolicy{
		name:    "Aes256_Sha256_RsaPss",
		minBits: 2048, maxBits: 4096,
		signature: rsaPSSSHA256, encryption: rsaOAEPSHA256,
		symHash: sha256.New, sigKeyLen: 32, encKeyLen: 32, nonceLen: 32,
	}
)

func (p *rsaPolicy) URI() string                { return uriPrefix + p.name }
func (p *rsaPolicy) Name() string               { return p.name }
func (p *rsaPolicy) Deprecated() bool           { return p.deprecated }
func (p *rsaPolicy) NonceLength() int           { return p.nonceLen }
func (p *rsaPolicy) SignatureAlgorithm() string { return p.signature.uri }

func (p *rsaPolicy) CheckKey(pub crypto.PublicKey) error {
	k, ok := pub.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("policy %s needs an RSA key; the certificate has %s", p.name, describeKey(pub))
	}
	if bits := k.N.BitLen(); bits < p.minBits || bits > p.maxBits {
		return fmt.Errorf("policy %s needs an RSA key of %d to %d bits; the certificate has %s",
			p.name, p.minBits, p.maxBits, describeKey(pub))
	}
	return nil
}

// rsaKey returns the RSA public key of cert if the policy accepts it.
func (p *rsaPolicy) rsaKey(cert *x509.Certificate) (*rsa.PublicKey, error) {
	if err := p.CheckKey(cert.PublicKey); err != nil {
		return nil, err
	}
	return cert.PublicKey.(*rsa.PublicKey), nil
}

func (p *rsaPolicy) Sign(local crypto.PrivateKey, data []byte) ([]byte, error) {
	signer, ok := local.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("sign with policy %s: the local key of type %T cannot sign", p.name, local)
	}
	if err := p.CheckKey(signer.Public()); err != nil {
		return nil, fmt.Errorf("sign: local %w", err)
	}
	sig, err := p.signature.sign(signer, data)
	if err != nil {
		return nil, fmt.Errorf("sign with policy %s: %w", p.name, err)
	}
	return sig, nil
}

func (p *rsaPolicy) Verify(cert *x509.Certificate, data, sig []byte) error {
	if cert == nil {
		return fmt.Errorf("verify signature with policy %s: no certificate", p.name)
	}
	pub, err := p.rsaKey(cert)
	if err != nil {
		return fmt.Errorf("verify signature: %w", err)
	}
	if err := p.signature.verify(pub, data, sig); err != nil {
		return fmt.Errorf("verify signature with policy %s: %w", p.name, err)
	}
	return nil
}

// EncryptSecret encrypts the legacy secret format of Part 4 7.41.2.2: the
// length of secret and nonce as a little-endian uint32, the secret, the
// server nonce.
func (p *rsaPolicy) EncryptSecret(cert *x509.Certificate, secret, serverNonce []byte) ([]byte, string, error) {
	if cert == nil {
		return nil, "", fmt.Errorf("encrypt secret with policy %s: no server certificate", p.name)
	}
	pub, err := p.rsaKey(cert)
	if err != nil {
		return nil, "", fmt.Errorf("encrypt secret: server %w", err)
	}
	n := len(secret) + len(serverNonce)
	if n > math.MaxUint32-4 {
		return nil, "", fmt.Errorf("encrypt secret with policy %s: secret too long", p.name)
	}
	plain := make([]byte, 4, 4+n)
	binary.LittleEndian.PutUint32(plain, uint32(n))
	plain = append(append(plain, secret...), serverNonce...)
	defer clear(plain) // the plaintext holds the password
	ct, err := p.encryption.encrypt(pub, plain)
	if err != nil {
		return nil, "", fmt.Errorf("encrypt secret with policy %s: %w", p.name, err)
	}
	return ct, p.encryption.uri, nil
}

func (p *rsaPolicy) Asymmetric(mode ua.MessageSecurityMode, local *KeyPair, remoteCert []byte) (ChunkCrypto, error) {
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
	key, ok := local.Key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("policy %s needs an RSA key; the local key is of type %T", p.name, local.Key)
	}
	localCert, err := leafCertificate(local.Certificate)
	if err != nil {
		return nil, fmt.Errorf("policy %s: local certificate: %w", p.name, err)
	}
	if err := p.CheckKey(localCert.PublicKey); err != nil {
		return nil, fmt.Errorf("local certificate: %w", err)
	}
	if !key.PublicKey.Equal(localCert.PublicKey) {
		return nil, errors.New("local key does not belong to the local certificate")
	}
	cert, err := leafCertificate(remoteCert)
	if err != nil {
		return nil, fmt.Errorf("policy %s: remote certificate: %w", p.name, err)
	}
	remote, err := p.rsaKey(cert)
	if err != nil {
		return nil, fmt.Errorf("remote certificate: %w", err)
	}
	return &asymmetric{policy: p, local: key, remote: remote}, nil
}

func (p *rsaPolicy) NewExchange() (Exchange, error) {
	nonce := make([]byte, p.nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("policy %s: nonce: %w", p.name, err)
	}
	return &rsaExchange{policy: p, nonce: nonce}, nil
}
