// Package publish sends samples to an MQTT broker: topics from templates,
// JSON payloads, and a paho client that keeps reconnecting by itself.
package publish

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/payload"
	"github.com/tagbridge/tagbridge/spool"
)

// Offline queueing, as found in paho v1.5.1 (client.go Publish, Connect,
// reconnect, resume; net.go; store.go) and seen in tests:
//   - With ConnectRetry/AutoReconnect, Publish of QoS 1/2 while (re)connecting
//     puts the message in the Store and leaves its token pending; resume()
//     resends the Store after connecting. Messages are not lost, but:
//   - the default MemoryStore lists keys in map order, so the backlog is
//     resent shuffled (hence our ordered store);
//   - the status turns "connected" before resume() runs, so a Publish right
//     after a reconnect goes out ahead of the backlog; so does a Publish that
//     was waiting to hand its message over when the connection died;
//   - tokens tell little: resume() completes them when it resends, not when
//     the broker acknowledges, and a write error on a dying connection fails
//     a token whose message stays stored and is resent;
//   - QoS 0 while reconnecting is dropped with a token that reports success,
//     and while first connecting it is neither sent nor completed.
//
// So Run hands paho a message only while the link is up: connected, with
// everything stored before the reconnect acknowledged. Every sample is first
// appended to the disk spool (see spool.Spool), and the spool is read in order
// whenever the link is up and the window has room: the spool holds the
// backlog, and the samples channel never waits for the broker. paho's store
// keeps only what was in flight when a connection dropped, and resends it in
// order. A spooled record is acknowledged to the spool, and removed, once the
// broker has acknowledged it: MQTT brokers acknowledge QoS 1 and 2 messages
// in the order received (MQTT 3.1.1, 4.6), so the store's count of
// acknowledgements says which records are through.
// A reconnect attempt waits until no Publish is under way (see notify), and a
// write timeout bounds how long a Publish can wait on a dead connection.
//
// A message the broker will never take must not hold up the rest, as paho
// would resend it first on every connection: one known to be unsendable (a
// packet over mqtt.max_packet_size, a topic the broker refuses) is set
// aside in the spool's dead-letter file instead of sent, and one that three
// connections in a row ended without acknowledging is taken out of paho's
// store and set aside too (see refused).

const (
	// window bounds the publishes awaiting acknowledgement: enough to keep
	// the connection busy, far below MQTT's 65535 packet ids.
	window = 1024
	// quiesce is how long Disconnect waits for its DISCONNECT to go out, in ms.
	quiesce = 250

	// refusals is how many connections may end without the broker
	// acknowledging the oldest message before it is set aside.
	refusals = 3

	writeTimeout         = 5 * time.Second
	connectRetryInterval = 2 * time.Second
	maxReconnectInterval = 5 * time.Second // back within seconds of a broker restart
	connectTimeout       = 10 * time.Second

	// maxGoodTopics bounds the topics remembered as checked (some 100
	// bytes each), as the spool bounds those it interns.
	maxGoodTopics = 1 << 14
)

// Publisher publishes samples to one MQTT broker.
type Publisher struct {
	log    zerolog.Logger
	client mqtt.Client
	store  *store
	format payload.Format
	qos    byte
	retain bool
	// maxPacket is mqtt.max_packet_size: a record whose packet would be
	// larger is set aside; no larger packet from the broker is read.
	maxPacket int

	published, failed, resent atomic.Uint64
	// setAside counts records moved to the dead-letter file; asideAcked
	// those of them taken out of paho's store, which the store counts as
	// acknowledged once the broker answers their PUBREL.
	setAside, asideAcked atomic.Uint64

	mu         sync.Mutex
	idle       sync.Cond     // signalled when publishing turns false
	up         chan struct{} // closed while the link is up
	isUp       bool
	publishing bool              // Run is inside client.Publish
	lists      uint64            // store.lists when the latest connection attempt began
	stored     int               // messages in the store when it began, which resume() resends
	lastErr    string            // last connect failure logged
	done       chan struct{}     // closed when Run returns
	announced  bool              // the format's connected messages went out on this link
	direct     []payload.Message // the format's messages waiting for Run's goroutine
	statuses   []collectors.PLCStatus
	statusWake chan struct{} // statuses has entries for the intake
	asideLog   bool          // a record set aside has been logged
	silence    *silence

	// fenced (Sparkplug, QoS 0): a record handed to the connection stays
	// in the spool until the broker has answered a PINGREQ written after
	// it (see coalescingConn.fence); a connection that breaks first has
	// the spool read again from the first record not confirmed.
	fenced    bool
	conn      atomic.Pointer[coalescingConn] // the latest connection made
	confirmed atomic.Uint64                  // records before this spool seq are confirmed
	fenceWake chan struct{}                  // a fence was answered

	// Owned by Run's goroutine.
	readConn    *coalescingConn // the connection records are handed to
	handedSeq   uint64          // records before this spool seq were written to readConn
	fenceAt     uint64          // handedSeq of the fence awaiting its answer, 0 if none
	fencedTo    uint64          // records before this spool seq are acknowledged to the spool
	inflight    ring
	failing     bool
	spoolBroken bool // the latest spool write failed
	spool       *spool.Spool
	syncEach    time.Duration
	handed      uint64    // messages put in paho's store (QoS 1, 2), numbered as store.acked counts them
	pending     []pending // spooled records in paho's store, awaiting acknowledgement, oldest first
	goodTopics  map[string]struct{}
}

