// Package uaclient establishes OPC UA sessions (Part 4, 5.6) over a secure
// channel of package uasc: GetEndpoints, CreateSession with its certificate
// and signature checks, ActivateSession with the client signature and the
// user identity token, the NamespaceArray, CloseSession; and moves a session
// to a new channel (Detach, Reactivate) when its channel is lost.
//
// An endpoint's user token policies decide the identity token: its PolicyId
// (open62541 refuses a token without one, even an anonymous one) and the
// security policy that encrypts a password or signs an X.509 user token.
// When Config.Endpoint is nil, Connect learns the endpoint by GetEndpoints
// over the session's own channel before CreateSession: one connection, and
// the anonymous PolicyId of a None endpoint is the server's.
package uaclient

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors/opcua/secpolicy"
	"github.com/tagbridge/tagbridge/collectors/opcua/uasc"
	"github.com/tagbridge/tagbridge/collectors/opcua/uastatus"
)

const (
	// clientNonceLength is the CreateSession client nonce's length: Part 4
	// asks for at least 32 bytes.
	clientNonceLength = 32
	// DefaultSessionTimeout is requested when Config.SessionTimeout is 0.
	DefaultSessionTimeout = 20 * time.Minute
	// closeSessionTimeout bounds CloseSession when the caller's context
	// gives no earlier deadline: a server that does not answer must not
	// hold up shutdown.
	closeSessionTimeout = 3 * time.Second
	// closeChannelTimeout bounds the CLO and TCP close after it.
	closeChannelTimeout = time.Second
)

// defaultLocaleIDs are sent in ActivateSession when Config.LocaleIDs is nil.
var defaultLocaleIDs = []string{"en"}

// ErrClosed reports a Client used after Detach or Close.
var ErrClosed = errors.New("session client closed")

// Config is one session's settings.
type Config struct {
	// Channel is the secure channel to open: for Connect, and anew for
	// each Reactivate.
	Channel uasc.Config
	// Endpoint is the server's endpoint for Channel's policy and mode,
	// from GetEndpoints: its user token policies and certificate. When
	// nil, Connect asks the server for it over the new channel.
	Endpoint *ua.EndpointDescription
	// Discovered is the whole GetEndpoints answer Endpoint was chosen
	// from, when it came over an unsecured channel. On a secured channel
	// CreateSession's endpoint list must then offer no policy and mode
	// Discovered lacks: a man in the middle could have hidden the better
	// endpoints (Part 4, 5.6.2.2). Nil skips the check.
	Discovered []*ua.EndpointDescription

	ApplicationURI  string // must match the client certificate's URI SAN, which servers check
	ApplicationName string
	ProductURI      string
	SessionName     string
	// SessionTimeout is requested; the server revises it. 0 means
	// DefaultSessionTimeout.
	SessionTimeout time.Duration
	// LocaleIDs are the preferred locales for the session's texts; nil
	// means English.
	LocaleIDs []string
	Identity  Identity // nil means Anonymous
}

// Session is an activated session's state on the server, which outlives a
// channel: Detach returns it and Reactivate moves it to a new channel.
type Session struct {
	id        *ua.NodeID
	authToken *ua.NodeID
	timeout   time.Duration // revised by the server
	// serverNonce is from the last CreateSession or ActivateSession
	// response: the next ActivateSession signs it.
	serverNonce []byte
	// serverCert is the certificate of CreateSession's response, or the
	// channel's or endpoint's when the response carried none.
	serverCert []byte
	endpoint   *ua.EndpointDescription
}

// ID is the session's id on the server (not its secret authentication
// token).
func (s *Session) ID() *ua.NodeID { return s.id }

// Timeout is the session timeout the server granted.
func (s *Session) Timeout() time.Duration { return s.timeout }

// Endpoint is the endpoint the session was created on.
func (s *Session) Endpoint() *ua.EndpointDescription { return s.endpoint }

// Client is an activated session on an open secure channel.
type Client struct {
	ch         *uasc.Channel
	session    Session // immutable once activated
	namespaces []string
	log        zerolog.Logger

	mu     sync.Mutex
	closed bool // by Detach or Close
}

