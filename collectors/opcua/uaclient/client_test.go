package uaclient_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/collectors/opcua/secpolicy"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
	"github.com/tagbridge/tagbridge/collectors/opcua/uasc"
	"github.com/tagbridge/tagbridge/collectors/opcua/uatcp"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/faultproxy"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
	"github.com/tagbridge/tagbridge/scripts/open62541/o62proc"
)

// testTimeout bounds each step against a server on this (busy) machine.
const testTimeout = 60 * time.Second

const (
	uaNamespace    = "http://opcfoundation.org/UA/"
	uriPrefix      = "http://opcfoundation.org/UA/SecurityPolicy#"
	basic256Sha256 = uriPrefix + "Basic256Sha256"
)

// rsaPolicies are the RSA policies both servers are started with, besides
// None.
var rsaPolicies = []string{"Basic128Rsa15", "Basic256", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"}

func modeName(m ua.MessageSecurityMode) string {
	return strings.TrimPrefix(m.String(), "MessageSecurityMode")
}

// server is a running OPC UA test server and what a test needs of it.
type server struct {
	endpoint       string
	user, password string
	appNamespace   string     // namespace 1's URI
	counter        *ua.NodeID // an Int32 variable
	eps            []*ua.EndpointDescription
	// x509ReactivateErr is the server's refusal of an X.509 user session
	// activated on a new channel; "" when it allows that.
	x509ReactivateErr string
	// nullPolicyIDErr is the refusal of an anonymous token without a
	// PolicyId ("" when accepted); userSignatureErr of an X.509 user token
	// signed with another key.
	nullPolicyIDErr  string
	nullPolicyIDCode ua.StatusCode
	userSignatureErr string
	// closedSessions counts the sessions the server's log says it closed.
	closedSessions func() int
}

// waitClosedSessions waits until srv's log tells of n closed sessions: the
// line may follow the CloseSession response.
func waitClosedSessions(t *testing.T, srv *server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for srv.closedSessions() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the server closed %d sessions, want %d", srv.closedSessions(), n)
		}
		<-tick.C
	}
}

// servers start the two independent stacks the session layer must work
// with, each offering None and every RSA policy (Sign, SignAndEncrypt),
// anonymous, one user and X.509 users.
var servers = []struct {
	name  string
	start func(t *testing.T) *server
}{
	{"node-opcua", func(t *testing.T) *server {
		p := peerproc.Start(t, peerproc.Options{
			Policies:  append([]string{"None"}, rsaPolicies...),
			Users:     map[string]string{"operator": "op-pw-7f3a"},
			X509Users: true,
		})
		closed := regexp.MustCompile(`opcua-peer: session closed`)
		return &server{endpoint: p.Endpoint, user: "operator", password: "op-pw-7f3a",
			closedSessions: func() int { return len(closed.FindAllString(p.Log(), -1)) },
			appNamespace:   "urn:tagbridge:plcsim", counter: ua.MustParseNodeID("ns=1;s=Int32.0001"),
			// node-opcua 2.182.2 cannot compare X.509 identity tokens when a
			// session moves to a new channel: sameIdentityToken() asserts
			// "Not implemented yet" (opcua_server.js) and the request fails
			// with BadInternalError. The layer above recreates the session.
			x509ReactivateErr: "activate session: BadInternalError (0x80020000)",
			userSignatureErr:  "activate session: BadUserSignatureInvalid (0x80570000)"}
	}},
	{"open62541", func(t *testing.T) *server {
		s := o62proc.Start(t, o62proc.Options{
			Policies: append([]string{"None"}, rsaPolicies...),
			User:     "integrations", Password: "integrations-pw-9c1e",
		})
		return &server{endpoint: s.Endpoint, user: "integrations", password: "integrations-pw-9c1e",
			closedSessions: func() int { return s.Count(regexp.MustCompile(`\| Closing the Session`)) },
			appNamespace:   "urn:peers:open62541:server", counter: ua.MustParseNodeID("ns=1;s=Tag0002"),
			nullPolicyIDErr:  "activate session: BadIdentityTokenInvalid (0x80200000)",
			nullPolicyIDCode: ua.StatusBadIdentityTokenInvalid,
			userSignatureErr: "activate session: BadUserSignatureInvalid (0x80570000)"}
	}},
}