// pending is a spooled record handed to paho, n-th in paho's store.
type pending struct{ n, seq uint64 }

// Stats counts the Publisher's messages since New.
type Stats struct {
	Published uint64 // acknowledged by the broker (QoS 0: handed to the connection)
	Failed    uint64 // lost: not taken by the spool (write error), rejected before reaching paho's store (QoS 1, 2) or reported failed (QoS 0)
	Connected bool   // connected, and caught up after the last reconnect

	Spooled    uint64 // values in the disk spool not yet acknowledged by the broker
	SpoolBytes int64  // size of the spool's files
	Dropped    uint64 // values deleted from the spool unsent: spool full (mqtt.spool.max_bytes), corrupt, or set aside
	// SetAside counts values moved to the spool's dead-letter file (also in
	// Dropped): a topic or size the broker can never take, or a message it
	// refused again and again by dropping the connection.
	SetAside uint64
	// Resent counts values sent again, after a reconnect or a restart,
	// because the broker had not acknowledged them: each may reach the
	// broker twice (at least once delivery). Whether it did, only the
	// broker knows.
	Resent uint64
	// InFlight counts publishes handed to the broker and not yet acknowledged.
	InFlight int
}

// New checks the MQTT settings, opens the spool in agent.spool_dir and
// prepares a client; it does not connect.
func New(cfg *config.Config, log zerolog.Logger) (*Publisher, error) {
	m := &cfg.MQTT
	if m.QoS < 0 || m.QoS > 2 {
		return nil, fmt.Errorf("qos %d: must be 0, 1 or 2", m.QoS)
	}
	if m.ClientID == "" {
		return nil, errors.New("client_id must be set")
	}
	u, err := url.Parse(m.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	formatOpts := payload.FromConfig(cfg)
	format, err := payload.New(formatOpts, time.Now())
	if err != nil {
		return nil, err
	}
	if err := format.Open(); err != nil {
		return nil, err
	}
	qos := byte(m.QoS)
	if cfg.MQTT.Payload == config.PayloadSparkplugB {
		qos = 0 // Sparkplug 3.0: data at QoS 0 on a clean session; the spool keeps values while the broker is away
	}
	p := &Publisher{
		log:        log.With().Str("endpoint", u.Redacted()).Logger(),
		store:      newStore(),
		format:     format,
		qos:        qos,
		retain:     m.Retain,
		maxPacket:  int(cmp.Or(m.MaxPacketSize, config.DefaultMaxPacketSize)),
		goodTopics: map[string]struct{}{},
		up:         make(chan struct{}),
		done:       make(chan struct{}),
		statusWake: make(chan struct{}, 1),
		inflight:   ring{buf: make([]inflight, window)},
		fenced:     cfg.MQTT.Payload == config.PayloadSparkplugB,
		fenceWake:  make(chan struct{}, 1),
	}
	p.idle.L = &p.mu
	p.silence = newSilence(formatOpts.PLCs, p.queueStatus)

	opts := mqtt.NewClientOptions().
		AddBroker(m.URL).
		SetClientID(m.ClientID).
		SetUsername(m.Username).
		SetPassword(m.Password.Reveal()).
		SetProtocolVersion(4). // no silent fallback to 3.1 on a refused connection
		SetKeepAlive(m.Keepalive.Duration()).
		// A persistent session makes the broker keep QoS 1/2 state across
		// reconnects; QoS 0 has none to keep.
		SetCleanSession(qos == 0).
		SetStore(p.store).
		SetAutoReconnect(true).
		SetConnectRetry(true). // start with the broker down: keep trying
		SetConnectRetryInterval(connectRetryInterval).
		SetMaxReconnectInterval(maxReconnectInterval).
		SetConnectTimeout(connectTimeout).
		SetWriteTimeout(writeTimeout).
		SetConnectionNotificationHandler(p.notify).
		SetCustomOpenConnectionFn(openConn(p.maxPacket, p.store.resumeAll, p.conn.Store)) // coalesced writes, buffered and bounded reads (conn.go)
	if w, ok := format.Will(); ok {
		opts.SetBinaryWill(w.Topic, w.Payload, 1, w.Retain)
	}
	// paho sends the options' will with every CONNECT, resends its store
	// as they say, and lets this handler change them before each reconnect.
	opts.SetReconnectingHandler(func(_ mqtt.Client, o *mqtt.ClientOptions) {
		p.mu.Lock()
		suspect := p.refused()
		p.mu.Unlock()
		// After a connection that ended without the oldest message
		// acknowledged, resend one message at a time: a broker that drops
		// the connection on a message also resets the acknowledgements of
		// those before it, if more followed, and which one it refuses is
		// then unknown.
		if suspect {
			p.store.resumeOneByOne()
		}
		if _, ok := format.Will(); ok {
			w := format.Reconnecting()
			o.SetBinaryWill(w.Topic, w.Payload, 1, w.Retain)
		}
	})
	switch u.Scheme {
	case "tcp", "ws":
	case "ssl", "wss":
		tc, err := tlsConfig(m.TLS, certs.Guard{Dirs: cfg.Agent.AllowedCertDirs})
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		if tc.InsecureSkipVerify {
			p.log.Warn().Msg("tls.insecure_skip_verify is set: the broker's certificate is not checked")
		}
		opts.SetTLSConfig(tc)
	default:
		return nil, fmt.Errorf("url %q: scheme must be tcp, ssl, ws or wss", u.Redacted())
	}
	p.client = mqtt.NewClient(opts)

	if cfg.Agent.SpoolDir == "" {
		return nil, errors.New("spool: agent.spool_dir must be set")
	}
	maxBytes := int64(cmp.Or(m.Spool.MaxBytes, config.DefaultSpoolMaxBytes))
	p.syncEach = cmp.Or(m.Spool.SyncInterval.Duration(), config.DefaultSpoolSyncInterval)
	if p.spool, err = spool.Open(cfg.Agent.SpoolDir, maxBytes, p.log); err != nil { // p.log names the component (mqtt); the spool prefixes its messages
		return nil, err
	}
	return p, nil
}

// CheckTopics renders every topic the configuration makes (tags, batches,
// status) and checks them as New does, without touching the broker or the
// spool: validate and a reload refuse what run would.
func CheckTopics(cfg *config.Config) error {
	if err := payload.Check(payload.FromConfig(cfg)); err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	return nil
}

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

// Stats returns the counters; safe to call from any goroutine.
func (p *Publisher) Stats() Stats {
	p.mu.Lock()
	up := p.isUp
	p.mu.Unlock()
	sp := p.spool.Stats()
	acked, asideAcked := p.store.acked.Load(), p.asideAcked.Load()
	aside := p.setAside.Load()
	return Stats{
		Published:  p.published.Load() + acked - min(acked, asideAcked),
		Failed:     p.failed.Load(),
		Connected:  up,
		Spooled:    sp.Values,
		SpoolBytes: sp.Bytes,
		Dropped:    sp.Dropped + aside,
		SetAside:   aside,
		Resent:     sp.Resent + p.resent.Load(),
		InFlight:   int(p.inflight.shown.Load()),
	}
}

// Run connects and publishes every sample from in, in order, until in is
// closed; then it waits until the broker has acknowledged everything,
// disconnects and returns nil. Every sample goes through the spool, so a
// broker outage never blocks in. Cancelling ctx stops it at once; what the
// broker has not acknowledged stays in the spool, for the next start. Run
// is called once; it closes the spool when it returns.
func (p *Publisher) Run(ctx context.Context, in <-chan collectors.Batch) error {
	defer close(p.done)
	defer p.silence.stop()
	p.log.Info().Msg("connecting to broker")
	p.client.Connect() // completes once connected; progress is reported to notify
	tick := time.NewTicker(p.syncEach)
	defer tick.Stop()

	// The intake spools the samples on a goroutine of its own, so that a
	// broker slow to take messages never holds up the collectors.
	intakeCtx, stopIntake := context.WithCancel(ctx)
	defer stopIntake()
	wake := make(chan struct{}, 1)
	taken := make(chan struct{})
	go func() {
		defer close(taken)
		p.intake(intakeCtx, in, wake)
	}()
	for {
		select {
		case <-ctx.Done():
			<-taken
			return p.stop(ctx)
		case <-taken:
			return p.drain(ctx, tick.C)
		case <-wake: // records appended: look at sendable again
		case <-p.announceable():
			p.announce()
		case <-p.inflight.frontDone():
			p.reap()
		case <-p.sendable():
			p.pump()
		case <-p.fenceWake:
			p.fenceAnswered()
		case <-tick.C:
			p.sync()
			p.keepAlive()
		}
		p.fence()
	}
}

// newConnection, on Run's goroutine with the link up, notices a new
// connection: with fences, the spool is read again from the first record
// the broker has not confirmed (records written to the broken connection
// may never have reached it).
func (p *Publisher) newConnection() {
	c := p.conn.Load()
	if !p.fenced || c == p.readConn {
		return
	}
	p.readConn, p.handedSeq, p.fenceAt = c, 0, 0
	if err := p.spool.Rewind(); err != nil {
		p.log.Error().Err(err).Msg("cannot read the spool again from the first record the broker has not confirmed")
	}
}

// fence asks the broker to confirm the records written to the connection
// so far, unless a fence is awaiting its answer.
func (p *Publisher) fence() {
	if !p.fenced || p.fenceAt != 0 || p.handedSeq <= p.fencedTo || p.readConn == nil {
		return
	}
	upTo := p.handedSeq
	ok := p.readConn.fence(func() {
		for {
			old := p.confirmed.Load()
			if old >= upTo || p.confirmed.CompareAndSwap(old, upTo) {
				break
			}
		}
		select {
		case p.fenceWake <- struct{}{}:
		default:
		}
	})
	if ok {
		p.fenceAt = upTo
	}
}

// fenceAnswered acknowledges to the spool what the broker has confirmed.
func (p *Publisher) fenceAnswered() {
	c := p.confirmed.Load()
	if c > p.fencedTo {
		p.fencedTo = c
		p.spool.Ack(c - 1)
	}
	if p.fenceAt <= c {
		p.fenceAt = 0
	}
}

// intake encodes every sample of every batch from in and appends it to the spool, until
// in is closed or ctx ends. It writes to the spool whenever in is empty.
func (p *Publisher) intake(ctx context.Context, in <-chan collectors.Batch, wake chan<- struct{}) {
	defer p.spoolFlush()
	take := func(batch collectors.Batch) {
		p.format.Encode(batch, p.linkUp(), p.spoolAppend)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case batch, ok := <-in:
			if !ok {
				return
			}
			take(batch)
		case <-p.statusWake:
			// A state change comes after the batches its session sent
			// before it, which are in the channel by now.
			for n := len(in); n > 0; n-- {
				batch, ok := <-in
				if !ok {
					break
				}
				take(batch)
			}
			p.takeStatuses()
		}
		if len(in) == 0 {
			p.spoolFlush()
		}
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

// PLCStatus tells the publisher of a PLC entry's state change, for the
// payload format's status, birth or death messages. Safe from any goroutine.
func (p *Publisher) PLCStatus(st collectors.PLCStatus) {
	p.silence.note(st) // reports a long recovery as disconnected, through queueStatus
}

// queueStatus hands a state change to the intake.
func (p *Publisher) queueStatus(st collectors.PLCStatus) {
	p.mu.Lock()
	p.statuses = append(p.statuses, st)
	p.mu.Unlock()
	select {
	case p.statusWake <- struct{}{}:
	default:
	}
}

// takeStatuses hands queued state changes to the format, on the intake.
func (p *Publisher) takeStatuses() {
	p.mu.Lock()
	sts := p.statuses
	p.statuses = nil
	p.mu.Unlock()
	for _, st := range sts {
		msgs := p.format.PLCStatus(st, p.spoolAppend)
		if len(msgs) == 0 {
			continue
		}
		p.mu.Lock()
		if p.isUp { // while down, the next connect announces the state anyway
			p.direct = append(p.direct, msgs...)
		}
		p.mu.Unlock()
	}
}

func (p *Publisher) linkUp() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.isUp
}

// announceable is ready when the link is up and the format has messages to
// send: its connected messages after a connect, or queued direct ones.
func (p *Publisher) announceable() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.announced && len(p.direct) == 0 {
		return nil
	}
	return p.up
}

