package peerproc

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

const clientURI = "urn:tagbridge:peerproc-test"

// identity is a client's application instance certificate and key.
type identity struct {
	cert []byte // DER
	key  *rsa.PrivateKey
}

// newIdentity makes a self-signed client certificate the way OPC UA wants
// it (gopcua's examples/crypto does the same): URI SAN, key usages for
// signing and encryption, client and server auth.
func newIdentity(t testing.TB, uri string) identity {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "peerproc test client", Organization: []string{"tagbridge"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment |
			x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		URIs:                  []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return identity{cert: der, key: key}
}

// session describes how a test client connects.
type session struct {
	policy string // short name: None, Basic256Sha256, ...
	mode   ua.MessageSecurityMode
	auth   ua.UserTokenType
	user   string
	pass   string
	id     identity // application instance certificate, for secured channels
	userID identity // X.509 user token
	// lifetime is the token lifetime to ask for; 0 asks for gopcua's
	// default of 1 h.
	lifetime time.Duration
}

// dial connects to the peer: GetEndpoints, the endpoint with exactly the
// policy and mode, and a session with the user token. The client is closed
// at cleanup.
func dial(t testing.TB, p *Peer, s session) (*opcua.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var lifetime []opcua.Option
	if s.lifetime != 0 {
		lifetime = append(lifetime, opcua.Lifetime(s.lifetime))
	}
	eps, err := opcua.GetEndpoints(ctx, p.Endpoint, lifetime...)
	if err != nil {
		t.Fatalf("GetEndpoints: %v", err)
	}
	ep, err := opcua.SelectEndpoint(eps, ua.SecurityPolicyURIPrefix+s.policy, s.mode)
	if err != nil {
		t.Fatalf("SelectEndpoint %s %s: %v", s.policy, s.mode, err)
	}
	if ep.EndpointURL != p.Endpoint {
		t.Fatalf("peer advertises endpoint %q, want the READY URL %q", ep.EndpointURL, p.Endpoint)
	}
	opts := []opcua.Option{
		opcua.SecurityFromEndpoint(ep, s.auth),
		opcua.AutoReconnect(false),
		opcua.ApplicationURI(clientURI),
	}
	opts = append(opts, lifetime...)
	if s.id.key != nil {
		opts = append(opts, opcua.Certificate(s.id.cert), opcua.PrivateKey(s.id.key))
	}
	switch s.auth {
	case ua.UserTokenTypeAnonymous:
		opts = append(opts, opcua.AuthAnonymous())
	case ua.UserTokenTypeUserName:
		opts = append(opts, opcua.AuthUsername(s.user, s.pass))
	case ua.UserTokenTypeCertificate:
		opts = append(opts, opcua.AuthCertificate(s.userID.cert), opcua.AuthPrivateKey(s.userID.key))
	}
	c, err := opcua.NewClient(ep.EndpointURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c, nil
}

func mustDial(t testing.TB, p *Peer, s session) *opcua.Client {
	t.Helper()
	c, err := dial(t, p, s)
	if err != nil {
		t.Fatalf("connect %s %s %s: %v", s.policy, s.mode, s.auth, err)
	}
	return c
}

func read(t testing.TB, c *opcua.Client, nodes ...*ua.NodeID) []*ua.DataValue {
	t.Helper()
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth}
	for _, n := range nodes {
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDValue})
	}
	res, err := c.Read(t.Context(), req)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	for i, r := range res.Results {
		if r.Status != ua.StatusOK {
			t.Fatalf("read %s: %v", nodes[i], r.Status)
		}
	}
	return res.Results
}