// keyPair generates an application or user certificate of keyType with
// the project's certs package, as `tagbridge certs create --key-type` does.
func keyPair(t *testing.T, agentID, keyType string) (secpolicy.KeyPair, string) {
	t.Helper()
	certPEM, keyPEM, err := certs.Generate(certs.Options{AgentID: agentID, Hostname: "localhost", KeyType: keyType})
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		t.Fatal("generated certificate or key is not PEM")
	}
	var key any
	switch kb.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes) // Ed25519
	}
	if err != nil {
		t.Fatal(err)
	}
	return secpolicy.KeyPair{Certificate: cb.Bytes, Key: key}, certs.ApplicationURIFor("localhost", agentID)
}

// client is the application's key pair, shared by every test: RSA key
// generation is slow on a busy machine.
type client struct {
	app, user secpolicy.KeyPair
	appURI    string
}

func newClient(t *testing.T) client {
	app, appURI := keyPair(t, "uaclient-test", certs.KeyTypeRSA)
	user, _ := keyPair(t, "uaclient-test-user", certs.KeyTypeRSA)
	return client{app: app, user: user, appURI: appURI}
}

// config is the session configuration for srv's endpoint of policy and mode,
// as the agent builds it from GetEndpoints; with learn, Endpoint is left nil
// for Connect to find.
func (cl client) config(t *testing.T, srv *server, policyURI string, mode ua.MessageSecurityMode, id uaclient.Identity, learn bool) uaclient.Config {
	t.Helper()
	policy, err := secpolicy.ByURI(policyURI)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(srv.eps, func(ep *ua.EndpointDescription) bool {
		return ep.SecurityPolicyURI == policyURI && ep.SecurityMode == mode
	})
	if i < 0 {
		t.Fatalf("%s offers no endpoint %s %s", srv.endpoint, policyURI, mode)
	}
	ep := srv.eps[i]
	ch := uasc.Config{
		Endpoint:       srv.endpoint,
		Policy:         policy,
		Mode:           mode,
		Lifetime:       10 * time.Minute,
		RequestTimeout: 10 * time.Second,
		Limits:         uatcp.DefaultLimits(),
		Log:            testkit.TestLogger(t),
	}
	if mode != ua.MessageSecurityModeNone {
		ch.Local = &cl.app
		ch.RemoteCertificate = ep.ServerCertificate
	}
	cfg := uaclient.Config{
		Channel:         ch,
		Endpoint:        ep,
		Discovered:      srv.eps,
		ApplicationURI:  cl.appURI,
		ApplicationName: "tagbridge uaclient test",
		ProductURI:      "urn:tagbridge",
		SessionName:     "tagbridge " + t.Name(),
		SessionTimeout:  time.Minute,
		Identity:        id,
	}
	if learn {
		cfg.Endpoint = nil
	}
	return cfg
}

// readCounter reads srv's Int32 variable in c's session.
func readCounter(ctx context.Context, t *testing.T, c *uaclient.Client, srv *server) int32 {
	t.Helper()
	resp, err := c.Send(ctx, &ua.ReadRequest{
		TimestampsToReturn: ua.TimestampsToReturnBoth,
		NodesToRead:        []*ua.ReadValueID{{NodeID: srv.counter, AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}}},
	})
	if err != nil {
		t.Fatalf("read %s: %v", srv.counter, err)
	}
	r := resp.(*ua.ReadResponse)
	if len(r.Results) != 1 || r.Results[0].Status != ua.StatusOK {
		t.Fatalf("read %s: results %+v", srv.counter, r.Results)
	}
	v, ok := r.Results[0].Value.Value().(int32)
	if !ok {
		t.Fatalf("read %s: value %T, want int32", srv.counter, r.Results[0].Value.Value())
	}
	return v
}