// announce publishes the format's messages at QoS 0: its connected messages
// first after every connect, then the queued ones.
func (p *Publisher) announce() {
	p.newConnection()
	p.mu.Lock()
	var msgs []payload.Message
	if !p.announced {
		p.announced = true
		p.direct = nil // connected() covers the latest state
		p.mu.Unlock()
		msgs = p.format.Connected()
	} else {
		msgs, p.direct = p.direct, nil
		p.mu.Unlock()
	}
	for _, m := range msgs {
		if p.publishMessage(m) == nil {
			return // link down: the next connect announces again
		}
	}
}

// publishMessage sends m at QoS 0 if the link is up, and returns nil if not.
func (p *Publisher) publishMessage(m payload.Message) mqtt.Token {
	return p.handOver(m.Topic, 0, m.Retain, m.Payload)
}

// farewell publishes the format's stopping messages and waits briefly for
// them to be written, so a clean stop says so before the will could.
func (p *Publisher) farewell() {
	var last mqtt.Token
	for _, m := range p.format.Stopping() {
		if tok := p.publishMessage(m); tok != nil {
			last = tok
		}
	}
	if last != nil {
		last.WaitTimeout(time.Second)
	}
}

func (p *Publisher) spoolAppend(topic string, payload []byte) {
	if err := p.spool.Append(topic, payload); err != nil {
		p.failed.Add(1)
		p.spoolError(err)
	}
}

