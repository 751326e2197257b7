// Package secpolicy implements the OPC UA security policies of Part 7: how a
// secure channel secures its message chunks (asymmetrically for
// OpenSecureChannel, with derived keys for everything else), how the two
// sides agree on those keys, and how a session signs and encrypts its
// proofs of identity.
//
// A policy is a value behind the Policy interface. The RSA policies share
// one implementation parameterised by their algorithms; the ECC policies
// (ephemeral keys in the nonces, HKDF, raw ECDSA signatures, AEAD) are
// another implementation of the same interfaces, not a special case in the
// secure channel.
package secpolicy

import (
	"crypto"
	"crypto/x509"

	"github.com/gopcua/opcua/ua"
)

// Policy is one security policy.
type Policy interface {
	// URI is the policy's URI, e.g.
	// http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256.
	URI() string
	// Name is the part of the URI after '#', e.g. Basic256Sha256.
	Name() string
	// Deprecated tells whether Part 7 deprecates the policy (broken
	// cryptography: Basic128Rsa15, Basic256).
	Deprecated() bool
	// NonceLength is the length of the nonces this policy makes; a
	// peer's nonce must be at least this long (open62541 sends 32 bytes
	// for Basic128Rsa15, whose Part 7 length is 16). Exchange.Symmetric
	// checks OpenSecureChannel's server nonce itself.
	NonceLength() int
	// CheckKey says why the policy cannot be used with a certificate
	// holding pub (wrong key type or size); nil when it can.
	CheckKey(pub crypto.PublicKey) error

	// Asymmetric secures OpenSecureChannel chunks between the local key
	// pair and the remote certificate (DER, possibly followed by its
	// chain). With mode None, or for the None policy, chunks pass as they
	// are.
	Asymmetric(mode ua.MessageSecurityMode, local *KeyPair, remoteCert []byte) (ChunkCrypto, error)
	// NewExchange starts one key agreement: one per OpenSecureChannel
	// request, issue or renewal.
	NewExchange() (Exchange, error)

	// SignatureAlgorithm is the URI of Sign's algorithm, for SignatureData.
	SignatureAlgorithm() string
	// Sign signs data with the local private key (session signatures:
	// client signature, X.509 user token signature).
	Sign(local crypto.PrivateKey, data []byte) ([]byte, error)
	// Verify checks a remote signature over data with the public key of
	// cert (the server's CreateSession signature).
	Verify(cert *x509.Certificate, data, sig []byte) error
	// EncryptSecret encrypts a user token secret (a password) for the
	// holder of cert, bound to the server nonce, as the UserTokenPolicy
	// with this policy's URI asks; algorithm is the URI that goes into
	// the token's EncryptionAlgorithm ("" when nothing is encrypted).
	EncryptSecret(cert *x509.Certificate, secret, serverNonce []byte) (ciphertext []byte, algorithm string, err error)
}

// KeyPair is the local application instance certificate and its key.
type KeyPair struct {
	Certificate []byte            // DER
	Key         crypto.PrivateKey // *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey
}

// Exchange is the local half of one key agreement.
type Exchange interface {
	// Nonce is what goes to the peer in the OpenSecureChannel request:
	// random bytes for RSA policies, an ephemeral public key for ECC.
	Nonce() []byte
	// Symmetric derives the keys of the token from the peer's nonce, as
	// the client side of the channel, and returns the crypto that secures
	// the chunks sent and received under that token.
	Symmetric(mode ua.MessageSecurityMode, remoteNonce []byte) (ChunkCrypto, error)
}

// ChunkCrypto secures and checks whole message chunks. A chunk is the
// message header (8 bytes: type, chunk type, size), the secure channel id,
// the security header (asymmetric or symmetric), then the body: sequence
// header and message bytes. hdrLen is the length of everything before the
// body.
type ChunkCrypto interface {
	// MaxBody is how many body bytes fit into one chunk of at most
	// chunkSize bytes with headers of hdrLen bytes, after padding,
	// signature and encryption.
	MaxBody(chunkSize, hdrLen int) int
	// Seal returns the chunk to send: it appends padding and signature,
	// encrypts what the mode encrypts, and writes the final size into the
	// message header (bytes 4 to 8) before signing. chunk may be reused.
	Seal(chunk []byte, hdrLen int) ([]byte, error)
	// Open checks and decrypts a received chunk and returns its body,
	// without padding and signature: at least the 8-byte sequence header.
	// It never trusts a length field it has not bounded by the chunk
	// itself (the size in bytes 4 to 8 must be len(chunk)), and never
	// modifies chunk; the body may share memory with it.
	Open(chunk []byte, hdrLen int) ([]byte, error)
}