// Connect opens a secure channel, creates and activates a session on it and
// reads the server's NamespaceArray. Errors name the step that failed:
// "create session: BadSecurityChecksFailed (0x80130000)".
func Connect(ctx context.Context, cfg Config) (*Client, error) {
	ch, err := uasc.Open(ctx, cfg.Channel)
	if err != nil {
		return nil, err
	}
	c, err := establish(ctx, cfg, ch)
	if err != nil {
		closeChannel(ctx, ch)
		return nil, err
	}
	return c, nil
}

func establish(ctx context.Context, cfg Config, ch *uasc.Channel) (*Client, error) {
	ep := cfg.Endpoint
	if ep == nil {
		var err error
		if ep, err = channelEndpoint(ctx, ch, cfg.Channel.Endpoint); err != nil {
			return nil, err
		}
	} else if err := matchesChannel(ep, ch); err != nil {
		return nil, err
	}
	s, err := createSession(ctx, cfg, ch, ep)
	if err != nil {
		return nil, err
	}
	c := &Client{ch: ch, session: *s, log: cfg.Channel.Log}
	if err := c.activate(ctx, cfg); err != nil {
		c.closeSession(ctx)
		return nil, err
	}
	if err := c.readNamespaces(ctx); err != nil {
		c.closeSession(ctx)
		return nil, err
	}
	c.log.Debug().Str("session_id", s.id.String()).Dur("session_timeout", s.timeout).Msg("session activated")
	return c, nil
}

// Reactivate opens a new secure channel and activates s on it, with a fresh
// client signature and identity token: the session, its subscriptions and
// their queued notifications survive the lost channel. cfg is the one s
// was created with (the same client certificate: servers check it). On
// failure the new channel is closed and s is left as it was, so the caller
// can try again or give the session up.
func Reactivate(ctx context.Context, cfg Config, s *Session) (*Client, error) {
	if s == nil {
		return nil, errors.New("reactivate session: no session")
	}
	ch, err := uasc.Open(ctx, cfg.Channel)
	if err != nil {
		return nil, err
	}
	if err := matchesChannel(s.endpoint, ch); err != nil {
		closeChannel(ctx, ch)
		return nil, fmt.Errorf("reactivate session: %w", err)
	}
	c := &Client{ch: ch, session: *s, log: cfg.Channel.Log}
	if err := c.activate(ctx, cfg); err != nil {
		closeChannel(ctx, ch)
		return nil, err
	}
	if err := c.readNamespaces(ctx); err != nil {
		closeChannel(ctx, ch)
		return nil, err
	}
	c.log.Debug().Str("session_id", s.id.String()).Msg("session reactivated on a new secure channel")
	return c, nil
}

// Send sends a request in the session (its authentication token added) and
// returns the response; see uasc.Channel.Send for its errors.
func (c *Client) Send(ctx context.Context, req ua.Request) (ua.Response, error) {
	return c.ch.Send(ctx, req, c.session.authToken)
}

// Namespaces is the server's NamespaceArray, read at activation: index i is
// the URI of namespace i.
func (c *Client) Namespaces() []string { return c.namespaces }

// Channel is the secure channel the session is activated on.
func (c *Client) Channel() *uasc.Channel { return c.ch }

// SessionID is the session's id on the server.
func (c *Client) SessionID() *ua.NodeID { return c.session.id }

// SessionTimeout is the session timeout the server granted.
func (c *Client) SessionTimeout() time.Duration { return c.session.timeout }

// Detach closes the secure channel (CLO) and keeps the session on the
// server, for Reactivate on a new channel. The channel close is bounded
// even when ctx is done. Detach after Detach or Close returns nil.
func (c *Client) Detach(ctx context.Context) *Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	closeChannel(ctx, c.ch)
	s := c.session
	return &s
}

// Close closes the session (CloseSession, deleting its subscriptions) and
// its channel. Both steps are bounded, by ctx's deadline or a few seconds,
// even when ctx is already done (shutdown) or the server does not answer.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.closed = true
	return c.closeSession(ctx)
}

// closeSession sends CloseSession, then closes the channel whatever the
// answer.
func (c *Client) closeSession(ctx context.Context) error {
	cctx, cancel := boundedContext(ctx, closeSessionTimeout)
	_, err := c.ch.Send(cctx, &ua.CloseSessionRequest{DeleteSubscriptions: true}, c.session.authToken)
	cancel()
	closeChannel(ctx, c.ch)
	if err != nil {
		return stepError("close session", err)
	}
	return nil
}