func (p *Publisher) spoolFlush() {
	if p.spool.Buffered() {
		p.spoolError(p.spool.Flush())
	}
}

// spoolError, for the intake, logs the first of a run of spool write errors (a full disk
// would otherwise log every value), and the end of the run.
func (p *Publisher) spoolError(err error) {
	switch {
	case err != nil && !p.spoolBroken:
		p.spoolBroken = true
		p.log.Error().Err(err).Msg("cannot write to the spool: values are dropped until it works again")
	case err == nil && p.spoolBroken:
		p.spoolBroken = false
		p.log.Info().Msg("writing to the spool again")
	}
}

// sync acknowledges what the broker has to the spool and makes the spool durable.
func (p *Publisher) sync() {
	p.acknowledge()
	if err := p.spool.Sync(); err != nil {
		p.log.Error().Err(err).Msg("cannot sync the spool")
	}
}

// sendable is ready when spooled records can go out: the link is up and
// the window has room. It is nil otherwise.
func (p *Publisher) sendable() <-chan struct{} {
	if !p.spool.Unread() || p.inflight.full() {
		return nil
	}
	return p.upChan()
}

// pumpBatch bounds the records pump hands over before Run looks at its
// other channels again.
const pumpBatch = 64

// pump hands spooled records to paho in order while the link is up and the
// window has room. This is the one way out to the broker.
func (p *Publisher) pump() {
	p.newConnection()
	if p.announceable() != nil {
		p.announce() // births and status before any record on a new connection
	}
	for range pumpBatch {
		if p.inflight.full() {
			p.reap()
			if p.inflight.full() {
				break
			}
		}
		topic, payload, seq, ok := p.spool.Peek()
		if !ok {
			break
		}
		if reason := p.unsendable(topic, len(payload)); reason != "" {
			p.setAsideRecord(topic, payload, seq, reason)
			continue
		}
		if !p.publishPrelude(topic) {
			break // the link went down
		}
		if payload = p.format.Outgoing(topic, payload); payload == nil {
			p.skipRecord(topic, seq)
			continue
		}
		tok := p.publish(topic, payload) // a copy of its own, which paho keeps until acknowledged
		if tok == nil {
			break // the link went down: the record stays next in the spool
		}
		// false if the spool, full, dropped it meanwhile: it went out anyway
		_ = p.spool.Advance(seq)
		p.inflight.push(inflight{tok, topic, seq, p.readConn})
		if p.qos > 0 && tok.(*mqtt.PublishToken).MessageID() != 0 {
			// In paho's store now: it is through once the store has
			// counted p.handed acknowledgements.
			p.handed++
			p.pending = append(p.pending, pending{p.handed, seq})
		}
	}
	p.acknowledge()
}