func TestSessions(t *testing.T) {
	cl := newClient(t)
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			srv := s.start(t)
			eps, err := uaclient.GetEndpoints(testkit.StepContext(t, testTimeout), srv.endpoint, uatcp.DefaultLimits(), testkit.TestLogger(t))
			if err != nil {
				t.Fatalf("GetEndpoints: %v", err)
			}
			srv.eps = eps
			t.Run("connect", func(t *testing.T) { testConnect(t, cl, srv) })
			t.Run("refusals", func(t *testing.T) { testRefusals(t, cl, srv) })
			t.Run("detach and reactivate", func(t *testing.T) { testReactivate(t, cl, srv) })
			t.Run("reactivate after a lost connection", func(t *testing.T) { testLostConnection(t, cl, srv) })
			t.Run("close", func(t *testing.T) { testClose(t, cl, srv) })
		})
	}
}

func testConnect(t *testing.T, cl client, srv *server) {
	none, sign, encrypt := ua.MessageSecurityModeNone, ua.MessageSecurityModeSign, ua.MessageSecurityModeSignAndEncrypt
	anonymous := func(*server) uaclient.Identity { return uaclient.Anonymous{} }
	user := func(s *server) uaclient.Identity {
		return uaclient.UserName{User: s.user, Password: []byte(s.password)}
	}
	x509User := func(*server) uaclient.Identity { return uaclient.X509{KeyPair: cl.user} }
	cases := []struct {
		name     string
		policy   string
		mode     ua.MessageSecurityMode
		identity func(*server) uaclient.Identity
		learn    bool // Config.Endpoint nil: Connect asks the server
	}{
		{"None/anonymous, endpoint learned", ua.SecurityPolicyURINone, none, anonymous, true},
		{"None/anonymous", ua.SecurityPolicyURINone, none, anonymous, false},
		{"None/nil identity is anonymous", ua.SecurityPolicyURINone, none, func(*server) uaclient.Identity { return nil }, true},
		// The password is encrypted per the token policy (Basic256Sha256)
		// with the endpoint's certificate: no certificate on the channel.
		{"None/username", ua.SecurityPolicyURINone, none, user, false},
		{"Basic256Sha256 SignAndEncrypt/anonymous, endpoint learned", basic256Sha256, encrypt, anonymous, true},
	}
	// Every RSA policy (the deprecated ones too: the agent offers them
	// behind allow_deprecated) × mode × identity.
	for _, policy := range rsaPolicies {
		for _, mode := range []ua.MessageSecurityMode{sign, encrypt} {
			for _, id := range []struct {
				name string
				id   func(*server) uaclient.Identity
			}{{"anonymous", anonymous}, {"username", user}, {"X.509 user", x509User}} {
				cases = append(cases, struct {
					name     string
					policy   string
					mode     ua.MessageSecurityMode
					identity func(*server) uaclient.Identity
					learn    bool
				}{policy + " " + modeName(mode) + "/" + id.name, uriPrefix + policy, mode, id.id, false})
			}
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testkit.StepContext(t, testTimeout)
			cfg := cl.config(t, srv, tc.policy, tc.mode, tc.identity(srv), tc.learn)
			c, err := uaclient.Connect(ctx, cfg)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			if got := c.Channel().Mode(); got != tc.mode {
				t.Errorf("channel mode %v, want %v", got, tc.mode)
			}
			if got := c.Channel().Policy().URI(); got != tc.policy {
				t.Errorf("channel policy %s, want %s", got, tc.policy)
			}
			ns := c.Namespaces()
			if len(ns) < 2 || ns[0] != uaNamespace || ns[1] != srv.appNamespace {
				t.Errorf("namespaces %q, want [%s %s ...]", ns, uaNamespace, srv.appNamespace)
			}
			if c.SessionID() == nil || c.SessionTimeout() <= 0 {
				t.Errorf("session id %v, timeout %v", c.SessionID(), c.SessionTimeout())
			}
			readCounter(ctx, t, c, srv)
			if err := c.Close(ctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if _, err := c.Send(ctx, &ua.ReadRequest{}); !errors.Is(err, uasc.ErrChannelClosed) {
				t.Errorf("Send after Close: %v, want %v", err, uasc.ErrChannelClosed)
			}
		})
	}
}

