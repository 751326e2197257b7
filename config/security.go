package config

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/config/yamlfile"
)

// AutoAccept is security.auto_accept: "false", "true" (trust on first use)
// or "force" (also accept a changed certificate).
type AutoAccept string

// UnmarshalYAML takes false, true or force.
func (a *AutoAccept) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		switch n.Value {
		case "false", "true", "force":
			*a = AutoAccept(n.Value)
			return nil
		}
	}
	return yamlfile.ScalarError(n, "%q is not a valid auto_accept (false, true or force)", n.Value)
}

// Mode returns a as the certs package's AutoAccept.
func (a AutoAccept) Mode() certs.AutoAccept {
	switch a {
	case "true":
		return certs.AutoAcceptOn
	case "force":
		return certs.AutoAcceptForce
	}
	return certs.AutoAcceptOff
}

var (
	trustModes         = []string{string(certs.TrustFingerprint), string(certs.TrustFingerprintAndExpiry), string(certs.TrustFull)}
	deprecatedPolicies = []string{"Basic128Rsa15", "Basic256"}
)

// VerifyOptions returns the trust settings of s for certs.Store.Verify;
// peer names the server for trust on first use (the PLC's name).
func (s Security) VerifyOptions(peer string) certs.VerifyOptions {
	return certs.VerifyOptions{
		Trust:                  certs.Trust(s.Trust),
		TrustedFingerprints:    s.TrustedFingerprints,
		AutoAccept:             s.AutoAccept.Mode(),
		Peer:                   peer,
		AllowUnknownRevocation: s.AllowUnknownRevocation,
		AllowSHA1:              s.AllowSHA1,
	}
}

// Deprecated reports whether s uses a deprecated policy (allowed only with
// allow_deprecated; the agent warns at start).
func (s Security) Deprecated() bool { return slices.Contains(deprecatedPolicies, s.Policy) }

func (v *validator) security(path string, s Security) {
	okPolicy := v.oneOf(path+".policy", s.Policy, "security policy", policies)
	okMode := s.Mode == "" && s.Policy == "auto" || v.oneOf(path+".mode", s.Mode, "security mode", modes)
	v.oneOf(path+".trust", s.Trust, "trust mode", trustModes)
	for i, f := range s.TrustedFingerprints {
		if _, ok := certs.NormalizeFingerprint(f); !ok {
			v.add(fmt.Sprintf("%s.trusted_fingerprints[%d]", path, i), "%q is not a SHA-256 fingerprint (64 hex digits, colons optional)", f)
		}
	}
	if !okPolicy || !okMode {
		return
	}
	switch {
	case s.Policy == "None" && s.Mode != "None":
		v.add(path+".mode", "policy None needs mode None, not %q", s.Mode)
		return
	case s.Policy == "auto" && s.Mode == "None" && !s.AllowNone:
		v.add(path+".mode", "policy auto with mode None needs allow_none: true")
		return
	case s.Policy != "None" && s.Policy != "auto" && s.Mode == "None":
		v.add(path+".mode", "policy %q needs mode Sign or SignAndEncrypt, not None", s.Policy)
		return
	case s.Deprecated() && !s.AllowDeprecated:
		v.add(path+".policy", "security policy %q is deprecated (its cryptography is broken); set allow_deprecated: true to use it anyway", s.Policy)
		return
	}
	if s.Policy == "None" {
		// Unused, but a path written in the file must still stay in the allowed directories.
		for _, f := range []struct{ key, name string }{{"certificate_file", s.CertificateFile}, {"key_file", s.KeyFile}} {
			if _, err := (certs.Guard{Dirs: v.c.Agent.AllowedCertDirs}).Check(f.name); errors.Is(err, certs.ErrNotAllowed) && v.c.isSet(path+"."+f.key) {
				v.add(path+"."+f.key, "%s", err)
			}
		}
		return
	}
	v.keyPair(path, s.CertificateFile, s.KeyFile, true, policyNeeds(s.Policy))
}

// keyNeed is the key a certificate must hold: who needs it, and the RSA
// sizes or the ECC curve accepted.
type keyNeed struct {
	who              string
	minBits, maxBits int
	ecc              string // an ECC policy's key, as keyKind names it: "P-256", "Ed448"
	policy           string // the ECC policy, for the message
	anyECC           bool   // policy auto: a key of an ECC policy too
}