var allPolicies = []string{"None", "Basic128Rsa15", "Basic256", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"}

// TestPeer runs one peer with every policy, anonymous, user name and X.509
// users and 3 s tokens, and connects to it in every way.
func TestPeer(t *testing.T) {
	p := Start(t, Options{
		Tags:          8,
		Interval:      200 * time.Millisecond,
		Start:         1000,
		Policies:      allPolicies,
		Users:         map[string]string{"operator": "s3cret"},
		X509Users:     true,
		TokenLifetime: 3 * time.Second,
	})
	t.Logf("peer %s ready after %s", p.Endpoint, p.StartupTime)
	client := newIdentity(t, clientURI)

	t.Run("endpoints", func(t *testing.T) {
		eps, err := opcua.GetEndpoints(t.Context(), p.Endpoint)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ep := range eps {
			var tokens []string
			for _, tok := range ep.UserIdentityTokens {
				tokens = append(tokens, strings.TrimPrefix(tok.TokenType.String(), "UserTokenType"))
			}
			got = append(got, strings.TrimPrefix(ep.SecurityPolicyURI, ua.SecurityPolicyURIPrefix)+"/"+
				strings.TrimPrefix(ep.SecurityMode.String(), "MessageSecurityMode")+" "+strings.Join(tokens, ","))
		}
		if len(eps) != 1+2*(len(allPolicies)-1) {
			t.Errorf("%d endpoints, want %d:\n%s", len(eps), 1+2*(len(allPolicies)-1), strings.Join(got, "\n"))
		}
		t.Logf("endpoints:\n%s", strings.Join(got, "\n"))
	})

	t.Run("none anonymous read", func(t *testing.T) {
		c := mustDial(t, p, session{policy: "None", mode: ua.MessageSecurityModeNone, auth: ua.UserTokenTypeAnonymous})
		nodes := []*ua.NodeID{
			ua.MustParseNodeID("ns=1;s=Double.0000"),
			ua.MustParseNodeID("ns=1;s=Int32.0001"),
			ua.MustParseNodeID("ns=1;s=Boolean.0002"),
			ua.MustParseNodeID("ns=1;s=String.0003"),
			ua.MustParseNodeID("ns=1;s=Int32.0005"),
		}
		dv := read(t, c, nodes...)
		n, ok := dv[1].Value.Value().(int32)
		if !ok || n < 1000 {
			t.Fatalf("Int32.0001 = %v (%T), want an int32 >= 1000", dv[1].Value.Value(), dv[1].Value.Value())
		}
		if _, ok := dv[0].Value.Value().(float64); !ok {
			t.Errorf("Double.0000 is a %T", dv[0].Value.Value())
		}
		if _, ok := dv[2].Value.Value().(bool); !ok {
			t.Errorf("Boolean.0002 is a %T", dv[2].Value.Value())
		}
		if s, ok := dv[3].Value.Value().(string); !ok || !strings.HasPrefix(s, "v") {
			t.Errorf("String.0003 = %v", dv[3].Value.Value())
		}
		if dv[1].SourceTimestamp.IsZero() || dv[1].ServerTimestamp.IsZero() {
			t.Errorf("Int32.0001 has no source or server timestamp: %+v", dv[1])
		}
		// The namespace is plcsim's, at index 1.
		ns := read(t, c, ua.NewNumericNodeID(0, id.Server_NamespaceArray))[0].Value.Value().([]string)
		if len(ns) < 2 || ns[1] != "urn:tagbridge:plcsim" {
			t.Errorf("namespace array %q, want urn:tagbridge:plcsim at index 1", ns)
		}
	})

	t.Run("every policy and mode", func(t *testing.T) {
		for _, policy := range allPolicies[1:] {
			for _, mode := range []ua.MessageSecurityMode{ua.MessageSecurityModeSign, ua.MessageSecurityModeSignAndEncrypt} {
				t.Run(policy+"/"+strings.TrimPrefix(mode.String(), "MessageSecurityMode"), func(t *testing.T) {
					c := mustDial(t, p, session{policy: policy, mode: mode, auth: ua.UserTokenTypeAnonymous, id: client})
					if v, ok := read(t, c, ua.MustParseNodeID("ns=1;s=Int32.0001"))[0].Value.Value().(int32); !ok || v < 1000 {
						t.Errorf("Int32.0001 = %v", v)
					}
				})
			}
		}
	})

	t.Run("client certificate trusted", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join(p.PKIDir, "trusted", "certs", "*"))
		if len(files) == 0 {
			t.Errorf("no client certificate in %s/trusted/certs", p.PKIDir)
		}
	})

	t.Run("Basic256Sha256 SignAndEncrypt user name subscription", func(t *testing.T) {
		c := mustDial(t, p, session{
			policy: "Basic256Sha256", mode: ua.MessageSecurityModeSignAndEncrypt,
			auth: ua.UserTokenTypeUserName, user: "operator", pass: "s3cret", id: client,
		})
		ctx := t.Context()
		notes := make(chan *opcua.PublishNotificationData, 64)
		sub, err := c.Subscribe(ctx, &opcua.SubscriptionParameters{Interval: 50 * time.Millisecond}, notes)
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		// Sampling interval 0 (the default here): every change is reported.
		res, err := sub.Monitor(ctx, ua.TimestampsToReturnBoth,
			opcua.NewMonitoredItemCreateRequestWithDefaults(ua.MustParseNodeID("ns=1;s=Int32.0001"), ua.AttributeIDValue, 1))
		if err != nil || res.Results[0].StatusCode != ua.StatusOK {
			t.Fatalf("monitor: %v %v", err, res)
		}
		var got []int32
		timeout := time.After(15 * time.Second)
		for len(got) < 12 {
			select {
			case n := <-notes:
				if n.Error != nil {
					t.Fatalf("notification: %v", n.Error)
				}
				dc, ok := n.Value.(*ua.DataChangeNotification)
				if !ok {
					continue
				}
				for _, item := range dc.MonitoredItems {
					got = append(got, item.Value.Value.Value().(int32))
				}
			case <-timeout:
				t.Fatalf("%d values within 15s: %v", len(got), got)
			}
		}
		for i := 1; i < len(got); i++ {
			if got[i] != got[i-1]+1 {
				t.Fatalf("counter values %v: not one per change", got)
			}
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		_, err := dial(t, p, session{
			policy: "Basic256Sha256", mode: ua.MessageSecurityModeSignAndEncrypt,
			auth: ua.UserTokenTypeUserName, user: "operator", pass: "wrong", id: client,
		})
		if err == nil {
			t.Fatal("connected with a wrong password")
		}
		t.Logf("wrong password: %v", err)
	})

	t.Run("X.509 user", func(t *testing.T) {
		c := mustDial(t, p, session{
			policy: "Aes128_Sha256_RsaOaep", mode: ua.MessageSecurityModeSign,
			auth: ua.UserTokenTypeCertificate, id: client, userID: newIdentity(t, "urn:tagbridge:peerproc-user"),
		})
		read(t, c, ua.MustParseNodeID("ns=1;s=Int32.0001"))
	})

	t.Run("token lifetime", func(t *testing.T) {
		mark := len(p.Log())
		c := mustDial(t, p, session{policy: "Basic256Sha256", mode: ua.MessageSecurityModeSign, auth: ua.UserTokenTypeAnonymous, id: client})
		// The peer logs every token it hands out; the session's channel
		// is the last one issued a token since the mark.
		issued := regexp.MustCompile(`token: channel (\d+) token 1 Issue requested (\d+) ms revised (\d+) ms`).FindAllStringSubmatch(p.Log()[mark:], -1)
		if len(issued) == 0 {
			t.Fatalf("no token issued in the peer's log:\n%s", p.Log()[mark:])
		}
		first := issued[len(issued)-1]
		if first[2] != "3600000" || first[3] != "3000" {
			t.Errorf("first token: requested %s ms, revised %s ms; want 3600000 (gopcua's 1 h) revised to 3000", first[2], first[3])
		}
		// gopcua renews at 75 % of the lifetime: after about 2.25 s and 4.5 s.
		lines := p.WaitLog(regexp.MustCompile(`token: channel `+first[1]+` token \d+ Renew requested \d+ ms revised 3000 ms`), 2, 15*time.Second)
		t.Logf("channel %s renewals:\n%s", first[1], strings.Join(lines, "\n"))
		read(t, c, ua.MustParseNodeID("ns=1;s=Int32.0001")) // still usable after renewals
	})
}