func testRefusals(t *testing.T, cl client, srv *server) {
	none, encrypt := ua.MessageSecurityModeNone, ua.MessageSecurityModeSignAndEncrypt
	wrong := []byte("not-the-pw-4d2b")
	user := uaclient.UserName{User: srv.user, Password: []byte(srv.password)}
	// editTokens changes a copy of the endpoint's user token policies, as
	// if the server had offered them so.
	editTokens := func(edit func(p *ua.UserTokenPolicy) *ua.UserTokenPolicy) func(*uaclient.Config) {
		return func(cfg *uaclient.Config) {
			ep := *cfg.Endpoint
			ep.UserIdentityTokens = nil
			for _, p := range cfg.Endpoint.UserIdentityTokens {
				p := *p
				if q := edit(&p); q != nil {
					ep.UserIdentityTokens = append(ep.UserIdentityTokens, q)
				}
			}
			cfg.Endpoint = &ep
		}
	}
	cases := []struct {
		name    string
		policy  string
		mode    ua.MessageSecurityMode
		id      uaclient.Identity
		edit    func(*uaclient.Config)
		wantErr string        // the whole message, or its start; "" for success
		wantSC  ua.StatusCode // found by errors.As; 0 when the refusal is ours
	}{
		{"wrong password on None", ua.SecurityPolicyURINone, none, uaclient.UserName{User: srv.user, Password: wrong}, nil,
			"activate session: BadUserAccessDenied (0x801F0000)", ua.StatusBadUserAccessDenied},
		{"wrong password on Basic256Sha256 SignAndEncrypt", basic256Sha256, encrypt, uaclient.UserName{User: srv.user, Password: wrong}, nil,
			"activate session: BadUserAccessDenied (0x801F0000)", ua.StatusBadUserAccessDenied},
		{"plaintext password not allowed", ua.SecurityPolicyURINone, none, user,
			editTokens(func(p *ua.UserTokenPolicy) *ua.UserTokenPolicy {
				if p.TokenType == ua.UserTokenTypeUserName {
					p.SecurityPolicyURI = ua.SecurityPolicyURINone // a server asking for the password in plaintext
				}
				return p
			}),
			"activate session: user token policy ", 0},
		{"no anonymous user token offered", ua.SecurityPolicyURINone, none, uaclient.Anonymous{},
			editTokens(func(p *ua.UserTokenPolicy) *ua.UserTokenPolicy {
				if p.TokenType == ua.UserTokenTypeAnonymous {
					return nil
				}
				return p
			}),
			"activate session: endpoint None/None offers no Anonymous user token (offers ", 0},
		// What gopcua's client sent (issue 11): open62541 refuses it.
		{"anonymous with a null PolicyId", ua.SecurityPolicyURINone, none, uaclient.Anonymous{},
			editTokens(func(p *ua.UserTokenPolicy) *ua.UserTokenPolicy {
				if p.TokenType == ua.UserTokenTypeAnonymous {
					p.PolicyID = ""
				}
				return p
			}),
			srv.nullPolicyIDErr, srv.nullPolicyIDCode},
		{"endpoint list tampered with", basic256Sha256, encrypt, uaclient.Anonymous{},
			func(cfg *uaclient.Config) {
				// A man in the middle hid the best policy from GetEndpoints.
				cfg.Discovered = slices.DeleteFunc(slices.Clone(cfg.Discovered), func(ep *ua.EndpointDescription) bool {
					return ep.SecurityPolicyURI == uriPrefix+"Aes256_Sha256_RsaPss"
				})
			},
			"create session: the server offers endpoints GetEndpoints did not show (Aes256_Sha256_RsaPss/Sign, Aes256_Sha256_RsaPss/SignAndEncrypt): the endpoint list may have been tampered with", 0},
		{"X.509 user key not the certificate's", basic256Sha256, encrypt,
			uaclient.X509{KeyPair: secpolicy.KeyPair{Certificate: cl.user.Certificate, Key: cl.app.Key}}, nil,
			srv.userSignatureErr, ua.StatusBadUserSignatureInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testkit.StepContext(t, testTimeout)
			cfg := cl.config(t, srv, tc.policy, tc.mode, tc.id, false)
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			closed := srv.closedSessions()
			c, err := uaclient.Connect(ctx, cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				if err := c.Close(ctx); err != nil {
					t.Fatalf("Close: %v", err)
				}
				return
			}
			if err == nil {
				c.Close(ctx)
				t.Fatal("Connect succeeded")
			}
			if msg := err.Error(); !strings.HasPrefix(msg, tc.wantErr) {
				t.Errorf("error %q, want %q", msg, tc.wantErr)
			}
			if u, ok := tc.id.(uaclient.UserName); ok && strings.Contains(err.Error(), string(u.Password)) {
				t.Errorf("error %q shows the password", err)
			}
			var sc ua.StatusCode
			if got := errors.As(err, &sc); got != (tc.wantSC != 0) || sc != tc.wantSC {
				t.Errorf("status code in error: %v (found %v), want %v", sc, got, tc.wantSC)
			}
			// The refused session does not wait for its timeout on the
			// server: PLCs allow few sessions.
			waitClosedSessions(t, srv, closed+1)
		})
	}
}