// publishPrelude publishes what the format sends before a record (see
// preluder); false if the link is down.
func (p *Publisher) publishPrelude(topic string) bool {
	for _, m := range p.format.Prelude(topic) {
		if p.publishMessage(m) == nil {
			return false
		}
	}
	return true
}

// unsendable says why a record can never reach the broker, or "" if it
// can: a topic the broker would refuse (a spool written under an older
// configuration), or a packet larger than mqtt.max_packet_size.
func (p *Publisher) unsendable(topic string, payloadLen int) string {
	if size := payload.PacketSize(topic, payloadLen, p.qos); size > p.maxPacket {
		return fmt.Sprintf("packet of %d bytes, over mqtt.max_packet_size (%d)", size, p.maxPacket)
	}
	if _, ok := p.goodTopics[topic]; ok {
		return ""
	}
	if err := payload.CheckTopic(topic); err != nil {
		return "topic " + err.Error()
	}
	if len(p.goodTopics) < maxGoodTopics {
		p.goodTopics[topic] = struct{}{}
	}
	return ""
}

// setAsideRecord moves the record at the spool's reader to the dead-letter
// file instead of handing it to paho; it is acknowledged to the spool in
// its turn, after the records handed over before it.
func (p *Publisher) setAsideRecord(topic string, payload []byte, seq uint64, reason string) {
	p.deadLetter(topic, payload, reason)
	_ = p.spool.Advance(seq)
	p.inflight.push(inflight{doneToken{}, topic, seq, p.readConn})
	if p.qos > 0 {
		p.pending = append(p.pending, pending{p.handed, seq})
	}
}

