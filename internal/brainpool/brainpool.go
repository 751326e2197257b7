// Package brainpool implements ECDH and ECDSA on the brainpoolP256r1 and
// brainpoolP384r1 curves of RFC 5639, which Go's standard library lacks and
// which OPC UA's ECC_brainpoolP256r1 and ECC_brainpoolP384r1 policies use.
//
// Timing: every operation on a private key or a secret scalar (key
// generation, ECDH, signing) runs in time independent of the secret. The
// field and scalar arithmetic is filippo.io/bigmod, the constant-time
// modular arithmetic Go's own RSA is built on (no math/big); points are
// added with the complete projective formulas of Renes, Costello and
// Batina (eprint 2015/1060, Algorithm 1, any a), which have no special
// cases (doubling, the point at infinity) and so no branches; scalar
// multiplication is a fixed 4-bit window (for the base point, a table of
// every nibble's multiples, built once) that reads every table entry
// through masks. Signature verification, whose inputs are all public, reads
// the tables by index. Only public values are compared or branched on: a public
// key's validity, a result at infinity, a signature's range. Rejection
// sampling of random scalars leaks only how many draws were rejected.
//
// github.com/ProtonMail/go-crypto/brainpool was not used: it implements the
// curves on crypto/elliptic.CurveParams, that is math/big, whose timing
// depends on the values, which is unfit for ephemeral ECDH keys and signing
// keys.
package brainpool

import (
	"crypto"
	"crypto/subtle"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"

	"filippo.io/bigmod"
)

// Curve is one brainpool curve y² = x³ + ax + b over GF(p) with a base point
// G of prime order n (cofactor 1).
type Curve struct {
	name             string
	size             int // bytes of p and n
	p, n             *bigmod.Modulus
	a, b3            *bigmod.Nat // a, 3b mod p
	b                *bigmod.Nat
	g                point
	pMinus2, nMinus2 []byte

	// baseTable[j][i] is i·16^(2·Size-1-j)·G: scalarBaseMult adds one
	// entry per nibble of the scalar, without doublings. Built once, on
	// first use.
	baseOnce  sync.Once
	baseTable [][16]point
}

// The domain parameters of RFC 5639 sections 3.4 and 3.6, as Wycheproof's
// ec_prime_order_curves_test.json lists them.
var (
	p256r1 = newCurve("brainpoolP256r1",
		"a9fb57dba1eea9bc3e660a909d838d726e3bf623d52620282013481d1f6e5377",
		"a9fb57dba1eea9bc3e660a909d838d718c397aa3b561a6f7901e0e82974856a7",
		"7d5a0975fc2c3057eef67530417affe7fb8055c126dc5c6ce94a4b44f330b5d9",
		"26dc5c6ce94a4b44f330b5d9bbd77cbf958416295cf7e1ce6bccdc18ff8c07b6",
		"8bd2aeb9cb7e57cb2c4b482ffc81b7afb9de27e1e3bd23c23a4453bd9ace3262",
		"547ef835c3dac4fd97f8461a14611dc9c27745132ded8e545c1d54c72f046997")
	p384r1 = newCurve("brainpoolP384r1",
		"8cb91e82a3386d280f5d6f7e50e641df152f7109ed5456b412b1da197fb71123acd3a729901d1a71874700133107ec53",
		"8cb91e82a3386d280f5d6f7e50e641df152f7109ed5456b31f166e6cac0425a7cf3ab6af6b7fc3103b883202e9046565",
		"7bc382c63d8c150c3c72080ace05afa0c2bea28e4fb22787139165efba91f90f8aa5814a503ad4eb04a8c7dd22ce2826",
		"04a8c7dd22ce28268b39b55416f0447c2fb77de107dcd2a62e880ea53eeb62d57cb4390295dbc9943ab78696fa504c11",
		"1d1c64f068cf45ffa2a63a81b7c13f6b8847a3e77ef14fe3db7fcafe0cbd10e8e826e03436d646aaef87b2e247d4af1e",
		"8abe1d7520f9c2a45cb1eb8e95cfd55262b70b29feec5864e19c054ff99129280e4646217791811142820341263c5315")
)

