package opcua

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/collectors/opcua/secpolicy"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
	"github.com/tagbridge/tagbridge/collectors/opcua/uasc"
	"github.com/tagbridge/tagbridge/collectors/opcua/uatcp"
)

// requestTimeout bounds one request whose context has no earlier deadline.
const requestTimeout = 10 * time.Second

// modes maps the configured mode names to their values.
var modes = map[string]ua.MessageSecurityMode{
	"None":           ua.MessageSecurityModeNone,
	"Sign":           ua.MessageSecurityModeSign,
	"SignAndEncrypt": ua.MessageSecurityModeSignAndEncrypt,
}

// ErrNoEndpoint reports that the server offers no endpoint for the
// configured policy and mode that the agent can use.
var ErrNoEndpoint = errors.New("no matching endpoint")

// plan is how the connection attempts of one session reach the PLC: the
// session's settings, and the server certificate to pin once a session
// succeeded with it (trust on first use).
type plan struct {
	cfg     uaclient.Config
	store   *certs.Store
	trusted certs.Result
	agent   *agentCert // nil without an agent certificate
}

// agentCert is the agent's certificate as the PLC sees it, for the hint
// when the PLC refuses it.
type agentCert struct {
	file, fingerprint string
}

// prepare asks the server for its endpoints, picks one, checks the server's
// certificate and loads the agent's and the user's credentials.
func (s *Session) prepare(ctx context.Context) (*plan, error) {
	sec := s.plc.Security
	p := &plan{cfg: uaclient.Config{
		ApplicationURI:  "urn:tagbridge:" + s.plc.Name,
		ApplicationName: "tagbridge",
		ProductURI:      "urn:tagbridge",
		SessionName:     "tagbridge " + s.plc.Name,
	}}
	var agentKey crypto.PublicKey
	if sec.CertificateFile != "" && sec.Policy != "None" {
		cert, der, key, err := s.plc.CertGuard.LoadAnyKeyPair(sec.CertificateFile, sec.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("agent certificate: %w", err)
		}
		appURI, err := certs.ApplicationURI(cert)
		if err != nil {
			return nil, fmt.Errorf("agent certificate %s: %w", sec.CertificateFile, err)
		}
		// Servers refuse a session whose ApplicationURI differs from the
		// certificate's URI SAN.
		p.cfg.ApplicationURI = appURI
		p.cfg.Channel.Local = &secpolicy.KeyPair{Certificate: der, Key: key}
		p.agent = &agentCert{file: sec.CertificateFile, fingerprint: certs.Fingerprint(der)}
		agentKey = cert.PublicKey
	}
	identity, token, err := s.identity()
	if err != nil {
		return nil, err
	}
	p.cfg.Identity = identity

	eps, err := uaclient.GetEndpointsDial(ctx, s.plc.Endpoint, uatcp.DefaultLimits(), s.dialer(), s.log)
	if errors.Is(err, uaclient.ErrNoEndpoints) && sec.Policy == "None" && token == ua.UserTokenTypeAnonymous {
		// Nothing to choose or to protect: an unsecured anonymous session
		// needs only the anonymous PolicyId, which such a server does not
		// check either.
		s.log.Debug().Err(err).Msg("the server lists no endpoint for the configured URL; connecting with policy None and anonymous login")
		eps, err = []*ua.EndpointDescription{{
			EndpointURL:        s.plc.Endpoint,
			SecurityPolicyURI:  ua.SecurityPolicyURINone,
			SecurityMode:       ua.MessageSecurityModeNone,
			UserIdentityTokens: []*ua.UserTokenPolicy{{TokenType: ua.UserTokenTypeAnonymous}},
		}}, nil
	}
	if err != nil {
		return nil, err
	}
	ep, err := selectEndpoint(eps, endpointNeeds{
		policy: sec.Policy, mode: sec.Mode, allowNone: sec.AllowNone, allowDeprecated: sec.AllowDeprecated,
		key: agentKey, token: token,
	})
	if err != nil {
		return nil, err
	}
	policy, err := secpolicy.ByURI(ep.SecurityPolicyURI)
	if err != nil {
		return nil, err // selectEndpoint took only known policies
	}
	p.cfg.Endpoint, p.cfg.Discovered = ep, eps
	p.cfg.Channel = uasc.Config{
		Endpoint:       s.plc.Endpoint,
		Policy:         policy,
		Mode:           ep.SecurityMode,
		Local:          p.cfg.Channel.Local,
		Lifetime:       s.plc.TokenLifetime.Duration(),
		RequestTimeout: requestTimeout,
		Log:            s.log,
		Dial:           s.dialer(),
	}
	mode := modeName(ep.SecurityMode)
	if ep.SecurityMode == ua.MessageSecurityModeNone {
		p.cfg.Channel.Local = nil
		s.updateLink(func(l *Link) { l.Policy, l.Mode, l.ServerFingerprint = policy.Name(), mode, "" })
		return p, nil
	}
	p.cfg.Channel.RemoteCertificate = ep.ServerCertificate
	if p.store, p.trusted, err = s.trustServer(ep); err != nil {
		return nil, err
	}
	s.updateLink(func(l *Link) { l.Policy, l.Mode, l.ServerFingerprint = policy.Name(), mode, p.trusted.Fingerprint })
	return p, nil
}