// TestClockOffset runs the peer 2 hours behind under libfaketime (and
// checks MaxSessions on the way).
//
// gopcua v0.9.1 drops a security token at the server's CreatedAt plus 1.25
// times its lifetime (uasc.scheduleExpiration): with the server's clock 2 h
// behind, a token of the default 10 min is dropped as soon as it arrives
// and every request times out. So this client asks for, and the peer
// grants, a 3 h token.
func TestClockOffset(t *testing.T) {
	p := Start(t, Options{
		Tags:          4,
		Policies:      []string{"None", "Basic256Sha256"},
		Modes:         []string{"None", "SignAndEncrypt"},
		ClockOffset:   -2 * time.Hour,
		TokenLifetime: 3 * time.Hour,
		MaxSessions:   1,
	})
	t.Logf("peer %s (faketime -2h) ready after %s", p.Endpoint, p.StartupTime)

	// node-opcua takes a client certificate that is valid from 1 h ago,
	// although by its clock that is 1 h in the future.
	c := mustDial(t, p, session{
		policy: "Basic256Sha256", mode: ua.MessageSecurityModeSignAndEncrypt, auth: ua.UserTokenTypeAnonymous,
		id: newIdentity(t, clientURI), lifetime: 3 * time.Hour,
	})
	dv := read(t, c, ua.NewNumericNodeID(0, id.Server_ServerStatus_CurrentTime), ua.MustParseNodeID("ns=1;s=Int32.0001"))
	now := time.Now()
	server, ok := dv[0].Value.Value().(time.Time)
	if !ok {
		t.Fatalf("CurrentTime is a %T", dv[0].Value.Value())
	}
	if d := server.Sub(now); d < -2*time.Hour-time.Minute || d > -2*time.Hour+time.Minute {
		t.Errorf("server time %s is %s from ours, want about -2h", server, d)
	}
	if d := dv[1].SourceTimestamp.Sub(now); d < -2*time.Hour-time.Minute || d > -2*time.Hour+time.Minute {
		t.Errorf("source timestamp %s is %s from ours, want about -2h", dv[1].SourceTimestamp, d)
	}
	// MaxSessions: 1, and that one is taken.
	if _, err := dial(t, p, session{policy: "None", mode: ua.MessageSecurityModeNone, auth: ua.UserTokenTypeAnonymous, lifetime: 3 * time.Hour}); err == nil {
		t.Error("a second session was created with MaxSessions 1")
	} else {
		t.Logf("second session: %v", err)
	}

	// Timers run on the real clock: the counter still changes every 100ms.
	before := dv[1].Value.Value().(int32)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
	for {
		v := read(t, c, ua.MustParseNodeID("ns=1;s=Int32.0001"))[0].Value.Value().(int32)
		if v >= before+3 {
			break
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("counter went from %d to %d in 5s", before, v)
		}
	}
}