// P256r1 is brainpoolP256r1.
func P256r1() *Curve { return p256r1 }

// P384r1 is brainpoolP384r1.
func P384r1() *Curve { return p384r1 }

// Name is the curve's name as RFC 5639 gives it, e.g. "brainpoolP256r1".
func (c *Curve) Name() string { return c.name }

// Size is the length in bytes of a coordinate, a scalar, and one half of a
// raw signature.
func (c *Curve) Size() int { return c.size }

func (c *Curve) String() string { return c.name }

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func newCurve(name, p, n, a, b, gx, gy string) *Curve {
	pm, err := bigmod.NewModulus(mustHex(p))
	if err != nil {
		panic(err)
	}
	nm, err := bigmod.NewModulus(mustHex(n))
	if err != nil {
		panic(err)
	}
	c := &Curve{name: name, size: len(mustHex(p)), p: pm, n: nm}
	c.a = c.mustElement(mustHex(a))
	c.b = c.mustElement(mustHex(b))
	c.b3 = c.add(c.add(c.b, c.b), c.b)
	c.g = point{x: c.mustElement(mustHex(gx)), y: c.mustElement(mustHex(gy)), z: c.one()}
	c.pMinus2 = minus2(mustHex(p))
	c.nMinus2 = minus2(mustHex(n))
	return c
}

// minus2 is v-2 for a big-endian odd v > 2 (no borrow past the last byte).
func minus2(v []byte) []byte {
	out := new(big.Int).Sub(new(big.Int).SetBytes(v), big.NewInt(2)).FillBytes(make([]byte, len(v)))
	return out
}

func (c *Curve) mustElement(b []byte) *bigmod.Nat {
	x, err := bigmod.NewNat().SetBytes(b, c.p)
	if err != nil {
		panic(err)
	}
	return x
}

// Field arithmetic mod p. Each returns a new element: no aliasing between
// the receiver of a bigmod operation and its argument.
func (c *Curve) copyOf(a *bigmod.Nat) *bigmod.Nat {
	r := bigmod.NewNat().ExpandFor(c.p)
	copy(r.Bits(), a.Bits())
	return r
}
func (c *Curve) add(a, b *bigmod.Nat) *bigmod.Nat { return c.copyOf(a).Add(b, c.p) }
func (c *Curve) sub(a, b *bigmod.Nat) *bigmod.Nat { return c.copyOf(a).Sub(b, c.p) }
func (c *Curve) mul(a, b *bigmod.Nat) *bigmod.Nat { return c.copyOf(a).Mul(b, c.p) }
func (c *Curve) zero() *bigmod.Nat                { return bigmod.NewNat().ExpandFor(c.p) }
func (c *Curve) one() *bigmod.Nat                 { return c.mustElement([]byte{1}) }

// point is a point in projective coordinates (X:Y:Z), x = X/Z, y = Y/Z;
// the point at infinity is (0:1:0).
type point struct{ x, y, z *bigmod.Nat }

func (c *Curve) infinity() point { return point{x: c.zero(), y: c.one(), z: c.zero()} }

