package secpolicy

import (
	"fmt"
	"strings"
)

var policies = []Policy{None, Basic128Rsa15, Basic256, Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss, EccNistP256, EccNistP384, EccBrainpoolP256r1, EccBrainpoolP384r1, EccCurve25519, EccCurve448, EccNistP256AesGcm, EccNistP256ChaChaPoly}

// ByURI returns the policy of a SecurityPolicyUri.
func ByURI(uri string) (Policy, error) {
	for _, p := range policies {
		if p.URI() == uri {
			return p, nil
		}
	}
	return nil, fmt.Errorf("unknown security policy %q", uri)
}

// ByName returns the policy of a name as the configuration spells it, the
// part of the URI after '#', e.g. "Basic256Sha256".
func ByName(name string) (Policy, error) {
	for _, p := range policies {
		if p.Name() == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("unknown security policy %q (known: %s)", name, strings.Join(names(), ", "))
}

func names() []string {
	n := make([]string, len(policies))
	for i, p := range policies {
		n[i] = p.Name()
	}
	return n
}
