package secpolicy

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/cloudflare/circl/dh/x448"
	"github.com/cloudflare/circl/sign/ed448"

	"github.com/tagbridge/tagbridge/internal/brainpool"
)

// certKey is the kind of certificate key an ECC policy needs, and how that
// key signs: ECDSA with raw r‖s (NIST curves from the standard library,
// brainpool curves from internal/brainpool), or EdDSA.
type certKey interface {
	// name names the key as messages do: "P-256", "brainpoolP256r1",
	// "Ed25519".
	name() string
	matches(pub crypto.PublicKey) bool
	sigLen() int
	// sign signs data (hashing it with h for ECDSA).
	sign(key crypto.Signer, data []byte, h crypto.Hash) ([]byte, error)
	verify(pub crypto.PublicKey, data, sig []byte, h crypto.Hash) error
}

// nistKey is an ECDSA key on a curve of crypto/elliptic.
type nistKey struct{ curve elliptic.Curve }

func (k nistKey) name() string { return k.curve.Params().Name }
func (k nistKey) size() int    { return (k.curve.Params().BitSize + 7) / 8 }
func (k nistKey) sigLen() int  { return 2 * k.size() }

func (k nistKey) matches(pub crypto.PublicKey) bool {
	e, ok := pub.(*ecdsa.PublicKey)
	return ok && e.Curve == k.curve
}

func digest(h crypto.Hash, data []byte) []byte {
	d := h.New()
	d.Write(data)
	return d.Sum(nil)
}

func (k nistKey) sign(key crypto.Signer, data []byte, h crypto.Hash) ([]byte, error) {
	der, err := key.Sign(rand.Reader, digest(h, data), h)
	if err != nil {
		return nil, err
	}
	var sig struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &sig); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("signer returned a malformed ECDSA signature")
	}
	n := k.size()
	if sig.R.Sign() <= 0 || sig.S.Sign() <= 0 || sig.R.BitLen() > 8*n || sig.S.BitLen() > 8*n {
		return nil, fmt.Errorf("signer returned an ECDSA signature out of range")
	}
	out := make([]byte, 2*n)
	sig.R.FillBytes(out[:n])
	sig.S.FillBytes(out[n:])
	return out, nil
}

func (k nistKey) verify(pub crypto.PublicKey, data, sig []byte, h crypto.Hash) error {
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("%s cannot check an ECDSA signature", keyKind(pub))
	}
	n := k.size()
	if len(sig) != 2*n {
		return fmt.Errorf("ECDSA signature of %d bytes, want %d", len(sig), 2*n)
	}
	der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])})
	if err != nil {
		return err
	}
	if !ecdsa.VerifyASN1(ec, digest(h, data), der) {
		return errors.New("ECDSA signature does not verify")
	}
	return nil
}

// brainpoolKey is an ECDSA key on a brainpool curve (internal/brainpool:
// constant-time signing).
type brainpoolKey struct{ curve *brainpool.Curve }

func (k brainpoolKey) name() string { return k.curve.Name() }
func (k brainpoolKey) sigLen() int  { return 2 * k.curve.Size() }

func (k brainpoolKey) matches(pub crypto.PublicKey) bool {
	b, ok := pub.(*brainpool.PublicKey)
	return ok && b.Curve() == k.curve
}

func (k brainpoolKey) sign(key crypto.Signer, data []byte, h crypto.Hash) ([]byte, error) {
	b, ok := key.(*brainpool.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s cannot sign for a %s policy", keyKind(key.Public()), k.name())
	}
	return b.SignRaw(rand.Reader, digest(h, data))
}

func (k brainpoolKey) verify(pub crypto.PublicKey, data, sig []byte, h crypto.Hash) error {
	b, ok := pub.(*brainpool.PublicKey)
	if !ok {
		return fmt.Errorf("%s cannot check a %s signature", keyKind(pub), k.name())
	}
	if len(sig) != k.sigLen() {
		return fmt.Errorf("ECDSA signature of %d bytes, want %d", len(sig), k.sigLen())
	}
	if !brainpool.VerifyRaw(b, digest(h, data), sig) {
		return errors.New("ECDSA signature does not verify")
	}
	return nil
}

// ed25519Key and ed448Key sign the data itself (pure EdDSA, empty
// context).
type ed25519Key struct{}

func (ed25519Key) name() string { return "Ed25519" }
func (ed25519Key) sigLen() int  { return ed25519.SignatureSize }
func (ed25519Key) matches(pub crypto.PublicKey) bool {
	_, ok := pub.(ed25519.PublicKey)
	return ok
}
func (ed25519Key) sign(key crypto.Signer, data []byte, _ crypto.Hash) ([]byte, error) {
	return key.Sign(rand.Reader, data, crypto.Hash(0))
}
func (ed25519Key) verify(pub crypto.PublicKey, data, sig []byte, _ crypto.Hash) error {
	k, ok := pub.(ed25519.PublicKey)
	if !ok || len(sig) != ed25519.SignatureSize || !ed25519.Verify(k, data, sig) {
		return errors.New("Ed25519 signature does not verify")
	}
	return nil
}