// addPoints is Algorithm 1 of Renes, Costello, Batina: complete addition
// for y² = x³ + ax + b, correct for every pair of inputs, P = Q and the
// point at infinity included. The operations are bigmod's in-place ones
// (x = x op y) on fresh temporaries: p and q are never written, and no
// operand is its own argument.
func (c *Curve) addPoints(p, q point) point {
	m := c.p
	set := func(dst, a *bigmod.Nat) *bigmod.Nat { copy(dst.Bits(), a.Bits()); return dst }
	t0, t1, t2, t3, t4, t5, t6 := c.zero(), c.zero(), c.zero(), c.zero(), c.zero(), c.zero(), c.zero()
	x3, y3, z3 := c.zero(), c.zero(), c.zero()
	set(t0, p.x).Mul(q.x, m)           // t0 = X1·X2
	set(t1, p.y).Mul(q.y, m)           // t1 = Y1·Y2
	set(t2, p.z).Mul(q.z, m)           // t2 = Z1·Z2
	set(t3, p.x).Add(p.y, m)           // t3 = X1+Y1
	set(t4, q.x).Add(q.y, m)           // t4 = X2+Y2
	t3.Mul(t4, m)                      // t3 = t3·t4
	set(t4, t0).Add(t1, m)             // t4 = t0+t1
	t3.Sub(t4, m)                      // t3 = t3−t4
	set(t4, p.x).Add(p.z, m)           // t4 = X1+Z1
	set(t5, q.x).Add(q.z, m)           // t5 = X2+Z2
	t4.Mul(t5, m)                      // t4 = t4·t5
	set(t5, t0).Add(t2, m)             // t5 = t0+t2
	t4.Sub(t5, m)                      // t4 = t4−t5
	set(t5, p.y).Add(p.z, m)           // t5 = Y1+Z1
	set(x3, q.y).Add(q.z, m)           // X3 = Y2+Z2
	t5.Mul(x3, m)                      // t5 = t5·X3
	set(x3, t1).Add(t2, m)             // X3 = t1+t2
	t5.Sub(x3, m)                      // t5 = t5−X3
	set(z3, c.a).Mul(t4, m)            // Z3 = a·t4
	set(x3, c.b3).Mul(t2, m)           // X3 = b3·t2
	z3.Add(x3, m)                      // Z3 = X3+Z3
	set(x3, t1).Sub(z3, m)             // X3 = t1−Z3
	z3.Add(t1, m)                      // Z3 = t1+Z3
	set(y3, x3).Mul(z3, m)             // Y3 = X3·Z3
	set(t1, t0).Add(t0, m).Add(t0, m)  // t1 = 3·t0
	t2.Mul(c.a, m)                     // t2 = a·t2
	t4.Mul(c.b3, m)                    // t4 = b3·t4
	t1.Add(t2, m)                      // t1 = t1+t2
	set(t6, t0).Sub(t2, m).Mul(c.a, m) // t2 = a·(t0−t2)
	t4.Add(t6, m)                      // t4 = t4+t2
	set(t0, t1).Mul(t4, m)             // t0 = t1·t4
	y3.Add(t0, m)                      // Y3 = Y3+t0
	set(t0, t5).Mul(t4, m)             // t0 = t5·t4
	x3.Mul(t3, m)                      // X3 = t3·X3
	x3.Sub(t0, m)                      // X3 = X3−t0
	set(t0, t3).Mul(t1, m)             // t0 = t3·t1
	z3.Mul(t5, m)                      // Z3 = t5·Z3
	z3.Add(t0, m)                      // Z3 = Z3+t0
	return point{x: x3, y: y3, z: z3}
}

// selectInto sets dst to src when on is 1 and leaves it when on is 0,
// without a branch or a data-dependent memory access.
func selectInto(dst, src *bigmod.Nat, on uint) {
	mask := -on // all ones or zero
	d, s := dst.Bits(), src.Bits()
	for i := range d {
		d[i] ^= mask & (d[i] ^ s[i])
	}
}

// ctEq is 1 when a == b, else 0, for small values, without a branch.
func ctEq(a, b uint) uint {
	x := a ^ b
	return 1 ^ ((x | -x) >> (bitsUint - 1))
}

const bitsUint = 32 << (^uint(0) >> 63)

// scalarMult returns k·p for a big-endian scalar k of any value, in time
// that depends only on len(k): a fixed 4-bit window, most significant
// nibble first, every table entry read through masks.
//
// With secret false (signature verification: every input public) the
// tables are read by index instead, which is faster and not constant time.
func (c *Curve) scalarMult(p point, k []byte, secret bool) point {
	var table [16]point
	table[0] = c.infinity()
	table[1] = p
	for i := 2; i < 16; i++ {
		table[i] = c.addPoints(table[i-1], p)
	}
	acc := c.infinity()
	for _, b := range k {
		for _, nibble := range [2]uint{uint(b >> 4), uint(b & 15)} {
			for range 4 {
				acc = c.addPoints(acc, acc)
			}
			acc = c.addPoints(acc, c.lookup(table[:], nibble, secret))
		}
	}
	return acc
}