// createSession sends CreateSession and checks the server's answer: its
// certificate must be the channel's, its signature over our certificate and
// nonce must verify, and its nonce must be long enough.
func createSession(ctx context.Context, cfg Config, ch *uasc.Channel, ep *ua.EndpointDescription) (*Session, error) {
	const step = "create session"
	policy, secured := ch.Policy(), ch.Mode() != ua.MessageSecurityModeNone
	nonce := make([]byte, max(clientNonceLength, policy.NonceLength()))
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("%s: client nonce: %w", step, err)
	}
	var clientCert []byte
	if cfg.Channel.Local != nil {
		clientCert = cfg.Channel.Local.Certificate
	}
	timeout := cfg.SessionTimeout
	if timeout <= 0 {
		timeout = DefaultSessionTimeout
	}
	req := &ua.CreateSessionRequest{
		ClientDescription: &ua.ApplicationDescription{
			ApplicationURI:  cfg.ApplicationURI,
			ProductURI:      cfg.ProductURI,
			ApplicationName: ua.NewLocalizedText(cfg.ApplicationName),
			ApplicationType: ua.ApplicationTypeClient,
		},
		EndpointURL:             cfg.Channel.Endpoint,
		SessionName:             cfg.SessionName,
		ClientNonce:             nonce,
		ClientCertificate:       clientCert,
		RequestedSessionTimeout: float64(timeout) / float64(time.Millisecond),
		MaxResponseMessageSize:  cfg.Channel.Limits.MaxMessageSize,
	}
	if ep.Server != nil {
		req.ServerURI = ep.Server.ApplicationURI
	}
	resp, err := ch.Send(ctx, req, nil)
	if err != nil {
		return nil, stepError(step, err)
	}
	r, ok := resp.(*ua.CreateSessionResponse)
	if !ok {
		return nil, fmt.Errorf("%s: unexpected response %T", step, resp)
	}
	if r.AuthenticationToken == nil || r.SessionID == nil {
		return nil, fmt.Errorf("%s: the response has no session id or authentication token", step)
	}
	if secured {
		if err := checkServerProof(ch, r, clientCert, nonce); err != nil {
			return nil, fmt.Errorf("%s: %w", step, err)
		}
		if err := checkDiscovered(cfg.Discovered, r.ServerEndpoints); err != nil {
			return nil, fmt.Errorf("%s: %w", step, err)
		}
	}
	if err := checkNonce(policy, r.ServerNonce); err != nil {
		return nil, fmt.Errorf("%s: %w", step, err)
	}
	s := &Session{
		id:          r.SessionID,
		authToken:   r.AuthenticationToken,
		timeout:     time.Duration(r.RevisedSessionTimeout * float64(time.Millisecond)),
		serverNonce: r.ServerNonce,
		serverCert:  firstNonEmpty(r.ServerCertificate, ch.ServerCertificate(), ep.ServerCertificate),
		endpoint:    ep,
	}
	return s, nil
}

// checkServerProof checks that the server of the session is the one of the
// channel: same certificate (leaf compared; either may carry a chain), and
// its signature over our certificate and nonce verifies.
func checkServerProof(ch *uasc.Channel, r *ua.CreateSessionResponse, clientCert, clientNonce []byte) error {
	same, err := sameLeaf(r.ServerCertificate, ch.ServerCertificate())
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	if !same {
		return errors.New("the server certificate differs from the secure channel's")
	}
	cert, err := leafCertificate(ch.ServerCertificate())
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	if r.ServerSignature == nil || len(r.ServerSignature.Signature) == 0 {
		return errors.New("the server sent no signature")
	}
	policy := ch.Policy()
	err = policy.Verify(cert, concat(clientCert, clientNonce), r.ServerSignature.Signature)
	if err != nil && len(clientCert) > 0 {
		// A server may sign our leaf alone when we sent a chain.
		if leaf, lerr := leafDER(clientCert); lerr == nil && len(leaf) < len(clientCert) {
			err = policy.Verify(cert, concat(leaf, clientNonce), r.ServerSignature.Signature)
		}
	}
	if err != nil {
		return fmt.Errorf("the server signature does not verify with %s: %w", policy.Name(), err)
	}
	return nil
}

