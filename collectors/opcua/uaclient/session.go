package uaclient

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors/opcua/secpolicy"
	"github.com/tagbridge/tagbridge/collectors/opcua/uasc"
	"github.com/tagbridge/tagbridge/collectors/opcua/uastatus"
)

// createSession sends CreateSession and checks the server's answer: its
// certificate must be the channel's, its signature over our certificate and
// nonce must verify, and its nonce must be long enough.
func createSession(ctx context.Context, cfg Config, ch *uasc.Channel, ep *ua.EndpointDescription) (*Session, error) {
	const step = "create session"
	policy := ch.Policy()
	nonce := make([]byte, max(clientNonceLength, secpolicy.SessionNonceLength(policy)))
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
	ecdhPolicy := ephemeralKeyPolicy(cfg.Identity, ep, policy)
	if ecdhPolicy != nil {
		req.RequestHeader = ephemeralKeyRequest(ecdhPolicy)
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
	serverCert := firstNonEmpty(r.ServerCertificate, ch.ServerCertificate(), ep.ServerCertificate)
	var ephemeral []byte
	err = checkCreated(cfg, ch, r, clientCert, nonce)
	if err == nil && ecdhPolicy != nil {
		ephemeral, err = serverEphemeralKey(r.ResponseHeader, ecdhPolicy, firstNonEmpty(ep.ServerCertificate, serverCert))
	}
	if err != nil {
		// Do not leave the session to time out on the server: PLCs allow
		// few, and the caller will retry.
		cctx, cancel := boundedContext(ctx, closeSessionTimeout)
		_, _ = ch.Send(cctx, &ua.CloseSessionRequest{DeleteSubscriptions: true}, r.AuthenticationToken)
		cancel()
		return nil, fmt.Errorf("%s: %w", step, err)
	}
	s := &Session{
		id:          r.SessionID,
		authToken:   r.AuthenticationToken,
		timeout:     time.Duration(r.RevisedSessionTimeout * float64(time.Millisecond)),
		serverNonce: r.ServerNonce,
		clientNonce: nonce,
		serverCert:  serverCert,
		endpoint:    ep,
		ephemeral:   ephemeral,
	}
	return s, nil
}

// checkCreated checks a CreateSession response: on a secured channel the
// server's proof and endpoint list, and the server nonce's length.
func checkCreated(cfg Config, ch *uasc.Channel, r *ua.CreateSessionResponse, clientCert, clientNonce []byte) error {
	if ch.Mode() != ua.MessageSecurityModeNone {
		if err := checkServerProof(ch, r, clientCert, clientNonce); err != nil {
			return err
		}
		if err := checkDiscovered(cfg.Discovered, r.ServerEndpoints); err != nil {
			return err
		}
	}
	return checkNonce(ch.Policy(), r.ServerNonce)
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
	if secpolicy.ChannelBound(policy) {
		data, err := boundData(ch, clientNonce, [][]byte{ch.ServerCertificate(), clientCert}, r.ServerNonce)
		if err == nil {
			err = policy.Verify(cert, data, r.ServerSignature.Signature)
		}
		if err != nil {
			return fmt.Errorf("the server signature does not verify with %s: %w", policy.Name(), err)
		}
		return nil
	}
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
	if n := secpolicy.SessionNonceLength(policy); len(nonce) < n {
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
		data, alg := concat(leaf, s.serverNonce), policy.SignatureAlgorithm()
		if secpolicy.ChannelBound(policy) {
			server := c.ch.ServerCertificate()
			if data, err = boundData(c.ch, s.serverNonce, [][]byte{server, server, cfg.Channel.Local.Certificate}, s.clientNonce); err != nil {
				return fmt.Errorf("%s: client signature: %w", step, err)
			}
			alg = "" // Part 4 1.05.07: empty, and ignored
		}
		sig, err := policy.Sign(cfg.Channel.Local.Key, data)
		if err != nil {
			return fmt.Errorf("%s: client signature with %s: %w", step, policy.Name(), err)
		}
		clientSig = &ua.SignatureData{Algorithm: alg, Signature: sig}
	}
	// A password is encrypted for, and a user certificate's signature
	// made over, the endpoint's certificate: open62541 returns none in
	// CreateSession on a None channel when the client sent none.
	proof := tokenProof{
		serverCert:      firstNonEmpty(s.endpoint.ServerCertificate, s.serverCert),
		serverNonce:     s.serverNonce,
		serverEphemeral: s.ephemeral,
		client:          cfg.Channel.Local,
	}
	if secpolicy.ChannelBound(policy) && cfg.Channel.Local != nil {
		server, client := c.ch.ServerCertificate(), cfg.Channel.Local.Certificate
		data, err := boundData(c.ch, s.serverNonce, [][]byte{server, server, client, client}, s.clientNonce)
		if err != nil {
			return fmt.Errorf("%s: user token signature: %w", step, err)
		}
		proof.boundUserData = data
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
	// A key is used once: ask for the next one, for a Reactivate.
	s.ephemeral = nil
	ecdhPolicy := ephemeralKeyPolicy(cfg.Identity, s.endpoint, policy)
	if ecdhPolicy != nil {
		req.RequestHeader = ephemeralKeyRequest(ecdhPolicy)
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
	if ecdhPolicy != nil {
		// Only the next Reactivate needs it, and says so if it is missing.
		s.ephemeral, _ = serverEphemeralKey(r.ResponseHeader, ecdhPolicy, proof.serverCert)
	}
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
	c.mu.Lock()
	c.namespaces = ns
	c.mu.Unlock()
	return nil
}

// RefreshNamespaces reads the NamespaceArray again and reports whether it
// changed: a PLC program download can renumber namespaces while the
// session lives.
func (c *Client) RefreshNamespaces(ctx context.Context) (changed bool, err error) {
	old := c.Namespaces()
	if err := c.readNamespaces(ctx); err != nil {
		return false, err
	}
	return !slices.Equal(old, c.Namespaces()), nil
}
