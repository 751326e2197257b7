package uaclient_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
	"github.com/tagbridge/tagbridge/collectors/opcua/uasc"
	"github.com/tagbridge/tagbridge/collectors/opcua/uatcp"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/open62541/o62proc"
)

// TestSessionsECC: every non-AEAD NIST ECC policy × mode × identity against
// open62541, with a value read in each session; a username session moved
// to a new channel (a fresh ephemeral key for its password); a wrong
// password refused; a certificate of the other curve refused before any
// traffic.
func TestSessionsECC(t *testing.T) {
	o := o62proc.Start(t, o62proc.Options{
		Policies: []string{"None", "ECC_nistP256", "ECC_nistP384", "ECC_curve25519", "ECC_nistP256_AesGcm", "ECC_nistP256_ChaChaPoly"},
		User:     "integrations", Password: "integrations-pw-9c1e",
	})
	srv := &server{endpoint: o.Endpoint, user: "integrations", password: "integrations-pw-9c1e",
		closedSessions: func() int { return o.Count(regexp.MustCompile(`\| Closing the Session`)) },
		appNamespace:   "urn:peers:open62541:server", counter: ua.MustParseNodeID("ns=1;s=Tag0002")}
	eps, err := uaclient.GetEndpoints(testkit.StepContext(t, testTimeout), srv.endpoint, uatcp.DefaultLimits(), testkit.TestLogger(t))
	if err != nil {
		t.Fatalf("GetEndpoints: %v", err)
	}
	srv.eps = eps
	rsaUser, _ := keyPair(t, "uaclient-ecc-rsa-user", certs.KeyTypeRSA)
	curves := []struct {
		policy, keyType, keyName string
	}{
		{"ECC_nistP256", certs.KeyTypeNistP256, "a P-256"},
		{"ECC_nistP384", certs.KeyTypeNistP384, "a P-384"},
		{"ECC_curve25519", certs.KeyTypeEd25519, "an Ed25519"},
		{"ECC_nistP256_AesGcm", certs.KeyTypeNistP256, "a P-256"},
		{"ECC_nistP256_ChaChaPoly", certs.KeyTypeNistP256, "a P-256"},
	}
	for _, curve := range curves {
		app, appURI := keyPair(t, "uaclient-ecc-"+curve.keyType, curve.keyType)
		user, _ := keyPair(t, "uaclient-ecc-user-"+curve.keyType, curve.keyType)
		cl := client{app: app, appURI: appURI}
		identities := []struct {
			name string
			id   uaclient.Identity
		}{
			{"anonymous", uaclient.Anonymous{}},
			{"username", uaclient.UserName{User: srv.user, Password: []byte(srv.password)}},
			{"X.509 user " + curve.keyType, uaclient.X509{KeyPair: user}},
		}
		t.Run(curve.policy+"/RSA user certificate refused", func(t *testing.T) {
			// The endpoint's certificate token policy is the channel's ECC
			// policy: open62541 could not check an RSA signature under it.
			_, err := uaclient.Connect(testkit.StepContext(t, testTimeout), cl.config(t, srv, uriPrefix+curve.policy, ua.MessageSecurityModeSign, uaclient.X509{KeyPair: rsaUser}, false))
			want := "activate session: user certificate for user token policy \"open62541-certificate-policy-sign#" + curve.policy +
				"\": RSA 2048-bit key, policy " + curve.policy + " needs " + curve.keyName + " key"
			if err == nil || err.Error() != want {
				t.Fatalf("Connect: %v, want %q", err, want)
			}
		})
		for _, mode := range []ua.MessageSecurityMode{ua.MessageSecurityModeSign, ua.MessageSecurityModeSignAndEncrypt} {
			for _, id := range identities {
				t.Run(curve.policy+" "+modeName(mode)+"/"+id.name, func(t *testing.T) {
					ctx := testkit.StepContext(t, testTimeout)
					c, err := uaclient.Connect(ctx, cl.config(t, srv, uriPrefix+curve.policy, mode, id.id, false))
					if err != nil {
						t.Fatalf("Connect: %v", err)
					}
					if ns := c.Namespaces(); len(ns) < 2 || ns[1] != srv.appNamespace {
						t.Errorf("namespaces %q", ns)
					}
					first := readCounter(ctx, t, c, srv)
					t.Logf("%s: Tag0002 = %d", c.Channel().Policy().Name(), first)
					if err := c.Close(ctx); err != nil {
						t.Fatalf("Close: %v", err)
					}
				})
			}
		}
		t.Run(curve.policy+"/username reactivated on a new channel", func(t *testing.T) {
			ctx := testkit.StepContext(t, testTimeout)
			cfg := cl.config(t, srv, uriPrefix+curve.policy, ua.MessageSecurityModeSignAndEncrypt,
				uaclient.UserName{User: srv.user, Password: []byte(srv.password)}, false)
			c, err := uaclient.Connect(ctx, cfg)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			readCounter(ctx, t, c, srv)
			s := c.Detach(ctx)
			c2, err := uaclient.Reactivate(ctx, cfg, s)
			if err != nil {
				t.Fatalf("Reactivate: %v", err)
			}
			readCounter(ctx, t, c2, srv)
			if err := c2.Close(ctx); err != nil {
				t.Fatal(err)
			}
		})
		t.Run(curve.policy+"/wrong password", func(t *testing.T) {
			ctx := testkit.StepContext(t, testTimeout)
			_, err := uaclient.Connect(ctx, cl.config(t, srv, uriPrefix+curve.policy, ua.MessageSecurityModeSignAndEncrypt,
				uaclient.UserName{User: srv.user, Password: []byte("not-the-pw")}, false))
			if want := "activate session: BadUserAccessDenied (0x801F0000)"; err == nil || err.Error() != want {
				t.Fatalf("Connect: %v, want %q", err, want)
			}
		})
	}
	t.Run("P-256 certificate, ECC_nistP384", func(t *testing.T) {
		app, appURI := keyPair(t, "uaclient-ecc-mismatch", certs.KeyTypeNistP256)
		cl := client{app: app, appURI: appURI}
		_, err := uaclient.Connect(testkit.StepContext(t, testTimeout), cl.config(t, srv, uriPrefix+"ECC_nistP384", ua.MessageSecurityModeSign, uaclient.Anonymous{}, false))
		want := "open secure channel: security policy ECC_nistP384: local certificate: P-256 key, policy ECC_nistP384 needs a P-384 key"
		if err == nil || err.Error() != want {
			t.Fatalf("Connect: %v, want %q", err, want)
		}
	})
	t.Run("server certificate of the other curve", func(t *testing.T) {
		app, appURI := keyPair(t, "uaclient-ecc-p256", certs.KeyTypeNistP256)
		cl := client{app: app, appURI: appURI}
		cfg := cl.config(t, srv, uriPrefix+"ECC_nistP256", ua.MessageSecurityModeSign, uaclient.Anonymous{}, false)
		for _, ep := range srv.eps {
			if ep.SecurityPolicyURI == uriPrefix+"ECC_nistP384" {
				cfg.Channel.RemoteCertificate = ep.ServerCertificate
			}
		}
		_, err := uaclient.Connect(testkit.StepContext(t, testTimeout), cfg)
		want := "open secure channel: security policy ECC_nistP256: server certificate: P-384 key, policy ECC_nistP256 needs a P-256 key"
		if err == nil || err.Error() != want {
			t.Fatalf("Connect: %v, want %q", err, want)
		}
		if errors.Is(err, uasc.ErrChannelClosed) || strings.Contains(err.Error(), "Bad") {
			t.Fatalf("refused by the server, not before: %v", err)
		}
	})
}

