package publish

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/config"
)

// tlsConfig loads the TLS files through g, which checks each file actually
// opened against the allowed directories (a symlink swapped after the
// configuration was loaded cannot lead outside them).
func tlsConfig(c config.TLS, g certs.Guard) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify, // #nosec G402 -- an explicit, logged choice
	}
	if c.CAFile != "" {
		pem, err := g.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate found", c.CAFile)
		}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		certPEM, err := g.ReadFile(c.CertFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file: %w", err)
		}
		keyPEM, err := g.ReadKeyFile(c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("key_file: %w", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (p *Publisher) linkUp() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.isUp
}

// notify follows the connection. paho calls it synchronously for connecting
// and failed attempts, in a new goroutine for connected and lost.
func (p *Publisher) notify(c mqtt.Client, n mqtt.ConnectionNotification) {
	select {
	case <-p.done:
		return // an abandoned attempt finishing after Run: nothing to tell
	default:
	}
	switch n := n.(type) {
	case mqtt.ConnectionNotificationConnecting:
		p.connectAttempts.Add(1)
		// Hold the attempt until Run is out of Publish: a message handed
		// over now would go out first on the new connection, ahead of the
		// resent ones.
		p.mu.Lock()
		p.down()
		for p.publishing {
			p.idle.Wait()
		}
		p.lists, p.stored, _ = p.store.State()
		p.mu.Unlock()
		p.log.Debug().Int("attempt", n.Attempt).Bool("reconnect", n.IsReconnect).Msg("connecting to broker")
	case mqtt.ConnectionNotificationFailed:
		p.mu.Lock()
		first := n.Reason.Error() != p.lastErr
		p.lastErr = n.Reason.Error()
		p.mu.Unlock()
		switch {
		case !first:
		case errors.Is(n.Reason, packets.ErrorRefusedBadUsernameOrPassword), errors.Is(n.Reason, packets.ErrorRefusedNotAuthorised):
			p.log.Warn().Err(n.Reason).Msg("broker refused the credentials (mqtt.username and password); retrying")
		default:
			p.log.Warn().Err(n.Reason).Msg("cannot connect to broker; retrying")
		}
	case mqtt.ConnectionNotificationConnected:
		p.connects.Add(1)
		p.mu.Lock()
		p.lastErr = ""
		p.resent.Add(uint64(p.stored))
		p.mu.Unlock()
		p.log.Info().Msg("connected to broker")
		if err := p.format.SessionStarted(); err != nil {
			p.log.Error().Err(err).Msg("cannot store the session state: the next start may repeat it")
		}
		p.subscribeCommands(c)
		p.subscribeWrites(c)
		p.resumed(c)
	case mqtt.ConnectionNotificationLost:
		p.store.ResumeAll()
		p.mu.Lock()
		if !c.IsConnectionOpen() {
			p.down()
		}
		p.mu.Unlock()
		p.log.Warn().Err(n.Reason).Msg("connection to broker lost; reconnecting")
	}
}

// refused, before a reconnect attempt, sets aside the oldest message in
// paho's store if refusals connections have ended without the broker
// acknowledging it: a message it will never take (too large for it, a
// topic it refuses), which paho would otherwise resend first on every
// connection, for ever. A broker that takes a message acknowledges it
// within milliseconds. It reports whether the oldest message now stored
// has been through a connection that ended without its acknowledgement.
// p.mu is held.
func (p *Publisher) refused() (suspect bool) {
	if lists, _, _ := p.store.State(); lists <= p.lists {
		return false // not connected since the last attempt began: resume() did not read the store
	}
	order, strikes, ok := p.store.Strike()
	if !ok || strikes < refusals {
		return ok
	}
	topic, payload, ok := p.store.SetAside(order)
	if !ok {
		return false
	}
	p.asideAcked.Add(1)
	p.owners.of(topic).asideAcked.Add(1)
	p.mu.Unlock()
	p.deadLetter(topic, payload, fmt.Sprintf("%d connections ended without the broker acknowledging it", strikes))
	p.mu.Lock()
	return false
}

func (p *Publisher) subscribeCommands(c mqttClient) {
	cmd := p.format
	if len(cmd.CommandTopics()) == 0 {
		return
	}
	filters := map[string]byte{}
	for _, t := range cmd.CommandTopics() {
		filters[t] = 1
	}
	topic := strings.Join(cmd.CommandTopics(), " ")
	tok := c.SubscribeMultiple(filters, p.formatCommand)
	if !tok.WaitTimeout(connectTimeout) || tok.Error() != nil {
		p.log.Warn().Err(tok.Error()).Str("topic", topic).Msg("cannot subscribe to commands")
	}
}

// formatCommand takes a message on one of the format's command topics;
// write-back sees it too (paho keeps one route per filter).
func (p *Publisher) formatCommand(c mqtt.Client, m mqtt.Message) {
	rebirth := p.format.Command(m.Topic(), m.Payload())
	p.checkGate()
	if p.cmds != nil {
		p.queueCommand(c, m)
	}
	if !rebirth {
		return
	}
	p.log.Info().Str("topic", m.Topic()).Msg("rebirth requested")
	p.mu.Lock()
	p.announced = false
	p.mu.Unlock()
	// Run looks at announceable again.
	select {
	case p.rebirth <- struct{}{}:
	default:
	}
}

func (p *Publisher) gate() (open bool, changed <-chan struct{}) {
	return p.format.Gate()
}

var errHostOffline = errors.New("primary host offline: session ended")

// checkGate, after a command, ends a connection whose format's gate has
// shut while the link was up: the broker sends the will, and the next
// connection waits for the gate (see resumed).
func (p *Publisher) checkGate() {
	if open, _ := p.gate(); open {
		return
	}
	p.mu.Lock()
	up := p.isUp
	p.mu.Unlock()
	if c := p.conn.Load(); up && c != nil {
		p.log.Warn().Msg("primary host offline: ending the MQTT session; values wait in the spool")
		c.Abort(errHostOffline)
	}
}

// resumed marks the link up once paho's resume() has read the store (after
// the latest attempt began), the broker has acknowledged all it resent and
// the format's gate is open. QoS 0 stores nothing and, on a clean session,
// paho skips resume().
func (p *Publisher) resumed(c mqtt.Client) {
	for {
		lists, out, changed := p.store.State()
		open, gateChanged := p.gate()
		p.mu.Lock()
		if out == 0 && (lists > p.lists || p.qos == 0) && open {
			if !p.isUp && c.IsConnectionOpen() {
				p.isUp = true
				close(p.up)
			}
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		select {
		case <-changed:
		case <-gateChanged:
		case <-p.done:
			return
		}
	}
}

// down marks the link down; p.mu is held.
func (p *Publisher) down() {
	if p.isUp {
		p.isUp = false
		p.up = make(chan struct{})
	}
	p.announced = false
}

func (p *Publisher) upChan() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up
}