// identity is the configured user and the token type it needs.
func (s *Session) identity() (uaclient.Identity, ua.UserTokenType, error) {
	auth := s.plc.Auth
	switch {
	case auth.CertificateFile != "":
		_, der, key, err := s.plc.CertGuard.LoadAnyKeyPair(auth.CertificateFile, auth.KeyFile)
		if err != nil {
			return nil, 0, fmt.Errorf("user certificate: %w", err)
		}
		return uaclient.X509{KeyPair: secpolicy.KeyPair{Certificate: der, Key: key}}, ua.UserTokenTypeCertificate, nil
	case auth.Username != "":
		return uaclient.UserName{User: auth.Username, Password: []byte(auth.Password.Reveal()), AllowPlaintext: auth.AllowPlaintextPassword},
			ua.UserTokenTypeUserName, nil
	}
	return uaclient.Anonymous{}, ua.UserTokenTypeAnonymous, nil
}

// trustServer checks the endpoint's certificate against the trust store, the
// configured host name and the server's ApplicationURI. A certificate
// trusted on first use is stored by commitTrust, after the session
// succeeded.
func (s *Session) trustServer(ep *ua.EndpointDescription) (*certs.Store, certs.Result, error) {
	sec := s.plc.Security
	store, err := certs.OpenStore(sec.PKIDir)
	if err != nil {
		return nil, certs.Result{}, fmt.Errorf("trust store: %w", err)
	}
	res, err := store.Verify(ep.ServerCertificate, sec.VerifyOptions(s.plc.Name))
	if err != nil {
		return nil, certs.Result{}, fmt.Errorf("server certificate: %w", err)
	}
	s.warnSHA1(res)
	if err := verifyHost(res.Certificate, endpointHost(s.plc.Endpoint), sec.AcceptedHostnames); err != nil {
		if sec.VerifyHostname {
			return nil, certs.Result{}, fmt.Errorf("server certificate: %w", err)
		}
		if !s.hostnameWarned {
			s.hostnameWarned = true
			s.log.Warn().Err(err).Msg("server certificate does not name the configured host; accepted because verify_hostname is false")
		}
	}
	if ep.Server != nil {
		if err := certs.VerifyApplicationURI(res.Certificate, ep.Server.ApplicationURI); err != nil {
			return nil, certs.Result{}, fmt.Errorf("server certificate: %w", err)
		}
	}
	return store, res, nil
}

// verifyHost checks that the server certificate names the host the agent
// reaches the PLC by, or one of the names accepted for it: a PLC reached by
// IP whose certificate holds only its host name, or Kepware's only its
// fully qualified name. An endpoint that advertises another host (Rockwell
// advertises localhost:4990, NAT) changes nothing: the agent connects to
// the configured host and checks that one.
func verifyHost(cert *x509.Certificate, host string, accepted []string) error {
	err := certs.VerifyHostname(cert, host)
	if err == nil {
		return nil
	}
	for _, name := range accepted {
		if certs.VerifyHostname(cert, name) == nil {
			return nil
		}
	}
	if len(accepted) > 0 {
		return fmt.Errorf("%w, nor any of accepted_hostnames %q", err, accepted)
	}
	return err
}

