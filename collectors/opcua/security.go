package opcua

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/certs"
)

// policyURIs maps the configured policy names to their URIs.
var policyURIs = map[string]string{
	"None":                  ua.SecurityPolicyURINone,
	"Basic128Rsa15":         ua.SecurityPolicyURIBasic128Rsa15,
	"Basic256":              ua.SecurityPolicyURIBasic256,
	"Basic256Sha256":        ua.SecurityPolicyURIBasic256Sha256,
	"Aes128_Sha256_RsaOaep": ua.SecurityPolicyURIAes128Sha256RsaOaep,
	"Aes256_Sha256_RsaPss":  ua.SecurityPolicyURIAes256Sha256RsaPss,
}

var modes = map[string]ua.MessageSecurityMode{
	"None":           ua.MessageSecurityModeNone,
	"Sign":           ua.MessageSecurityModeSign,
	"SignAndEncrypt": ua.MessageSecurityModeSignAndEncrypt,
}

// deprecatedURIs are the policies whose cryptography is broken; auto never
// picks them unless allowed.
var deprecatedURIs = []string{ua.SecurityPolicyURIBasic128Rsa15, ua.SecurityPolicyURIBasic256}

// ErrNoEndpoint reports that the server offers no endpoint for the
// configured policy and mode.
var ErrNoEndpoint = errors.New("no matching endpoint")