func (k keyNeed) String() string {
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

// check says why pub does not fit; "" when it does. An ECC policy's
// message names both curves, as the connection's does: "P-256 key, policy
// ECC_nistP384 needs a P-384 key".
func (k keyNeed) check(certFile string, pub any) string {
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

// policyNeeds is the agent certificate's key that policy accepts: the
// policy's own range, never under certs.MinRSABits, or its curve. The
// deprecated policies allow 1024 to 2048 bits; 1024 is refused as too
// weak.
func policyNeeds(policy string) keyNeed {
	if key, ok := eccKeys[policy]; ok {
		return keyNeed{who: "security policy " + policy, ecc: key, policy: policy}
	}
	switch policy {
	case "auto":
		return keyNeed{who: "policy auto (it picks among the policies the key fits)", minBits: certs.MinRSABits, maxBits: 4096, anyECC: true}
	case "Basic128Rsa15", "Basic256":
		return keyNeed{who: fmt.Sprintf("security policy %s", policy), minBits: certs.MinRSABits, maxBits: 2048}
	}
	return keyNeed{who: fmt.Sprintf("security policy %s", policy), minBits: certs.MinRSABits, maxBits: 4096}
}

// userCertNeeds is the key an X.509 user identity needs under the channel's
// policy: servers sign and check the user token with the endpoint's policy,
// so under an ECC policy the user key is on its curve, otherwise RSA.
func userCertNeeds(policy string) keyNeed {
	if key, ok := eccKeys[policy]; ok {
		return keyNeed{who: "an X.509 user identity under " + policy, ecc: key, policy: policy}
	}
	return keyNeed{who: "an X.509 user identity", minBits: certs.MinRSABits, maxBits: 4096, anyECC: policy == "auto"}
}

// keyPair checks a certificate and key file pair at path (security or
// auth): allowed directory, permissions, that they load and match, that the
// certificate is valid now, and that its key is what need asks for.
func (v *validator) keyPair(path, certFile, keyFile string, needURI bool, need keyNeed) {
	certOK := v.certFile(path+".certificate_file", certFile, false)
	keyOK := v.certFile(path+".key_file", keyFile, true)
	if !certOK || !keyOK {
		return
	}
	cert, _, _, err := certs.Guard{Dirs: v.c.Agent.AllowedCertDirs}.LoadAnyKeyPair(certFile, keyFile)
	switch {
	case errors.Is(err, certs.ErrKeyMismatch), errors.Is(err, certs.ErrBadKey), errors.Is(err, certs.ErrKeyPermissions):
		v.add(path+".key_file", "%s", err)
		return
	case err != nil:
		v.add(path+".certificate_file", "%s", err)
		return
	}
	if err := certs.CheckValidity(certFile, cert, time.Now()); err != nil {
		v.add(path+".certificate_file", "%s", err)
	}
	if msg := need.check(certFile, cert.PublicKey); msg != "" {
		v.add(path+".certificate_file", "%s", msg)
	}
	if needURI {
		if _, err := certs.ApplicationURI(cert); err != nil {
			v.add(path+".certificate_file", "%s", err)
		}
	}
}

// certFile checks one certificate, key, CA or CRL file: it must lie in
// agent.allowed_cert_dirs, symlinks resolved, and be readable; a key file
// must not be readable by group or others. It reports whether the file passed.
func (v *validator) certFile(path, name string, key bool) bool {
	if name == "" {
		v.add(path, "required")
		return false
	}
	resolved, err := certs.Guard{Dirs: v.c.Agent.AllowedCertDirs}.Check(name)
	switch {
	case errors.Is(err, certs.ErrNotAllowed):
		v.add(path, "%s", err)
		return false
	case errors.Is(err, fs.ErrNotExist):
		hint := ""
		if strings.HasPrefix(path, "plcs[") && strings.Contains(path, ".security.") {
			hint = " (tagbridge certs create writes one)"
		}
		v.add(path, "cannot read file %q: no such file or directory%s", name, hint)
		return false
	case err != nil:
		v.add(path, "cannot read file %q: %s", name, reason(err))
		return false
	}
	if err := readable(resolved); err != nil {
		v.add(path, "cannot read file %q: %s", name, reason(err))
		return false
	}
	if key {
		if err := certs.CheckKeyFile(resolved); err != nil {
			v.add(path, "%s", err)
			return false
		}
	}
	return true
}

// auth checks the user identity of a PLC whose security policy is policy.
func (v *validator) auth(path string, a *Auth, policy string) {
	switch {
	case a.PasswordEnv != "" && a.PasswordFile != "":
		v.add(path+".password_file", "password_env and password_file are mutually exclusive")
	case a.PasswordEnv != "":
		a.Password = v.fromEnv(path+".password_env", a.PasswordEnv)
	case a.PasswordFile != "":
		a.Password = v.fromFile(path+".password_file", a.PasswordFile)
	}
	if a.AllowPlaintextPassword {
		switch {
		case a.Username == "":
			v.add(path+".allow_plaintext_password", "applies to a username and password only")
		case policy != "None":
			v.add(path+".allow_plaintext_password", "only allowed with security policy None, not %q: on a secured channel the password is always encrypted", policy)
		}
	}
	if a.CertificateFile == "" && a.KeyFile == "" {
		return
	}
	if a.Username != "" {
		v.add(path+".certificate_file", "username and certificate_file are mutually exclusive (one user identity)")
		return
	}
	v.keyPair(path, a.CertificateFile, a.KeyFile, false, userCertNeeds(policy))
}
