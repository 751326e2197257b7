package opcua

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/subscription"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
	"github.com/tagbridge/tagbridge/collectors/opcua/uatcp"
)

// recover moves a session whose channel failed (cause) to a new channel
// without losing values, and returns the client now carrying it:
//
//  1. while the server holds the session: reactivate it on a new channel;
//     its subscriptions and the notifications not yet acknowledged are
//     still there, and the gap check republishes what was lost in transit;
//  2. when the server lost the session but not its subscriptions: a new
//     session takes them over with TransferSubscriptions;
//  3. otherwise (PLC restart): a new session and subscriptions recreated
//     from the tag map.
//
// Step 1 is retried for as long as the server keeps the subscriptions. old
// is closed without closing its session. An error means the session is
// given up; Run starts afresh after backoff.
func (s *Session) recover(ctx context.Context, old *uaclient.Client, p *plan, st *feed, cause error) (*uaclient.Client, error) {
	cause = serverSide(cause)
	s.states.SetState(collectors.StateRecovering, cause.Error())
	msg := "plc channel lost; recovering the session on a new channel"
	if _, byServer := cause.(*reworded); byServer {
		msg = "the plc ended the session; recovering the subscriptions on a new one"
	}
	s.log.Warn().Err(cause).Str("state", collectors.StateRecovering).Msg(msg)
	sess := detach(ctx, old)

	deadline := time.Now().Add(st.Window(minRecoveryWindow))
	if sess != nil && !errors.Is(cause, subscription.ErrSessionGone) {
		for attempt := 0; ; attempt++ {
			c, err := s.reattach(ctx, p, sess)
			if err == nil {
				st.Reactivated()
				s.recovered(st, "session reactivated on a new channel", attempt+1)
				return c, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// A PLC that answered (a refusal, a closed connection) may have
			// a new certificate; one that did not in time would not answer
			// GetEndpoints either.
			if !errors.Is(err, context.DeadlineExceeded) {
				if renewed, cerr := s.renewedServerCertificate(ctx, p); cerr != nil {
					return nil, cerr
				} else if renewed {
					// A new certificate means a new server process: the session is gone.
					break
				}
			}
			var code ua.StatusCode
			if errors.As(err, &code) && refusesReactivation(code) {
				s.log.Info().Err(err).Msg("server refused to reactivate the session; creating a new one")
				break
			}
			left := time.Until(deadline)
			if left <= 0 {
				return nil, fmt.Errorf("recover session: %w", err)
			}
			wait := min(s.backoff.Next(attempt), left)
			s.log.Debug().Err(err).Int("attempt", attempt+1).Dur("backoff_ms", wait).Msg("reactivating the session")
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}

	c, err := s.dial(ctx, p)
	if err != nil {
		if renewed, cerr := s.renewedServerCertificate(ctx, p); cerr != nil {
			return nil, cerr
		} else if renewed {
			c, err = s.dial(ctx, p)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	terr := st.Transfer(ctx, c)
	if terr == nil {
		s.recovered(st, "subscriptions transferred to a new session", 1)
		return c, nil
	}
	s.log.Debug().Err(terr).Msg("subscriptions not transferable; recreating them")
	// Siemens and B&R PLCs lack TransferSubscriptions: no fault, say so.
	why := "the server had lost it"
	if errors.Is(terr, ua.StatusBadServiceUnsupported) {
		why = "the server does not transfer subscriptions"
	}
	s.states.SetState(collectors.StateConnecting, why)
	if err := s.subscribe(ctx, c, st); err != nil {
		closeClient(ctx, c)
		return nil, err
	}
	s.reportTags()
	s.await(st, collectors.StateConnecting, "subscriptions recreated; waiting for the first notification")
	s.log.Info().Str("state", collectors.StateConnecting).Int("subscriptions", st.Len()).
		Msg("plc session re-established; " + why + ", subscriptions recreated")
	return c, nil
}

// renewedServerCertificate tells whether the PLC now presents another
// certificate than the one p was made for (a PLC restarted with a new one):
// the channels recover opens are encrypted for the old one and refused
// (BadSecurityPolicyRejected, or a closed connection) until the recovery
// window ends. A trusted new certificate replaces p for a new session; an
// untrusted one is refused at once, with the first connection's words (its
// fingerprint, where it was saved in rejected/, how to trust it), so that
// Run reports it and waits out the backoff. A PLC that does not answer yet
// tells nothing: false, nil.
func (s *Session) renewedServerCertificate(ctx context.Context, p *plan) (bool, error) {
	current := p.cfg.Channel.RemoteCertificate
	if len(current) == 0 || p.cfg.Endpoint == nil {
		return false, nil // policy None: no certificate to compare
	}
	gctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	eps, err := uaclient.GetEndpointsDial(gctx, s.plc.Endpoint, uatcp.DefaultLimits(), s.dialer(), s.log)
	if err != nil {
		return false, nil
	}
	i := slices.IndexFunc(eps, func(ep *ua.EndpointDescription) bool {
		return ep != nil && ep.SecurityPolicyURI == p.cfg.Endpoint.SecurityPolicyURI && ep.SecurityMode == p.cfg.Endpoint.SecurityMode
	})
	if i < 0 || len(eps[i].ServerCertificate) == 0 || bytes.Equal(eps[i].ServerCertificate, current) {
		return false, nil
	}
	next, err := s.prepare(ctx)
	if err != nil {
		return true, fmt.Errorf("the plc presents a new server certificate: %w", err)
	}
	s.log.Info().Str("fingerprint", certs.Fingerprint(next.cfg.Channel.RemoteCertificate)).
		Msg("the plc presents a new server certificate, trusted; creating a new session")
	*p = *next
	return true, nil
}

// recovered counts a recovery; the state says streaming again once the
// first PublishResponse arrives on the new channel.
func (s *Session) recovered(st *feed, how string, attempts int) {
	s.states.NoteRecovery()
	s.await(st, collectors.StateRecovering, how+"; waiting for the first notification")
	s.log.Info().Str("state", collectors.StateRecovering).Int("attempt", attempts).Msg("plc session recovered: " + how)
}

// detach takes the session off a failed client, closing the channel but
// not the session; bounded, as the connection may be frozen.
func detach(ctx context.Context, c *uaclient.Client) *uaclient.Session {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	return c.Detach(dctx)
}

// reattach opens a new channel and activates sess on it. On failure the
// session stays open on the server.
func (s *Session) reattach(ctx context.Context, p *plan, sess *uaclient.Session) (*uaclient.Client, error) {
	if sess == nil {
		return nil, errors.New("no session to reactivate")
	}
	dctx, cancel := context.WithTimeout(ctx, 2*dialTimeout)
	defer cancel()
	c, err := uaclient.Reactivate(dctx, p.cfg, sess)
	if err != nil {
		return nil, explain(p, s.plc.Auth.CertificateFile, err)
	}
	return c, nil
}

// refusesReactivation tells the statuses with which a server refuses to
// move a session to a new channel for good: a new session is needed.
// node-opcua answers BadInternalError for a session of an X.509 user.
func refusesReactivation(c ua.StatusCode) bool {
	switch c {
	case ua.StatusBadIdentityChangeNotSupported, ua.StatusBadNoValidCertificates, ua.StatusBadSecurityChecksFailed,
		ua.StatusBadIdentityTokenInvalid, ua.StatusBadIdentityTokenRejected, ua.StatusBadUserAccessDenied,
		ua.StatusBadInternalError:
		return true
	}
	return isSessionLost(c)
}

// isSessionLost tells status codes that mean the server dropped the session.
func isSessionLost(c ua.StatusCode) bool {
	switch c {
	case ua.StatusBadSessionIDInvalid, ua.StatusBadSessionClosed, ua.StatusBadSessionNotActivated:
		return true
	}
	return false
}