// TestRenewalsECC keeps a session on each curve under 3 s tokens: every
// renewal brings new ephemeral keys, and reads go on without a gap.
func TestRenewalsECC(t *testing.T) {
	const run = 15 * time.Second
	for _, curve := range []struct{ policy, keyType string }{
		{"ECC_nistP256", certs.KeyTypeNistP256},
		{"ECC_nistP384", certs.KeyTypeNistP384},
		{"ECC_curve25519", certs.KeyTypeEd25519},
		{"ECC_nistP256_AesGcm", certs.KeyTypeNistP256}, // renewals chain the key material (IKM)
		{"ECC_nistP256_ChaChaPoly", certs.KeyTypeNistP256},
	} {
		t.Run(curve.policy, func(t *testing.T) {
			t.Parallel()
			o := o62proc.Start(t, o62proc.Options{Policies: []string{"None", curve.policy}, TokenLifetime: 3 * time.Second, Interval: 200 * time.Millisecond})
			srv := &server{endpoint: o.Endpoint, counter: ua.MustParseNodeID("ns=1;s=Tag0002")}
			eps, err := uaclient.GetEndpoints(testkit.StepContext(t, testTimeout), srv.endpoint, uatcp.DefaultLimits(), testkit.TestLogger(t))
			if err != nil {
				t.Fatalf("GetEndpoints: %v", err)
			}
			srv.eps = eps
			app, appURI := keyPair(t, "uaclient-renew-"+curve.keyType, curve.keyType)
			cl := client{app: app, appURI: appURI}
			cfg := cl.config(t, srv, uriPrefix+curve.policy, ua.MessageSecurityModeSignAndEncrypt, uaclient.Anonymous{}, false)
			cfg.Channel.Lifetime = 3 * time.Second
			ctx := testkit.StepContext(t, testTimeout)
			c, err := uaclient.Connect(ctx, cfg)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			defer c.Close(ctx)
			last, reads := readCounter(ctx, t, c, srv), 0
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for end := time.Now().Add(run); time.Now().Before(end); <-tick.C {
				v := readCounter(ctx, t, c, srv) // fails the test on any error
				if v < last {
					t.Fatalf("Tag0002 went back from %d to %d", last, v)
				}
				last, reads = v, reads+1
			}
			st := c.Channel().Stats()
			renewed := o.Count(regexp.MustCompile(`Channel renewed`))
			t.Logf("%s: %d reads, %d renewals (server logged %d), %d failures, last value %d", curve.policy, reads, st.Renewals, renewed, st.RenewalFailures, last)
			if min := int(run / (3 * time.Second)); st.Renewals < min || renewed < min || st.RenewalFailures != 0 {
				t.Fatalf("%d renewals, server logged %d, %d failures; want at least %d and none failed", st.Renewals, renewed, st.RenewalFailures, min)
			}
		})
	}
}
