package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/config/filecheck"
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
	v.keyPair(path, s.CertificateFile, s.KeyFile, true, filecheck.PolicyNeeds(s.Policy))
}

// keyPair checks a certificate and key file pair at path (security or
// auth): allowed directory, permissions, that they load and match, that the
// certificate is valid now, and that its key is what need asks for.
func (v *validator) keyPair(path, certFile, keyFile string, needURI bool, need filecheck.KeyNeed) {
	certOK := v.certFile(path+".certificate_file", certFile, false)
	keyOK := v.certFile(path+".key_file", keyFile, true)
	if !certOK || !keyOK {
		return
	}
	for _, p := range filecheck.KeyPair(certs.Guard{Dirs: v.c.Agent.AllowedCertDirs}, certFile, keyFile, needURI, need) {
		v.add(path+"."+p.Key, "%s", p.Msg)
	}
}

// certFile checks one certificate, key, CA or CRL file (filecheck.File)
// and reports whether it passed.
func (v *validator) certFile(path, name string, key bool) bool {
	if name == "" {
		v.add(path, "required")
		return false
	}
	hint := ""
	if strings.HasPrefix(path, "plcs[") && strings.Contains(path, ".security.") {
		hint = " (tagbridge certs create writes one)"
	}
	if msg := filecheck.File(certs.Guard{Dirs: v.c.Agent.AllowedCertDirs}, name, key, hint); msg != "" {
		v.add(path, "%s", msg)
		return false
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
	v.keyPair(path, a.CertificateFile, a.KeyFile, false, filecheck.UserCertNeeds(policy))
}