// deadLetter writes a message the broker cannot take to the spool's
// dead-letter file, counts it, and logs the first one.
func (p *Publisher) deadLetter(topic string, payload []byte, reason string) {
	p.setAside.Add(1)
	err := p.spool.DeadLetter(topic, payload)
	p.mu.Lock()
	first := !p.asideLog
	p.asideLog = true
	p.mu.Unlock()
	switch {
	case err != nil:
		p.log.Error().Err(err).Str("topic", topic).Str("reason", reason).Msg("cannot write a message the broker cannot take to the dead-letter file: dropped")
	case first:
		p.log.Error().Str("topic", topic).Str("reason", reason).Str("file", p.spool.DeadLetterPath()).
			Msg("set a message the broker cannot take aside in the dead-letter file, so that the rest flows; later ones are counted (set_aside), not logged")
	}
}

// skipRecord passes over a record the format says need not go out; it is
// acknowledged to the spool in its turn, as one set aside is.
func (p *Publisher) skipRecord(topic string, seq uint64) {
	_ = p.spool.Advance(seq)
	p.inflight.push(inflight{doneToken{}, topic, seq, p.readConn})
	if p.qos > 0 {
		p.pending = append(p.pending, pending{p.handed, seq})
	}
}

// doneToken is the completed token of a record set aside, never handed to paho.
type doneToken struct{}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (doneToken) Wait() bool                     { return true }
func (doneToken) WaitTimeout(time.Duration) bool { return true }
func (doneToken) Done() <-chan struct{}          { return closedChan }
func (doneToken) Error() error                   { return nil }