// warnSHA1 warns, once, of a server certificate signed with SHA-1: it was
// accepted only because allow_sha1 says so (older Siemens firmware).
func (s *Session) warnSHA1(res certs.Result) {
	switch res.Certificate.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1:
	default:
		return
	}
	if s.sha1Warned {
		return
	}
	s.sha1Warned = true
	why := "allow_sha1 is true"
	if !s.plc.Security.AllowSHA1 {
		why = "trust " + s.plc.Security.Trust + " pins the certificate, not its signature"
	}
	s.log.Warn().Str("subject", res.Subject).Str("fingerprint", res.Fingerprint).
		Msgf("server certificate %q (SHA-256 %s) is signed with SHA-1, accepted because %s; SHA-1 signatures can be forged: renew the PLC's certificate (newer firmware signs with SHA-256)", res.Subject, res.Fingerprint, why)
}

// commitTrust pins a certificate trusted on first use, now that a channel
// and a session succeeded with it.
func (s *Session) commitTrust(p *plan) error {
	if p.store == nil || !p.trusted.Pending() {
		return nil
	}
	if err := p.store.Commit(p.trusted); err != nil {
		return err
	}
	ev := s.log.Info()
	if len(p.trusted.Replaced) > 0 {
		ev = s.log.Warn()
	}
	ev.Str("fingerprint", p.trusted.Fingerprint).Str("subject", p.trusted.Subject).Msg(p.trusted.Notice())
	p.store, p.trusted = nil, certs.Result{} // pinned: later attempts verify against the store
	return nil
}

// certificateRefusals are the statuses with which a server refuses the
// certificate presented to it.
var certificateRefusals = []ua.StatusCode{
	ua.StatusBadSecurityChecksFailed, ua.StatusBadCertificateUntrusted, ua.StatusBadCertificateInvalid,
	ua.StatusBadCertificateTimeInvalid, ua.StatusBadCertificateIssuerTimeInvalid, ua.StatusBadCertificateRevoked,
	ua.StatusBadCertificateIssuerRevoked, ua.StatusBadCertificateRevocationUnknown, ua.StatusBadCertificateIssuerRevocationUnknown,
	ua.StatusBadCertificateUseNotAllowed, ua.StatusBadCertificateIssuerUseNotAllowed, ua.StatusBadCertificateURIInvalid,
	ua.StatusBadNoValidCertificates, ua.StatusBadCertificatePolicyCheckFailed,
}

// explain says what most likely happened when the PLC refused the agent's
// (or the user's) certificate, and what to do: the text goes to the log
// and to status.
func explain(p *plan, userCertFile string, err error) error {
	var code ua.StatusCode
	if !errors.As(err, &code) || !slices.Contains(certificateRefusals, code) {
		return err
	}
	switch {
	case p.agent != nil && p.cfg.Channel.Mode != ua.MessageSecurityModeNone && !strings.HasPrefix(err.Error(), "activate session"):
		file, form := certificateToImport(p.agent.file)
		return fmt.Errorf("the PLC refused the agent's certificate: trust %s (SHA-256 %s%s) on the PLC (most servers keep refused certificates in a rejected folder): %w",
			file, p.agent.fingerprint, form, err)
	case userCertFile != "" && strings.HasPrefix(err.Error(), "activate session"):
		return fmt.Errorf("the PLC refused the user certificate: trust %s on the PLC as a user certificate: %w", userCertFile, err)
	}
	return err
}

// certificateToImport names the agent's certificate as a PLC imports it:
// the DER copy beside a PEM file (tagbridge certs create writes both), as
// PLC tools take DER; form says so.
func certificateToImport(pem string) (file, form string) {
	der := strings.TrimSuffix(pem, ".pem") + ".der"
	if der == pem {
		return pem, ""
	}
	if _, err := os.Stat(der); err != nil {
		return pem, ""
	}
	return der, "; the DER form of " + filepath.Base(pem)
}