// TestCheck fails, rather than skips, when the peer is not installed; here it
// is, as scripts/test installs it.
func TestCheck(t *testing.T) {
	if err := Check(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(Dir(), "server.js")); err != nil {
		t.Fatal(err)
	}
}

// TestCertificateAndTrust gives the peer a certificate made here and makes
// it require trust: an unknown client is refused and its certificate lands
// in rejected/; moved to trusted/certs, it gets in without a restart, and
// still after one.
func TestCertificateAndTrust(t *testing.T) {
	dir := t.TempDir()
	server := newIdentity(t, "urn:tagbridge:peerproc-server")
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	pkcs8, err := x509.MarshalPKCS8PrivateKey(server.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.cert}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	p := Start(t, Options{
		Tags:           4,
		Policies:       []string{"Basic256Sha256"},
		Modes:          []string{"SignAndEncrypt"},
		CertFile:       certFile,
		KeyFile:        keyFile,
		ApplicationURI: "urn:tagbridge:peerproc-server",
		RequireTrust:   true,
	})
	eps, err := opcua.GetEndpoints(t.Context(), p.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range eps {
		if !bytes.Equal(ep.ServerCertificate, server.cert) {
			t.Fatalf("endpoint %s %s serves another certificate", ep.SecurityPolicyURI, ep.SecurityMode)
		}
		if ep.Server.ApplicationURI != "urn:tagbridge:peerproc-server" {
			t.Errorf("ApplicationURI %q", ep.Server.ApplicationURI)
		}
	}

	client := newIdentity(t, clientURI)
	s := session{policy: "Basic256Sha256", mode: ua.MessageSecurityModeSignAndEncrypt, auth: ua.UserTokenTypeAnonymous, id: client}
	if _, err := dial(t, p, s); err == nil {
		t.Fatal("an untrusted client certificate got in")
	} else {
		t.Logf("untrusted client: %v", err)
	}
	rejected, _ := filepath.Glob(filepath.Join(p.PKIDir, "rejected", "*.pem")) // node-opcua: rejected/, not rejected/certs
	if len(rejected) != 1 {
		t.Fatalf("rejected/ holds %q, want the client's certificate", rejected)
	}
	trusted := filepath.Join(p.PKIDir, "trusted", "certs", filepath.Base(rejected[0]))
	if err := os.Rename(rejected[0], trusted); err != nil {
		t.Fatal(err)
	}
	// node-opcua watches the folders; give it a moment to notice.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := dial(t, p, s)
		if err == nil {
			read(t, c, ua.MustParseNodeID("ns=1;s=Int32.0001"))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trusted client still refused after 10s: %v", err)
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-t.Context().Done():
			return
		}
	}

	// Restarted on the same port with the same PKI folder, it still trusts
	// the client.
	endpoint := p.Endpoint
	p.Restart()
	if p.Endpoint != endpoint {
		t.Errorf("restarted on %s, want %s", p.Endpoint, endpoint)
	}
	read(t, mustDial(t, p, s), ua.MustParseNodeID("ns=1;s=Int32.0001"))
}