// acknowledge tells the spool which records the broker has (QoS 1, 2).
func (p *Publisher) acknowledge() {
	acked := p.store.acked.Load()
	i := 0
	for i < len(p.pending) && p.pending[i].n <= acked {
		i++
	}
	if i == 0 {
		return
	}
	p.spool.Ack(p.pending[i-1].seq)
	p.pending = append(p.pending[:0], p.pending[i:]...)
}

// publish hands a spooled record to paho if the link is still up, and
// returns nil if not.
func (p *Publisher) publish(topic string, payload []byte) mqtt.Token {
	return p.handOver(topic, p.qos, p.retain, payload)
}

// handOver calls paho if the link is still up, and returns nil if not; a
// reconnect attempt waits while it is inside Publish (see notify).
func (p *Publisher) handOver(topic string, qos byte, retain bool, payload []byte) mqtt.Token {
	p.mu.Lock()
	if !p.isUp {
		p.mu.Unlock()
		return nil
	}
	p.publishing = true
	p.mu.Unlock()
	tok := p.client.Publish(topic, qos, retain, payload)
	p.mu.Lock()
	p.publishing = false
	p.idle.Broadcast()
	p.mu.Unlock()
	return tok
}

// reap takes the completed publishes off the front of the window; tokens
// complete in order, so the front is the one to wait for.
//
// For QoS 1 and 2 a token tells little: an error after the message got its
// packet id (a write on a dying connection) leaves it in the store, to be
// resent after reconnecting, and a resent message's token completes before
// the broker acknowledges it. So the store counts acknowledgements, and only
// a message that never reached the store (no packet id) has failed.
func (p *Publisher) reap() {
	for p.inflight.n > 0 {
		f := *p.inflight.front()
		select {
		case <-f.token.Done():
		default:
			return
		}
		p.inflight.pop()
		err := f.token.Error()
		if p.fenced {
			// Acknowledged to the spool by a fence; a record the link
			// lost is read again on the next connection.
			if err == nil && f.conn == p.readConn {
				p.handedSeq = max(p.handedSeq, f.seq+1)
				if _, aside := f.token.(doneToken); !aside {
					p.published.Add(1)
				}
			}
			continue
		}
		if p.qos == 0 {
			p.spool.Ack(f.seq) // at most once: handed to the connection, or lost
		}
		if _, aside := f.token.(doneToken); aside {
			continue
		}
		switch {
		case err == nil:
			if p.qos == 0 {
				p.published.Add(1)
			}
		case p.qos > 0 && f.token.(*mqtt.PublishToken).MessageID() != 0:
			// Still in the store: paho resends it.
		default:
			p.failed.Add(1)
			if !p.failing {
				p.failing = true
				p.log.Error().Err(err).Str("topic", f.topic).Msg("publish failed")
			}
			continue
		}
		if p.failing {
			p.failing = false
			p.log.Info().Str("topic", f.topic).Msg("publishing again")
		}
	}
}

// drain sends what is left in the spool and waits for every message to be
// acknowledged, then disconnects. tick is Run's sync ticker.
func (p *Publisher) drain(ctx context.Context, tick <-chan time.Time) error {
	for p.spool.Unread() || p.inflight.n > 0 || p.fencedTo < p.handedSeq {
		p.newConnection() // a rewind makes records unread again
		select {
		case <-p.sendable():
			p.pump()
		case <-p.inflight.frontDone():
			p.reap()
		case <-p.fenceWake:
			p.fenceAnswered()
		case <-tick:
			p.sync()
		case <-ctx.Done():
			return p.stop(ctx)
		}
		p.fence()
	}
	// Tokens of messages resent after a reconnect complete before the
	// broker acknowledges them; the store knows.
	for {
		_, out, changed := p.store.state()
		if out == 0 {
			break
		}
		select {
		case <-changed:
		case <-tick:
			p.sync()
		case <-ctx.Done():
			return p.stop(ctx)
		}
	}
	p.acknowledge()
	p.closeSpool()
	p.farewell()
	p.store.resumeAll()
	p.client.Disconnect(quiesce)
	st := p.Stats()
	p.log.Info().Uint64("published", st.Published).Uint64("failed", st.Failed).Msg("disconnected from broker")
	return nil
}