func testReactivate(t *testing.T, cl client, srv *server) {
	cases := []struct {
		name   string
		policy string
		mode   ua.MessageSecurityMode
		id     uaclient.Identity
	}{
		{"None/anonymous", ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, uaclient.Anonymous{}},
		{"Basic256Sha256 SignAndEncrypt/username", basic256Sha256, ua.MessageSecurityModeSignAndEncrypt,
			uaclient.UserName{User: srv.user, Password: []byte(srv.password)}},
		{"Basic256Sha256 Sign/X.509 user", basic256Sha256, ua.MessageSecurityModeSign, uaclient.X509{KeyPair: cl.user}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testkit.StepContext(t, testTimeout)
			cfg := cl.config(t, srv, tc.policy, tc.mode, tc.id, tc.mode == ua.MessageSecurityModeNone)
			c, err := uaclient.Connect(ctx, cfg)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			id := c.SessionID()
			if _, ok := tc.id.(uaclient.X509); ok && srv.x509ReactivateErr != "" {
				_, err := uaclient.Reactivate(ctx, cfg, c.Detach(ctx))
				if err == nil || err.Error() != srv.x509ReactivateErr {
					t.Fatalf("Reactivate: %v, want the server's known refusal %s", err, srv.x509ReactivateErr)
				}
				return
			}
			// Twice: each ActivateSession signs the nonce of the one
			// before, which the client must have kept.
			for round := range 2 {
				old := c.Channel()
				s := c.Detach(ctx)
				if s == nil {
					t.Fatal("Detach returned no session")
				}
				select {
				case <-old.Done():
				case <-time.After(5 * time.Second):
					t.Fatal("the detached channel is still open")
				}
				if _, err := c.Send(ctx, &ua.ReadRequest{}); !errors.Is(err, uasc.ErrChannelClosed) {
					t.Errorf("Send after Detach: %v, want %v", err, uasc.ErrChannelClosed)
				}
				if c.Detach(ctx) != nil {
					t.Error("a second Detach returned a session")
				}
				c, err = uaclient.Reactivate(ctx, cfg, s)
				if err != nil {
					t.Fatalf("round %d: Reactivate: %v", round, err)
				}
				if !c.SessionID().Equal(id) {
					t.Errorf("round %d: session %s after Reactivate, want %s", round, c.SessionID(), id)
				}
				if c.Channel() == old || c.Channel().Stats().ChannelID == old.Stats().ChannelID {
					t.Errorf("round %d: Reactivate did not open a new channel", round)
				}
				readCounter(ctx, t, c, srv)
			}
			last := c.Detach(ctx)
			c, err = uaclient.Reactivate(ctx, cfg, last)
			if err != nil {
				t.Fatalf("Reactivate: %v", err)
			}
			if err := c.Close(ctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			// Close deleted the session on the server.
			_, err = uaclient.Reactivate(ctx, cfg, last)
			want := "activate session: BadSessionIdInvalid (0x80250000)"
			if err == nil || err.Error() != want {
				t.Errorf("Reactivate after Close: %v, want %s", err, want)
			}
		})
	}
}