// checkDiscovered checks that the endpoints of CreateSession's response,
// which came over the secured channel, offer no policy and mode missing from
// the list of GetEndpoints, which did not.
func checkDiscovered(discovered, server []*ua.EndpointDescription) error {
	if discovered == nil {
		return nil
	}
	type kind struct {
		policy string
		mode   ua.MessageSecurityMode
	}
	seen := make(map[kind]bool, len(discovered))
	for _, ep := range discovered {
		seen[kind{ep.SecurityPolicyURI, ep.SecurityMode}] = true
	}
	var hidden []string
	for _, ep := range server {
		if ep != nil && !seen[kind{ep.SecurityPolicyURI, ep.SecurityMode}] {
			seen[kind{ep.SecurityPolicyURI, ep.SecurityMode}] = true
			hidden = append(hidden, endpointName(ep))
		}
	}
	if len(hidden) > 0 {
		return fmt.Errorf("the server offers endpoints GetEndpoints did not show (%s): the endpoint list may have been tampered with", strings.Join(hidden, ", "))
	}
	return nil
}

// checkNonce checks a server nonce's length where the policy asks for one.
func checkNonce(policy secpolicy.Policy, nonce []byte) error {
	if policy.URI() == ua.SecurityPolicyURINone {
		return nil
	}
	if n := policy.NonceLength(); len(nonce) < n {
		return fmt.Errorf("server nonce of %d bytes, %s asks for at least %d", len(nonce), policy.Name(), n)
	}
	return nil
}

// activate sends ActivateSession for c.session on c.ch and keeps the new
// server nonce.
func (c *Client) activate(ctx context.Context, cfg Config) error {
	const step = "activate session"
	s := &c.session
	policy, secured := c.ch.Policy(), c.ch.Mode() != ua.MessageSecurityModeNone
	clientSig := &ua.SignatureData{}
	if secured && policy.URI() != ua.SecurityPolicyURINone {
		if cfg.Channel.Local == nil {
			return fmt.Errorf("%s: a secured channel needs the client's key pair", step)
		}
		leaf, err := leafDER(c.ch.ServerCertificate())
		if err != nil {
			return fmt.Errorf("%s: server certificate: %w", step, err)
		}
		sig, err := policy.Sign(cfg.Channel.Local.Key, concat(leaf, s.serverNonce))
		if err != nil {
			return fmt.Errorf("%s: client signature with %s: %w", step, policy.Name(), err)
		}
		clientSig = &ua.SignatureData{Algorithm: policy.SignatureAlgorithm(), Signature: sig}
	}
	// A password is encrypted for, and a user certificate's signature
	// made over, the endpoint's certificate: open62541 returns none in
	// CreateSession on a None channel when the client sent none.
	proof := tokenProof{
		serverCert:  firstNonEmpty(s.endpoint.ServerCertificate, s.serverCert),
		serverNonce: s.serverNonce,
	}
	tok, err := buildIdentityToken(cfg.Identity, s.endpoint, policy, proof)
	if err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	locales := cfg.LocaleIDs
	if locales == nil {
		locales = defaultLocaleIDs
	}
	req := &ua.ActivateSessionRequest{
		ClientSignature:    clientSig,
		LocaleIDs:          locales,
		UserIdentityToken:  tok.token,
		UserTokenSignature: tok.signature,
	}
	resp, err := c.ch.Send(ctx, req, s.authToken)
	if err != nil {
		return stepError(step, err)
	}
	r, ok := resp.(*ua.ActivateSessionResponse)
	if !ok {
		return fmt.Errorf("%s: unexpected response %T", step, resp)
	}
	if err := checkNonce(policy, r.ServerNonce); err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	s.serverNonce = r.ServerNonce
	return nil
}

