package secpolicy

import (
	"crypto/hmac"
	"hash"
)

// pHash is P_hash of RFC 5246 section 5 (P_SHA1, P_SHA256), the key
// derivation of the RSA policies (Part 6 6.7.5):
//
//	A(0) = seed, A(i) = HMAC(secret, A(i-1))
//	P_hash = HMAC(secret, A(1) + seed) + HMAC(secret, A(2) + seed) + ...
//
// truncated to n bytes.
func pHash(h func() hash.Hash, secret, seed []byte, n int) []byte {
	mac := hmac.New(h, secret)
	out := make([]byte, 0, n+mac.Size())
	a := seed
	for len(out) < n {
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(nil)
		mac.Reset()
		mac.Write(a)
		mac.Write(seed)
		out = mac.Sum(out)
	}
	return out[:n]
}