// stop is the hard stop: disconnect now. What the broker has not
// acknowledged stays in the spool and is sent after the next start.
func (p *Publisher) stop(ctx context.Context) error {
	p.reap()
	p.acknowledge()
	p.closeSpool()
	p.farewell()
	p.store.resumeAll()
	p.client.Disconnect(0)
	if st := p.spool.Stats(); st.Values > 0 {
		p.log.Info().Uint64("values", st.Values).Err(context.Cause(ctx)).
			Msg("stopped before the broker had everything; the spool keeps it for the next start")
	}
	return nil
}

func (p *Publisher) closeSpool() {
	if err := p.spool.Close(); err != nil {
		p.log.Error().Err(err).Msg("cannot close the spool")
	}
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
		// Hold the attempt until Run is out of Publish: a message handed
		// over now would go out first on the new connection, ahead of the
		// resent ones.
		p.mu.Lock()
		p.down()
		for p.publishing {
			p.idle.Wait()
		}
		p.lists, p.stored, _ = p.store.state()
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
		p.mu.Lock()
		p.lastErr = ""
		p.resent.Add(uint64(p.stored))
		p.mu.Unlock()
		p.log.Info().Msg("connected to broker")
		if err := p.format.SessionStarted(); err != nil {
			p.log.Error().Err(err).Msg("cannot store the session state: the next start may repeat it")
		}
		p.subscribeCommands(c)
		p.resumed(c)
	case mqtt.ConnectionNotificationLost:
		p.store.resumeAll()
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
	if lists, _, _ := p.store.state(); lists <= p.lists {
		return false // not connected since the last attempt began: resume() did not read the store
	}
	order, strikes, ok := p.store.strike()
	if !ok || strikes < refusals {
		return ok
	}
	topic, payload, ok := p.store.setAside(order)
	if !ok {
		return false
	}
	p.asideAcked.Add(1)
	p.mu.Unlock()
	p.deadLetter(topic, payload, fmt.Sprintf("%d connections ended without the broker acknowledging it", strikes))
	p.mu.Lock()
	return false
}

func (p *Publisher) subscribeCommands(c mqtt.Client) {
	cmd := p.format
	if len(cmd.CommandTopics()) == 0 {
		return
	}
	filters := map[string]byte{}
	for _, t := range cmd.CommandTopics() {
		filters[t] = 1
	}
	topic := strings.Join(cmd.CommandTopics(), " ")
	tok := c.SubscribeMultiple(filters, func(_ mqtt.Client, m mqtt.Message) {
		rebirth := cmd.Command(m.Topic(), m.Payload())
		p.checkGate()
		if !rebirth {
			return
		}
		p.log.Info().Str("topic", m.Topic()).Msg("rebirth requested")
		p.mu.Lock()
		p.announced = false
		p.mu.Unlock()
		// Run looks at announceable again whenever the intake wakes it.
		select {
		case p.statusWake <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(connectTimeout) || tok.Error() != nil {
		p.log.Warn().Err(tok.Error()).Str("topic", topic).Msg("cannot subscribe to commands")
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
		c.abort(errHostOffline)
	}
}

// resumed marks the link up once paho's resume() has read the store (after
// the latest attempt began), the broker has acknowledged all it resent and
// the format's gate is open. QoS 0 stores nothing and, on a clean session,
// paho skips resume().
func (p *Publisher) resumed(c mqtt.Client) {
	for {
		lists, out, changed := p.store.state()
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

// inflight is a publish awaiting completion.
type inflight struct {
	token mqtt.Token
	topic string
	seq   uint64          // in the spool
	conn  *coalescingConn // it was handed to, with fences
}

// ring is a fixed-size FIFO of inflight publishes.
type ring struct {
	buf     []inflight
	head, n int
	shown   atomic.Int64 // n, for Stats on other goroutines
}

func (r *ring) full() bool       { return r.n == len(r.buf) }
func (r *ring) front() *inflight { return &r.buf[r.head] }

func (r *ring) push(f inflight) {
	r.buf[(r.head+r.n)%len(r.buf)] = f
	r.n++
	r.shown.Store(int64(r.n))
}

func (r *ring) pop() {
	r.buf[r.head] = inflight{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	r.shown.Store(int64(r.n))
}

// frontDone is the oldest publish's completion, or nil when there is none.
func (r *ring) frontDone() <-chan struct{} {
	if r.n == 0 {
		return nil
	}
	return r.front().token.Done()
}