// readNamespaces reads the server's NamespaceArray (ns=0;i=2255).
func (c *Client) readNamespaces(ctx context.Context) error {
	const step = "read namespace array"
	resp, err := c.Send(ctx, &ua.ReadRequest{
		TimestampsToReturn: ua.TimestampsToReturnNeither,
		NodesToRead: []*ua.ReadValueID{{
			NodeID:       ua.NewNumericNodeID(0, id.Server_NamespaceArray),
			AttributeID:  ua.AttributeIDValue,
			DataEncoding: &ua.QualifiedName{}, // gopcua encodes a nil pointer as nothing
		}},
	})
	if err != nil {
		return stepError(step, err)
	}
	r, ok := resp.(*ua.ReadResponse)
	if !ok || len(r.Results) != 1 || r.Results[0] == nil {
		return fmt.Errorf("%s: unexpected response", step)
	}
	dv := r.Results[0]
	if uastatus.IsBad(dv.Status) {
		return &uastatus.Error{Step: step, Code: dv.Status}
	}
	if dv.Value == nil {
		return fmt.Errorf("%s: no value", step)
	}
	ns, ok := dv.Value.Value().([]string)
	if !ok {
		return fmt.Errorf("%s: value of type %T, want an array of strings", step, dv.Value.Value())
	}
	c.namespaces = ns
	return nil
}

// channelEndpoint asks the server over ch for its endpoints and returns the
// one of ch's policy and mode.
func channelEndpoint(ctx context.Context, ch *uasc.Channel, endpointURL string) (*ua.EndpointDescription, error) {
	eps, err := getEndpoints(ctx, ch, endpointURL)
	if err != nil {
		return nil, err
	}
	for _, ep := range eps {
		if matchesChannel(ep, ch) == nil {
			return ep, nil
		}
	}
	offered := make([]string, 0, len(eps))
	for _, ep := range eps {
		offered = append(offered, endpointName(ep))
	}
	return nil, fmt.Errorf("get endpoints: the server offers no endpoint %s/%s (offers %s)",
		ch.Policy().Name(), modeName(ch.Mode()), strings.Join(offered, ", "))
}

// matchesChannel checks that an endpoint is of the channel's policy and
// mode, and, for a secured channel, has the channel's certificate.
func matchesChannel(ep *ua.EndpointDescription, ch *uasc.Channel) error {
	if ep == nil {
		return errors.New("no endpoint")
	}
	if ep.SecurityPolicyURI != ch.Policy().URI() || ep.SecurityMode != ch.Mode() {
		return fmt.Errorf("endpoint %s does not match the secure channel (%s/%s)", endpointName(ep), ch.Policy().Name(), modeName(ch.Mode()))
	}
	if ch.Mode() != ua.MessageSecurityModeNone && len(ep.ServerCertificate) > 0 && len(ch.ServerCertificate()) > 0 {
		if same, err := sameLeaf(ep.ServerCertificate, ch.ServerCertificate()); err != nil || !same {
			return fmt.Errorf("endpoint %s: its certificate differs from the secure channel's", endpointName(ep))
		}
	}
	return nil
}

// stepError names the step of an error: a Bad status as
// "activate session: BadUserAccessDenied (0x801F0000)", anything else
// wrapped.
func stepError(step string, err error) error {
	if se, ok := errors.AsType[*uastatus.Error](err); ok {
		return &uastatus.Error{Step: step, Code: se.Code}
	}
	return fmt.Errorf("%s: %w", step, err)
}

// boundedContext is ctx, or when ctx is done or has no deadline within d, a
// context that keeps ctx's values and ends after d: clean-up that must
// happen even during shutdown, but not hang.
func boundedContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && ctx.Err() == nil && time.Until(dl) <= d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

// closeChannel closes ch, bounded: errors are of no use to a caller that is
// giving the channel up.
func closeChannel(ctx context.Context, ch *uasc.Channel) {
	cctx, cancel := boundedContext(ctx, closeChannelTimeout)
	defer cancel()
	_ = ch.Close(cctx)
}

func endpointName(ep *ua.EndpointDescription) string {
	name := strings.TrimPrefix(ep.SecurityPolicyURI, "http://opcfoundation.org/UA/SecurityPolicy#")
	return name + "/" + modeName(ep.SecurityMode)
}

func modeName(m ua.MessageSecurityMode) string {
	return strings.TrimPrefix(m.String(), "MessageSecurityMode")
}

func firstNonEmpty(bs ...[]byte) []byte {
	if i := slices.IndexFunc(bs, func(b []byte) bool { return len(b) > 0 }); i >= 0 {
		return bs[i]
	}
	return nil
}