// securityOptions decides the secure channel, the server's trust and the
// user identity for one connection attempt. With policy None it asks the
// server nothing; otherwise it calls GetEndpoints, picks the endpoint and
// checks the server certificate before any session exists.
func (s *Session) securityOptions(ctx context.Context) ([]opcua.Option, error) {
	sec, auth := s.plc.Security, s.plc.Auth
	if sec.Policy == "None" && auth.Username == "" && auth.CertificateFile == "" {
		s.status.SetSecurity("None", "None", "")
		return []opcua.Option{
			opcua.SecurityPolicy(ua.SecurityPolicyURINone),
			opcua.SecurityMode(ua.MessageSecurityModeNone),
			opcua.AuthAnonymous(),
		}, nil
	}
	eps, err := getEndpoints(ctx, s.plc.Endpoint, &s.chanWatch.restored)
	if err != nil {
		return nil, fmt.Errorf("get endpoints: %w", err)
	}
	ep, err := selectEndpoint(eps, sec.Policy, sec.Mode, sec.AllowNone, sec.AllowDeprecated)
	if err != nil {
		return nil, err
	}
	opts := []opcua.Option{
		opcua.SecurityPolicy(ep.SecurityPolicyURI),
		opcua.SecurityMode(ep.SecurityMode),
	}
	policy := strings.TrimPrefix(ep.SecurityPolicyURI, "http://opcfoundation.org/UA/SecurityPolicy#")
	mode := strings.TrimPrefix(ep.SecurityMode.String(), "MessageSecurityMode")
	if ep.SecurityMode == ua.MessageSecurityModeNone {
		s.status.SetSecurity(policy, mode, "")
		return s.identityOptionsFor(ep, opts)
	}
	fingerprint, err := s.trustServer(ep)
	if err != nil {
		return nil, err
	}
	s.status.SetSecurity(policy, mode, fingerprint)
	cert, der, key, err := certs.LoadKeyPair(sec.CertificateFile, sec.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	appURI, err := certs.ApplicationURI(cert)
	if err != nil {
		return nil, fmt.Errorf("client certificate %s: %w", sec.CertificateFile, err)
	}
	if err := s.checkCreateSession(ctx, ep, der, key, appURI); err != nil {
		return nil, err
	}
	opts = append(opts,
		opcua.Certificate(der),
		opcua.PrivateKey(key),
		// Some PLCs refuse a session whose ApplicationURI differs from the
		// certificate's URI SAN.
		opcua.ApplicationURI(appURI),
	)
	return s.identityOptionsFor(ep, opts)
}

// trustServer checks the endpoint's certificate against the trust store, the
// configured host name and the server's ApplicationURI.
func (s *Session) trustServer(ep *ua.EndpointDescription) (fingerprint string, err error) {
	sec := s.plc.Security
	store, err := certs.OpenStore(sec.PKIDir)
	if err != nil {
		return "", fmt.Errorf("trust store: %w", err)
	}
	res, err := store.Verify(ep.ServerCertificate, sec.VerifyOptions(s.plc.Name))
	if err != nil {
		return "", fmt.Errorf("server certificate: %w", err)
	}
	// Stored at once until the session layer is ours (issue 11), which
	// commits it only after the channel and the session succeeded.
	if err := store.Commit(res); err != nil {
		return "", err
	}
	if n := res.Notice(); n != "" {
		ev := s.log.Info()
		if len(res.Replaced) > 0 {
			ev = s.log.Warn()
		}
		ev.Str("fingerprint", res.Fingerprint).Str("subject", res.Subject).Msg(n)
	}
	host := endpointHost(s.plc.Endpoint)
	if err := certs.VerifyHostname(res.Certificate, host); err != nil {
		if sec.VerifyHostname {
			return "", fmt.Errorf("server certificate: %w", err)
		}
		if !s.hostnameWarned {
			s.hostnameWarned = true
			s.log.Warn().Err(err).Msg("server certificate does not name the configured host; accepted because verify_hostname is false")
		}
	}
	if ep.Server != nil {
		if err := certs.VerifyApplicationURI(res.Certificate, ep.Server.ApplicationURI); err != nil {
			return "", fmt.Errorf("server certificate: %w", err)
		}
	}
	return res.Fingerprint, nil
}

// identityOptionsFor adds the user identity token for the chosen endpoint;
// the password is encrypted as the endpoint's user token policy says.
func (s *Session) identityOptionsFor(ep *ua.EndpointDescription, opts []opcua.Option) ([]opcua.Option, error) {
	auth := s.plc.Auth
	switch {
	case auth.CertificateFile != "":
		_, der, key, err := certs.LoadKeyPair(auth.CertificateFile, auth.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("user certificate: %w", err)
		}
		if !offersToken(ep, ua.UserTokenTypeCertificate) {
			return nil, fmt.Errorf("server endpoint %s does not accept X.509 user certificates", describeEndpoint(ep))
		}
		return append(opts, opcua.AuthCertificate(der), opcua.AuthPrivateKey(key),
			opcua.SecurityFromEndpoint(ep, ua.UserTokenTypeCertificate)), nil
	case auth.Username != "":
		if !offersToken(ep, ua.UserTokenTypeUserName) {
			return nil, fmt.Errorf("server endpoint %s does not accept user names", describeEndpoint(ep))
		}
		return append(opts, opcua.AuthUsername(auth.Username, auth.Password.Reveal()),
			opcua.SecurityFromEndpoint(ep, ua.UserTokenTypeUserName)), nil
	default:
		return append(opts, opcua.AuthAnonymous(), opcua.SecurityFromEndpoint(ep, ua.UserTokenTypeAnonymous)), nil
	}
}

func offersToken(ep *ua.EndpointDescription, kind ua.UserTokenType) bool {
	return slices.ContainsFunc(ep.UserIdentityTokens, func(p *ua.UserTokenPolicy) bool { return p != nil && p.TokenType == kind })
}

// selectEndpoint picks the endpoint for policy and mode: an exact match, or
// with policy auto the highest security level (never None unless allowed,
// never a deprecated policy unless allowed). The error lists what the server
// offers.
func selectEndpoint(eps []*ua.EndpointDescription, policy, mode string, allowNone, allowDeprecated bool) (*ua.EndpointDescription, error) {
	var best *ua.EndpointDescription
	for _, ep := range eps {
		if ep == nil {
			continue
		}
		if policy != "auto" {
			if ep.SecurityPolicyURI == policyURIs[policy] && ep.SecurityMode == modes[mode] {
				return ep, nil
			}
			continue
		}
		switch {
		case mode != "" && ep.SecurityMode != modes[mode]:
		case ep.SecurityMode == ua.MessageSecurityModeNone && !allowNone:
		case slices.Contains(deprecatedURIs, ep.SecurityPolicyURI) && !allowDeprecated:
		case ep.SecurityMode == ua.MessageSecurityModeInvalid:
		case best == nil || ep.SecurityLevel > best.SecurityLevel:
			best = ep
		}
	}
	if best != nil {
		return best, nil
	}
	offered := make([]string, 0, len(eps))
	for _, ep := range eps {
		if ep != nil {
			offered = append(offered, describeEndpoint(ep))
		}
	}
	want := policy + "/" + mode
	if mode == "" {
		want = policy
	}
	return nil, fmt.Errorf("%w for %s; the server offers %s", ErrNoEndpoint, want, strings.Join(offered, ", "))
}

func describeEndpoint(ep *ua.EndpointDescription) string {
	name := ep.SecurityPolicyURI
	if i := strings.LastIndex(name, "#"); i >= 0 {
		name = name[i+1:]
	}
	return name + "/" + strings.TrimPrefix(ep.SecurityMode.String(), "MessageSecurityMode")
}

// endpointHost is the host of an opc.tcp URL, without brackets or port.
func endpointHost(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return ""
	}
	return u.Hostname()
}