// scalarBaseMult returns k·G for a big-endian scalar of Size bytes: one
// masked table read and one complete addition per nibble, so its time
// depends only on len(k).
func (c *Curve) scalarBaseMult(k []byte, secret bool) point {
	c.baseOnce.Do(c.buildBaseTable)
	acc := c.infinity()
	for j := range 2 * len(k) {
		nibble := uint(k[j/2] >> 4)
		if j%2 == 1 {
			nibble = uint(k[j/2] & 15)
		}
		acc = c.addPoints(acc, c.lookup(c.baseTable[j][:], nibble, secret))
	}
	return acc
}

// lookup returns table[i]: for a secret index, read through masks from
// every entry.
func (c *Curve) lookup(table []point, i uint, secret bool) point {
	if !secret {
		return table[i]
	}
	t := c.infinity()
	for j := range table {
		on := ctEq(uint(j), i)
		selectInto(t.x, table[j].x, on)
		selectInto(t.y, table[j].y, on)
		selectInto(t.z, table[j].z, on)
	}
	return t
}

func (c *Curve) buildBaseTable() {
	n := 2 * c.size
	c.baseTable = make([][16]point, n)
	p := c.g // 16^(n-1-j)·G, from the last nibble up
	for j := n - 1; j >= 0; j-- {
		c.baseTable[j][0] = c.infinity()
		c.baseTable[j][1] = p
		for i := 2; i < 16; i++ {
			c.baseTable[j][i] = c.addPoints(c.baseTable[j][i-1], p)
		}
		for range 4 {
			p = c.addPoints(p, p)
		}
	}
}

// affine returns the coordinates of p, big-endian, or ok == false at
// infinity. Z⁻¹ is Z^(p-2), constant time.
func (c *Curve) affine(p point) (x, y []byte, ok bool) {
	if p.z.IsZero() == 1 {
		return nil, nil, false
	}
	zInv := bigmod.NewNat().Exp(p.z, c.pMinus2, c.p)
	return c.mul(p.x, zInv).Bytes(c.p), c.mul(p.y, zInv).Bytes(c.p), true
}

// onCurve tells whether y² = x³ + ax + b.
func (c *Curve) onCurve(x, y *bigmod.Nat) bool {
	lhs := c.mul(y, y)
	rhs := c.add(c.add(c.mul(c.mul(x, x), x), c.mul(c.a, x)), c.b)
	return lhs.Equal(rhs) == 1
}

// PublicKey is a point of the curve other than infinity.
type PublicKey struct {
	curve *Curve
	x, y  []byte // affine, big-endian, Size bytes each
}

// PrivateKey is a scalar 1 ≤ d < n with its public key d·G.
type PrivateKey struct {
	curve *Curve
	d     []byte // big-endian, Size bytes
	pub   *PublicKey
}

// NewPublicKey parses an uncompressed point, 0x04 ‖ X ‖ Y, checking that it
// lies on the curve (prime order: every such point is in the group).
func (c *Curve) NewPublicKey(b []byte) (*PublicKey, error) {
	if len(b) != 1+2*c.size || b[0] != 4 {
		return nil, fmt.Errorf("%s: public key is not an uncompressed point of %d bytes", c.name, 1+2*c.size)
	}
	x, err := bigmod.NewNat().SetBytes(b[1:1+c.size], c.p)
	if err != nil {
		return nil, fmt.Errorf("%s: public key x out of range", c.name)
	}
	y, err := bigmod.NewNat().SetBytes(b[1+c.size:], c.p)
	if err != nil {
		return nil, fmt.Errorf("%s: public key y out of range", c.name)
	}
	if !c.onCurve(x, y) {
		return nil, fmt.Errorf("%s: public key is not on the curve", c.name)
	}
	return &PublicKey{curve: c, x: x.Bytes(c.p), y: y.Bytes(c.p)}, nil
}

