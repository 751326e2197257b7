package opcua

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/config"
)

// ShareKey is equal for PLC entries that may share one OPC UA session: the
// same endpoint and the same security-relevant settings, with file paths
// compared after resolving symlinks, so two spellings of one file match.
func ShareKey(p config.PLC) string {
	sec, auth := p.Security, p.Auth
	fps := make([]string, 0, len(sec.TrustedFingerprints))
	for _, f := range sec.TrustedFingerprints {
		if n, ok := certs.NormalizeFingerprint(f); ok {
			f = n
		}
		fps = append(fps, f)
	}
	slices.Sort(fps)
	fields := []string{
		normalEndpoint(p.Endpoint),
		sec.Policy, sec.Mode,
		canonicalPath(sec.CertificateFile), canonicalPath(sec.KeyFile), canonicalPath(sec.PKIDir),
		sec.Trust, strings.Join(fps, ","), fmt.Sprint(sec.AutoAccept), strings.Join(sec.AcceptedHostnames, ","), reverseKey(p.Reverse),
		fmt.Sprint(sec.VerifyHostname, sec.AllowUnknownRevocation, sec.AllowSHA1, sec.AllowDeprecated, sec.AllowNone),
		auth.Username, auth.PasswordEnv, canonicalPath(auth.PasswordFile),
		canonicalPath(auth.CertificateFile), canonicalPath(auth.KeyFile),
	}
	return strings.Join(fields, "\x00")
}

// reverseKey tells reverse connections apart: the listener and the PLC.
func reverseKey(r *config.Reverse) string {
	if r == nil {
		return ""
	}
	return r.Listen + " " + r.ServerURI
}

// normalEndpoint lower-cases the scheme and host and makes the default port
// explicit, so opc.tcp://PLC1 and opc.tcp://plc1:4840 match.
func normalEndpoint(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return endpoint
	}
	port := u.Port()
	if port == "" {
		port = "4840"
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Hostname()) + ":" + port + u.Path
}

func canonicalPath(p string) string {
	if p == "" {
		return ""
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real
	}
	return abs
}