// endpointNeeds is what an endpoint must offer for the agent to use it.
type endpointNeeds struct {
	policy, mode               string // as configured; policy may be auto, mode empty
	allowNone, allowDeprecated bool
	key                        crypto.PublicKey // the agent certificate's; nil without one
	token                      ua.UserTokenType
}

// selectEndpoint picks the endpoint for the configured policy and mode: an
// exact match, or with policy auto the highest security level among those
// the agent can use with its certificate and user (never None unless
// allowed, never a deprecated policy unless allowed). The error lists what
// the server offers.
func selectEndpoint(eps []*ua.EndpointDescription, need endpointNeeds) (*ua.EndpointDescription, error) {
	var best *ua.EndpointDescription
	var unusable []string
	for _, ep := range eps {
		if ep == nil {
			continue
		}
		policy, perr := secpolicy.ByURI(ep.SecurityPolicyURI)
		if need.policy != "auto" {
			if perr == nil && policy.Name() == need.policy && ep.SecurityMode == modes[need.mode] {
				if err := usable(ep, policy, need); err != nil {
					return nil, fmt.Errorf("endpoint %s: %w", describeEndpoint(ep), err)
				}
				return ep, nil
			}
			continue
		}
		switch {
		case perr != nil:
		case need.mode != "" && ep.SecurityMode != modes[need.mode]:
		case ep.SecurityMode == ua.MessageSecurityModeNone && !need.allowNone:
		case policy.Deprecated() && !need.allowDeprecated:
		case ep.SecurityMode == ua.MessageSecurityModeInvalid:
		case usable(ep, policy, need) != nil:
			unusable = append(unusable, describeEndpoint(ep)+" ("+usable(ep, policy, need).Error()+")")
		case best == nil || ep.SecurityLevel > best.SecurityLevel,
			// Servers such as open62541 give Sign and SignAndEncrypt one level.
			ep.SecurityLevel == best.SecurityLevel && ep.SecurityMode > best.SecurityMode:
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
	want := need.policy + "/" + need.mode
	if need.mode == "" {
		want = need.policy
	}
	var extra string
	if len(unusable) > 0 {
		extra = "; not usable here: " + strings.Join(unusable, ", ")
	}
	return nil, fmt.Errorf("%w for %s; the server offers %s%s", ErrNoEndpoint, want, strings.Join(offered, ", "), extra)
}

// usable says why the agent cannot use ep: its key does not fit the policy,
// or the endpoint does not take the configured user.
func usable(ep *ua.EndpointDescription, policy secpolicy.Policy, need endpointNeeds) error {
	if ep.SecurityMode != ua.MessageSecurityModeNone {
		if need.key == nil {
			return errors.New("needs an agent certificate")
		}
		if err := policy.CheckKey(need.key); err != nil {
			return fmt.Errorf("the agent certificate does not fit: %w", err)
		}
	}
	if !offersToken(ep, need.token) {
		return fmt.Errorf("does not accept %s users", tokenName(need.token))
	}
	return nil
}

func offersToken(ep *ua.EndpointDescription, kind ua.UserTokenType) bool {
	return slices.ContainsFunc(ep.UserIdentityTokens, func(p *ua.UserTokenPolicy) bool { return p != nil && p.TokenType == kind })
}

func tokenName(t ua.UserTokenType) string {
	switch t {
	case ua.UserTokenTypeAnonymous:
		return "anonymous"
	case ua.UserTokenTypeUserName:
		return "user name"
	case ua.UserTokenTypeCertificate:
		return "X.509 certificate"
	}
	return fmt.Sprintf("token type %d", t)
}

func describeEndpoint(ep *ua.EndpointDescription) string {
	name := ep.SecurityPolicyURI
	if i := strings.LastIndex(name, "#"); i >= 0 {
		name = name[i+1:]
	}
	return name + "/" + modeName(ep.SecurityMode)
}

func modeName(m ua.MessageSecurityMode) string {
	return strings.TrimPrefix(m.String(), "MessageSecurityMode")
}

// endpointHost is the host of an opc.tcp URL, without brackets or port.
func endpointHost(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return ""
	}
	return u.Hostname()
}