func (k *PublicKey) point() point {
	c := k.curve
	return point{x: c.mustElement(k.x), y: c.mustElement(k.y), z: c.one()}
}

// Curve is the key's curve.
func (k *PublicKey) Curve() *Curve { return k.curve }

// Bytes is the uncompressed point 0x04 ‖ X ‖ Y.
func (k *PublicKey) Bytes() []byte {
	out := append([]byte{4}, k.x...)
	return append(out, k.y...)
}

// Equal tells whether x is the same public key.
func (k *PublicKey) Equal(x crypto.PublicKey) bool {
	o, ok := x.(*PublicKey)
	return ok && o.curve == k.curve && subtle.ConstantTimeCompare(o.Bytes(), k.Bytes()) == 1
}

// NewPrivateKey makes a key of the big-endian scalar d, 1 ≤ d < n, Size
// bytes long.
func (c *Curve) NewPrivateKey(d []byte) (*PrivateKey, error) {
	if len(d) != c.size {
		return nil, fmt.Errorf("%s: private key of %d bytes, want %d", c.name, len(d), c.size)
	}
	s, err := bigmod.NewNat().SetBytes(d, c.n)
	if err != nil || s.IsZero() == 1 {
		return nil, fmt.Errorf("%s: private key out of range", c.name)
	}
	x, y, ok := c.affine(c.scalarBaseMult(d, true))
	if !ok {
		return nil, fmt.Errorf("%s: private key out of range", c.name)
	}
	return &PrivateKey{curve: c, d: append([]byte(nil), d...), pub: &PublicKey{curve: c, x: x, y: y}}, nil
}

// GenerateKey makes a new private key from rand.
func (c *Curve) GenerateKey(rand io.Reader) (*PrivateKey, error) {
	d, err := c.randomScalar(rand)
	if err != nil {
		return nil, err
	}
	return c.NewPrivateKey(d.Bytes(c.n))
}

