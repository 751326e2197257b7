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
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

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
	// clientNonce is CreateSession's, which channel-bound signatures cover.
	clientNonce []byte
	// serverCert is the certificate of CreateSession's response, or the
	// channel's or endpoint's when the response carried none.
	serverCert []byte
	endpoint   *ua.EndpointDescription
	// ephemeral is the server's ephemeral key from the last CreateSession
	// or ActivateSession response, when a password is encrypted to it
	// (ECC policies); used once.
	ephemeral []byte
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
	c.log.Debug().Str("session_id", s.id.String()).Dur("session_timeout_ms", s.timeout).Msg("session activated")
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
func (c *Client) Namespaces() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.namespaces
}

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
