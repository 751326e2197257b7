package agent

import (
	"context"
	"net/url"
	"time"

	"github.com/tagbridge/tagbridge/agent/statusapi"
	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/collectors/opcua"
	"github.com/tagbridge/tagbridge/config"
)

// Certificates lists what the running PLC entries depend on, read from the
// files at each call: the agent's certificate, the user certificate, and
// the trust store (the PLC's own certificate, CAs, CRLs).
func (s statusSource) Certificates() []statusapi.Certificate { return s.a.certificates() }

func (a *Agent) certificates() []statusapi.Certificate {
	a.mu.Lock()
	var plcs []config.PLC
	for _, g := range a.groups {
		plcs = append(plcs, g.plcs...)
	}
	a.mu.Unlock()
	servers := map[string]string{} // plc -> the server certificate's fingerprint
	for _, t := range a.Trackers() {
		for _, st := range t.Snapshot() {
			servers[st.PLC] = opcua.LinkOf(st).ServerFingerprint
		}
	}
	var out []statusapi.Certificate
	add := func(plc string, e certs.Expiry) { out = append(out, statusapi.Certificate{PLC: plc, Expiry: e}) }
	for _, p := range plcs {
		if p.Security.Policy == "" || p.Security.Policy == "None" {
			continue
		}
		if e, err := certs.CertificateExpiry("agent", p.Security.CertificateFile); err == nil {
			add(p.Name, e)
		}
		if p.Auth.CertificateFile != "" {
			if e, err := certs.CertificateExpiry("user", p.Auth.CertificateFile); err == nil {
				add(p.Name, e)
			}
		}
		hosts := append([]string{endpointHost(p.Endpoint)}, p.Security.AcceptedHostnames...)
		for _, e := range certs.StoreExpiries(p.Security.PKIDir, servers[p.Name], hosts...) {
			add(p.Name, e)
		}
	}
	return out
}

// expiryCheck is how often the certificates are looked at for warnings.
const expiryCheck = 12 * time.Hour

// watchExpiry logs a Warn for each certificate (or CRL) that runs out
// within statusapi.ExpiryWarning, or has run out: at start, then twice a
// day, until ctx ends.
func (a *Agent) watchExpiry(ctx context.Context) {
	t := time.NewTicker(expiryCheck)
	defer t.Stop()
	for {
		now := time.Now()
		for _, c := range a.certificates() {
			left := c.NotAfter.Sub(now)
			if left >= statusapi.ExpiryWarning {
				continue
			}
			ev := a.log.Warn().Str("plc", c.PLC).Str("role", c.Role).Str("subject", c.Subject).Str("file", c.File).
				Time("not_after", c.NotAfter).Int("days_left", int(left.Hours()/24))
			switch {
			case left <= 0:
				ev.Msg("certificate expired: connections that depend on it fail")
			case c.Role == certs.RoleCRL:
				ev.Msg("CRL next update due soon: put its successor into the trust store before then")
			case c.Role == "agent" || c.Role == "user":
				ev.Msg("certificate expires soon: tagbridge certs renew, then import the new certificate into the PLC")
			default:
				ev.Msg("certificate expires soon: the PLC needs a new one, trusted again in the trust store")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startExpiryWatch runs watchExpiry until the returned stop is called.
func (a *Agent) startExpiryWatch(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.watchExpiry(ctx)
	}()
	return func() { cancel(); <-done }
}

// endpointHost is the host of an opc.tcp URL, "" if it has none.
func endpointHost(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return ""
	}
	return u.Hostname()
}