// randomScalar draws 1 ≤ k < n by rejection.
func (c *Curve) randomScalar(rand io.Reader) (*bigmod.Nat, error) {
	buf := make([]byte, c.size)
	for range 100 {
		if _, err := io.ReadFull(rand, buf); err != nil {
			return nil, fmt.Errorf("%s: random scalar: %w", c.name, err)
		}
		k, err := bigmod.NewNat().SetBytes(buf, c.n)
		if err == nil && k.IsZero() == 0 {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%s: random scalar: the source keeps giving out-of-range values", c.name)
}

// Curve is the key's curve.
func (k *PrivateKey) Curve() *Curve { return k.curve }

// Bytes is the scalar d, big-endian, Size bytes.
func (k *PrivateKey) Bytes() []byte { return append([]byte(nil), k.d...) }

// PublicKey is d·G.
func (k *PrivateKey) PublicKey() *PublicKey { return k.pub }

// Public is d·G, for crypto.Signer.
func (k *PrivateKey) Public() crypto.PublicKey { return k.pub }

// Equal tells whether x is the same private key.
func (k *PrivateKey) Equal(x crypto.PrivateKey) bool {
	o, ok := x.(*PrivateKey)
	return ok && o.curve == k.curve && subtle.ConstantTimeCompare(o.d, k.d) == 1
}

// ECDH returns the x coordinate of d·Q (RFC 5903 and SEC 1's shared
// secret), Size bytes.
func (k *PrivateKey) ECDH(peer *PublicKey) ([]byte, error) {
	if peer.curve != k.curve {
		return nil, fmt.Errorf("ECDH: peer key on %s, ours on %s", peer.curve.name, k.curve.name)
	}
	x, _, ok := k.curve.affine(k.curve.scalarMult(peer.point(), k.d, true))
	if !ok {
		return nil, errors.New("ECDH: shared point at infinity")
	}
	return x, nil
}

// hashToScalar is e of ECDSA: the digest's leftmost bits, as many as n has,
// reduced mod n. Both curves' n are whole bytes long.
func (c *Curve) hashToScalar(digest []byte) *bigmod.Nat {
	if len(digest) > c.size {
		digest = digest[:c.size]
	}
	e, err := bigmod.NewNat().SetOverflowingBytes(digest, c.n)
	if err != nil {
		panic(err) // cannot happen: at most Size bytes
	}
	return e
}

// SignRaw signs a digest with ECDSA and returns r ‖ s, each Size bytes
// (IEEE P1363, the form OPC UA sends), with a random k from rand.
func (k *PrivateKey) SignRaw(rand io.Reader, digest []byte) ([]byte, error) {
	c := k.curve
	d, err := bigmod.NewNat().SetBytes(k.d, c.n)
	if err != nil {
		return nil, err
	}
	e := c.hashToScalar(digest)
	for range 100 {
		nonce, err := c.randomScalar(rand)
		if err != nil {
			return nil, err
		}
		x, _, ok := c.affine(c.scalarBaseMult(nonce.Bytes(c.n), true))
		if !ok {
			continue
		}
		r, err := bigmod.NewNat().SetOverflowingBytes(x, c.n)
		if err != nil || r.IsZero() == 1 {
			continue
		}
		kInv := bigmod.NewNat().Exp(nonce, c.nMinus2, c.n)
		s := bigmod.NewNat().ExpandFor(c.n)
		copy(s.Bits(), r.Bits())
		s.Mul(d, c.n).Add(e, c.n).Mul(kInv, c.n) // (e + r·d) / k
		if s.IsZero() == 1 {
			continue
		}
		return append(r.Bytes(c.n), s.Bytes(c.n)...), nil
	}
	return nil, errors.New("ECDSA: no valid signature after 100 nonces")
}

// Sign signs a digest and returns the signature ASN.1 DER encoded, as
// crypto.Signer and X.509 want it; opts is not used (the caller hashed).
func (k *PrivateKey) Sign(rand io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	raw, err := k.SignRaw(rand, digest)
	if err != nil {
		return nil, err
	}
	n := k.curve.size
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:n]), new(big.Int).SetBytes(raw[n:])})
}

// VerifyRaw checks an r ‖ s signature of a digest.
func VerifyRaw(pub *PublicKey, digest, sig []byte) bool {
	n := pub.curve.size
	if len(sig) != 2*n {
		return false
	}
	return verify(pub, digest, sig[:n], sig[n:])
}

// VerifyASN1 checks an ASN.1 DER signature of a digest.
func VerifyASN1(pub *PublicKey, digest, sig []byte) bool {
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 {
		return false
	}
	n := pub.curve.size
	if rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.BitLen() > 8*n || rs.S.BitLen() > 8*n {
		return false
	}
	return verify(pub, digest, rs.R.FillBytes(make([]byte, n)), rs.S.FillBytes(make([]byte, n)))
}

// verify is ECDSA verification, on public values only.
func verify(pub *PublicKey, digest, rb, sb []byte) bool {
	c := pub.curve
	r, err := bigmod.NewNat().SetBytes(rb, c.n)
	if err != nil || r.IsZero() == 1 {
		return false
	}
	s, err := bigmod.NewNat().SetBytes(sb, c.n)
	if err != nil || s.IsZero() == 1 {
		return false
	}
	sInv := bigmod.NewNat().Exp(s, c.nMinus2, c.n)
	u1 := c.hashToScalar(digest).Mul(sInv, c.n)
	u2 := bigmod.NewNat().ExpandFor(c.n)
	copy(u2.Bits(), r.Bits())
	u2.Mul(sInv, c.n)
	sum := c.addPoints(c.scalarBaseMult(u1.Bytes(c.n), false), c.scalarMult(pub.point(), u2.Bytes(c.n), false))
	x, _, ok := c.affine(sum)
	if !ok {
		return false
	}
	v, err := bigmod.NewNat().SetOverflowingBytes(x, c.n)
	return err == nil && v.Equal(r) == 1
}