// testLostConnection is the recovery layer's case: the connection dies
// under the session, which moves to a new channel with what it had.
func testLostConnection(t *testing.T, cl client, srv *server) {
	ctx := testkit.StepContext(t, testTimeout)
	proxy := faultproxy.Start(t, strings.TrimPrefix(srv.endpoint, "opc.tcp://"))
	cfg := cl.config(t, srv, basic256Sha256, ua.MessageSecurityModeSignAndEncrypt,
		uaclient.UserName{User: srv.user, Password: []byte(srv.password)}, false)
	cfg.Channel.Endpoint = "opc.tcp://" + proxy.Addr()
	c, err := uaclient.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	before := readCounter(ctx, t, c, srv)
	proxy.Cut()
	select {
	case <-c.Channel().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the channel did not notice the reset connection")
	}
	if c.Channel().Err() == nil {
		t.Error("the channel is done without an error after a reset")
	}
	began := time.Now()
	s := c.Detach(ctx)
	if took := time.Since(began); took > time.Second {
		t.Errorf("Detach of a dead channel took %v", took)
	}
	c2, err := uaclient.Reactivate(ctx, cfg, s)
	if err != nil {
		t.Fatalf("Reactivate: %v", err)
	}
	defer c2.Close(ctx)
	if !c2.SessionID().Equal(s.ID()) {
		t.Errorf("session %s after Reactivate, want %s", c2.SessionID(), s.ID())
	}
	if after := readCounter(ctx, t, c2, srv); after < before {
		t.Errorf("counter %d after Reactivate, %d before", after, before)
	}
	if got := proxy.Accepted(); got != 2 {
		t.Errorf("%d connections through the proxy, want 2 (one per channel)", got)
	}
}

func testClose(t *testing.T, cl client, srv *server) {
	t.Run("with a cancelled context", func(t *testing.T) {
		cfg := cl.config(t, srv, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, uaclient.Anonymous{}, false)
		c, err := uaclient.Connect(testkit.StepContext(t, testTimeout), cfg)
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		s := c.Detach(testkit.StepContext(t, testTimeout))
		if c, err = uaclient.Reactivate(testkit.StepContext(t, testTimeout), cfg, s); err != nil {
			t.Fatalf("Reactivate: %v", err)
		}
		// Shutdown: the context is done, the session is still closed.
		done, cancel := context.WithCancel(t.Context())
		cancel()
		if err := c.Close(done); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := c.Close(testkit.StepContext(t, testTimeout)); !errors.Is(err, uaclient.ErrClosed) {
			t.Errorf("second Close: %v, want %v", err, uaclient.ErrClosed)
		}
		_, err = uaclient.Reactivate(testkit.StepContext(t, testTimeout), cfg, s)
		if want := "activate session: BadSessionIdInvalid (0x80250000)"; err == nil || err.Error() != want {
			t.Errorf("Reactivate after Close: %v, want %s", err, want)
		}
	})
	t.Run("server silent", func(t *testing.T) {
		proxy := faultproxy.Start(t, strings.TrimPrefix(srv.endpoint, "opc.tcp://"))
		cfg := cl.config(t, srv, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, uaclient.Anonymous{}, false)
		cfg.Channel.Endpoint = "opc.tcp://" + proxy.Addr()
		c, err := uaclient.Connect(testkit.StepContext(t, testTimeout), cfg)
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		proxy.Freeze()
		defer proxy.Thaw()
		began := time.Now()
		err = c.Close(t.Context()) // no deadline of its own
		took := time.Since(began)
		if err == nil || !strings.HasPrefix(err.Error(), "close session: ") {
			t.Errorf("Close: %v, want a close session error", err)
		}
		// CloseSession's and the channel close's bounds, and some slack.
		if took > 6*time.Second {
			t.Errorf("Close took %v with a silent server", took)
		}
	})
}
