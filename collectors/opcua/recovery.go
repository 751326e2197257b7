package opcua

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/subscription"
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
func (s *Session) recover(ctx context.Context, old *opcua.Client, secOpts []opcua.Option, st *stream, cause error) (*opcua.Client, error) {
	s.status.SetState(collectors.StateRecovering, cause.Error())
	s.log.Warn().Err(cause).Str("state", collectors.StateRecovering).Msg("plc channel lost; recovering the session on a new channel")
	sess, _ := old.DetachSession(ctx)
	go closeClient(ctx, old) // a frozen connection must not hold the recovery up

	deadline := time.Now().Add(st.Window(minRecoveryWindow))
	if sess != nil && !errors.Is(cause, subscription.ErrSessionGone) {
		for attempt := 0; ; attempt++ {
			c, err := s.reattach(ctx, secOpts, sess)
			if err == nil {
				st.Reactivated()
				s.recovered(st, "session reactivated on a new channel", attempt+1)
				return c, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var code ua.StatusCode
			if errors.As(err, &code) && (isSessionLost(code) || code == ua.StatusBadIdentityChangeNotSupported ||
				code == ua.StatusBadNoValidCertificates || code == ua.StatusBadSecurityChecksFailed) {
				s.log.Info().Err(err).Msg("server refused to reactivate the session; creating a new one")
				break
			}
			left := time.Until(deadline)
			if left <= 0 {
				return nil, fmt.Errorf("recover session: %w", err)
			}
			wait := min(s.backoff.Next(attempt), left)
			s.log.Debug().Err(err).Int("attempt", attempt+1).Dur("backoff", wait).Msg("reactivating the session")
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}

	c, err := s.dial(ctx, secOpts)
	if err != nil {
		return nil, err
	}
	terr := st.Transfer(ctx, gopcuaSender{c})
	if terr == nil {
		s.recovered(st, "subscriptions transferred to a new session", 1)
		return c, nil
	}
	s.log.Debug().Err(terr).Msg("subscriptions not transferable; recreating them")
	s.status.SetState(collectors.StateConnecting, "server lost the session")
	if err := s.subscribe(ctx, c, st); err != nil {
		closeClient(ctx, c)
		return nil, err
	}
	s.reportTags()
	s.await(st, collectors.StateConnecting, "subscriptions recreated; waiting for the first notification")
	s.log.Info().Str("state", collectors.StateConnecting).Int("subscriptions", st.Len()).
		Msg("plc session re-established; the server had lost it, subscriptions recreated")
	return c, nil
}

// recovered counts a recovery; the state says streaming again once the
// first PublishResponse arrives on the new channel.
func (s *Session) recovered(st *stream, how string, attempts int) {
	s.status.NoteRecovery()
	s.await(st, collectors.StateRecovering, how+"; waiting for the first notification")
	s.log.Info().Str("state", collectors.StateRecovering).Int("attempt", attempts).Msg("plc session recovered: " + how)
}

// reattach opens a new channel and activates sess on it. On failure the
// session stays open on the server (it is only detached).
func (s *Session) reattach(ctx context.Context, secOpts []opcua.Option, sess *opcua.Session) (*opcua.Client, error) {
	c, err := opcua.NewClient(s.plc.Endpoint, append(s.clientOptions(s.onState), secOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("configure client: %w", err)
	}
	defer guardDial(c, &s.chanWatch.restored)()
	fail := func(what string, err error) (*opcua.Client, error) {
		_, _ = c.DetachSession(ctx)
		closeClient(ctx, c)
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	err = c.Dial(dctx)
	cancel()
	if err != nil {
		return fail("open secure channel", err)
	}
	settleToken(ctx, c.SecureChannel(), &s.chanWatch.restored)
	if err := c.ActivateSession(ctx, sess); err != nil {
		return fail("activate session", err)
	}
	if c.Session() != sess { // gopcua returns nil when it cannot sign
		return fail("activate session", errors.New("no session signature"))
	}
	if err := c.UpdateNamespaces(ctx); err != nil {
		return fail("read namespaces", err)
	}
	return c, nil
}

// isSessionLost tells status codes that mean the server dropped the session.
func isSessionLost(c ua.StatusCode) bool {
	switch c {
	case ua.StatusBadSessionIDInvalid, ua.StatusBadSessionClosed, ua.StatusBadSessionNotActivated:
		return true
	}
	return false
}
