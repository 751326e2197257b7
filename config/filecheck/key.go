package filecheck

import (
	"crypto/rsa"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tagbridge/tagbridge/certs"
)

// KeyNeed is the key a certificate must hold: who needs it, and the RSA
// sizes or the ECC curve accepted.
type KeyNeed struct {
	who              string
	minBits, maxBits int
	ecc              string // an ECC policy's key, as keyKind names it: "P-256", "Ed448"
	policy           string // the ECC policy, for the message
	anyECC           bool   // policy auto: a key of an ECC policy too
}

func (k KeyNeed) String() string {
	if k.minBits == k.maxBits {
		return fmt.Sprintf("%s needs an RSA %d-bit key", k.who, k.minBits)
	}
	return fmt.Sprintf("%s needs an RSA key of %d to %d bits", k.who, k.minBits, k.maxBits)
}

// keyKind names a key as the ECC policies' messages do: "P-256", "RSA
// 2048-bit", "Ed25519".
func keyKind(pub any) string { return strings.TrimPrefix(certs.DescribeKey(pub), "ECDSA ") }

// eccKeys are the keys of the ECC policies, by policy name, as keyKind
// names them.
var eccKeys = map[string]string{
	"ECC_nistP256": "P-256", "ECC_nistP384": "P-384",
	"ECC_nistP256_AesGcm": "P-256", "ECC_nistP256_ChaChaPoly": "P-256",
	"ECC_brainpoolP256r1": "brainpoolP256r1", "ECC_brainpoolP384r1": "brainpoolP384r1",
	"ECC_curve25519": "Ed25519", "ECC_curve448": "Ed448",
}

// Check says why pub does not fit; "" when it does. An ECC policy's
// message names both curves, as the connection's does: "P-256 key, policy
// ECC_nistP384 needs a P-384 key".
func (k KeyNeed) Check(certFile string, pub any) string {
	kind := keyKind(pub)
	switch {
	case k.ecc != "" && kind != k.ecc:
		article := "a"
		if strings.HasPrefix(k.ecc, "Ed") {
			article = "an"
		}
		return fmt.Sprintf("%s key, policy %s needs %s %s key", kind, k.policy, article, k.ecc)
	case k.ecc != "":
		return ""
	case k.anyECC && slices.Contains(slices.Collect(maps.Values(eccKeys)), kind):
		return ""
	}
	if rk, ok := pub.(*rsa.PublicKey); ok && rk.N.BitLen() >= k.minBits && rk.N.BitLen() <= k.maxBits {
		return ""
	}
	msg := fmt.Sprintf("certificate %s holds an %s key; %s", certFile, certs.DescribeKey(pub), k)
	if k.anyECC {
		msg += ", or a P-256, P-384, brainpoolP256r1, brainpoolP384r1, Ed25519 or Ed448 key for the ECC policies"
	}
	return msg
}

// PolicyNeeds is the agent certificate's key that policy accepts: the
// policy's own range, never under certs.MinRSABits, or its curve. The
// deprecated policies allow 1024 to 2048 bits; 1024 is refused as too
// weak.
func PolicyNeeds(policy string) KeyNeed {
	if key, ok := eccKeys[policy]; ok {
		return KeyNeed{who: "security policy " + policy, ecc: key, policy: policy}
	}
	switch policy {
	case "auto":
		return KeyNeed{who: "policy auto (it picks among the policies the key fits)", minBits: certs.MinRSABits, maxBits: 4096, anyECC: true}
	case "Basic128Rsa15", "Basic256":
		return KeyNeed{who: fmt.Sprintf("security policy %s", policy), minBits: certs.MinRSABits, maxBits: 2048}
	}
	return KeyNeed{who: fmt.Sprintf("security policy %s", policy), minBits: certs.MinRSABits, maxBits: 4096}
}

// UserCertNeeds is the key an X.509 user identity needs under the channel's
// policy: servers sign and check the user token with the endpoint's policy,
// so under an ECC policy the user key is on its curve, otherwise RSA.
func UserCertNeeds(policy string) KeyNeed {
	if key, ok := eccKeys[policy]; ok {
		return KeyNeed{who: "an X.509 user identity under " + policy, ecc: key, policy: policy}
	}
	return KeyNeed{who: "an X.509 user identity", minBits: certs.MinRSABits, maxBits: 4096, anyECC: policy == "auto"}
}