type ed448Key struct{}

func (ed448Key) name() string { return "Ed448" }
func (ed448Key) sigLen() int  { return ed448.SignatureSize }
func (ed448Key) matches(pub crypto.PublicKey) bool {
	_, ok := pub.(ed448.PublicKey)
	return ok
}
func (ed448Key) sign(key crypto.Signer, data []byte, _ crypto.Hash) ([]byte, error) {
	k, ok := key.(ed448.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s cannot sign for an Ed448 policy", keyKind(key.Public()))
	}
	return ed448.Sign(k, data, ""), nil
}
func (ed448Key) verify(pub crypto.PublicKey, data, sig []byte, _ crypto.Hash) error {
	k, ok := pub.(ed448.PublicKey)
	if !ok || len(sig) != ed448.SignatureSize || !ed448.Verify(k, data, sig, "") {
		return errors.New("Ed448 signature does not verify")
	}
	return nil
}

// keyExchange makes the ephemeral keys of a policy, whose public halves
// travel in the OpenSecureChannel nonces.
type keyExchange interface {
	generate() (ephemeral, error)
	nonceLen() int
}

// ephemeral is one ephemeral private key.
type ephemeral interface {
	// nonce is the public key as OPC UA sends it: X‖Y for the Weierstrass
	// curves (no 0x04), the key as it is for X25519 and X448.
	nonce() []byte
	// shared is the ECDH secret with the peer's nonce, which must be a
	// valid public key: the X coordinate, or the X25519/X448 output.
	shared(peer []byte) ([]byte, error)
}

// stdExchange is ECDH of crypto/ecdh: the NIST curves (uncompressed
// points) or X25519.
type stdExchange struct {
	curve      ecdh.Curve
	size       int
	dropPrefix bool // NIST curves: X‖Y travel without the 0x04 of the uncompressed form
}

type stdEphemeral struct {
	x    stdExchange
	priv *ecdh.PrivateKey
}

func (x stdExchange) nonceLen() int { return x.size }
func (x stdExchange) generate() (ephemeral, error) {
	priv, err := x.curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return stdEphemeral{x, priv}, nil
}
func (e stdEphemeral) nonce() []byte {
	if e.x.dropPrefix {
		return e.priv.PublicKey().Bytes()[1:]
	}
	return e.priv.PublicKey().Bytes()
}
func (e stdEphemeral) shared(peer []byte) ([]byte, error) {
	raw := peer
	if e.x.dropPrefix {
		raw = append([]byte{4}, peer...)
	}
	pub, err := e.x.curve.NewPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("peer's ephemeral key: %w", err)
	}
	return e.priv.ECDH(pub)
}

// brainpoolExchange is ECDH on a brainpool curve.
type brainpoolExchange struct{ curve *brainpool.Curve }

type brainpoolEphemeral struct{ priv *brainpool.PrivateKey }

func (x brainpoolExchange) nonceLen() int { return 2 * x.curve.Size() }
func (x brainpoolExchange) generate() (ephemeral, error) {
	priv, err := x.curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return brainpoolEphemeral{priv}, nil
}
func (e brainpoolEphemeral) nonce() []byte { return e.priv.PublicKey().Bytes()[1:] }
func (e brainpoolEphemeral) shared(peer []byte) ([]byte, error) {
	pub, err := e.priv.Curve().NewPublicKey(append([]byte{4}, peer...))
	if err != nil {
		return nil, fmt.Errorf("peer's ephemeral key: %w", err)
	}
	return e.priv.ECDH(pub)
}

// x448Exchange is X448 (RFC 7748) of circl.
type x448Exchange struct{}

type x448Ephemeral struct{ priv, pub x448.Key }

func (x448Exchange) nonceLen() int { return x448.Size }
func (x448Exchange) generate() (ephemeral, error) {
	var e x448Ephemeral
	if _, err := rand.Read(e.priv[:]); err != nil {
		return nil, err
	}
	x448.KeyGen(&e.pub, &e.priv)
	return &e, nil
}
func (e *x448Ephemeral) nonce() []byte { return append([]byte(nil), e.pub[:]...) }
func (e *x448Ephemeral) shared(peer []byte) ([]byte, error) {
	var pub, out x448.Key
	if len(peer) != x448.Size {
		return nil, fmt.Errorf("peer's ephemeral key of %d bytes, want %d", len(peer), x448.Size)
	}
	copy(pub[:], peer)
	// Shared reports a low-order peer key (an all-zero output).
	if !x448.Shared(&out, &e.priv, &pub) || subtle.ConstantTimeCompare(out[:], make([]byte, x448.Size)) == 1 {
		return nil, errors.New("peer's ephemeral key: a point of small order")
	}
	return out[:], nil
}
