// Package publish sends samples to an MQTT broker: topics from templates,
// JSON payloads, and a paho client that keeps reconnecting by itself.
package publish

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/payload"
	"github.com/tagbridge/tagbridge/payload/sparkplug"
	"github.com/tagbridge/tagbridge/payload/uajson"
	"github.com/tagbridge/tagbridge/publish/mqttconn"
	"github.com/tagbridge/tagbridge/publish/pahostore"
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

// mqttClient is what the publisher uses of its MQTT client: paho's
// mqtt.Client, which paho's callbacks also hand over.
type mqttClient interface {
	Connect() mqtt.Token
	Disconnect(quiesce uint)
	IsConnectionOpen() bool
	Publish(topic string, qos byte, retained bool, payload any) mqtt.Token
	SubscribeMultiple(filters map[string]byte, callback mqtt.MessageHandler) mqtt.Token
	Unsubscribe(topics ...string) mqtt.Token
	AddRoute(topic string, callback mqtt.MessageHandler)
}

// Publisher publishes samples to one MQTT broker.
type Publisher struct {
	log    zerolog.Logger
	client mqttClient
	store  *pahostore.Store
	format payload.Format
	qos    byte
	retain bool
	// maxPacket is mqtt.max_packet_size: a record whose packet would be
	// larger is set aside; no larger packet from the broker is read.
	maxPacket int

	published, failed, resent atomic.Uint64
	// connectAttempts counts CONNECTs tried, connects those the broker
	// accepted: the first is the start, the others reconnects.
	connectAttempts, connects atomic.Uint64
	latency                   latency // intake to acknowledgement (latency.go)
	spoolMax                  int64   // mqtt.spool.max_bytes in force
	// setAside counts records moved to the dead-letter file; asideAcked
	// those of them taken out of paho's store, which the store counts as
	// acknowledged once the broker answers their PUBREL.
	setAside, asideAcked atomic.Uint64
	// owners counts published, failed and dropped records by PLC entry
	// (plccounts.go).
	owners *owners

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
	asideLog   bool              // a record set aside has been logged
	silence    *silence
	expired    chan *armed   // silence timers that fired, for the intake
	rebirth    chan struct{} // a command asked for the connected messages again

	settings settings // what it was built from (see NeedsRestart)
	// retags brings Retag's new tag sets to the intake (reload.go).
	retags chan retagRequest

	// Owned by the intake goroutine.
	appendFor *plcCounts            // the entry of the records being appended
	states    []collectors.PLCState // the states New was given, taken first
	since     map[string]time.Time  // per entry, the Since of the state New was given

	// fenced (Sparkplug, QoS 0): a record handed to the connection stays
	// in the spool until the broker has answered a PINGREQ written after
	// it (see mqttconn.Conn.Fence); a connection that breaks first has
	// the spool read again from the first record not confirmed.
	fenced    bool
	conn      atomic.Pointer[mqttconn.Conn] // the latest connection made
	confirmed atomic.Uint64                 // records before this spool seq are confirmed
	fenceWake chan struct{}                 // a fence was answered

	// Owned by Run's goroutine.
	readConn    *mqttconn.Conn // the connection records are handed to
	handedSeq   uint64         // records before this spool seq were written to readConn
	fenceAt     uint64         // handedSeq of the fence awaiting its answer, 0 if none
	fencedTo    uint64         // records before this spool seq are acknowledged to the spool
	inflight    ring
	failing     bool
	spoolBroken bool // the latest spool write failed
	spool       *spool.Spool
	syncEach    time.Duration
	handed      uint64    // messages put in paho's store (QoS 1, 2), numbered as store.acked counts them
	pending     []pending // spooled records in paho's store, awaiting acknowledgement, oldest first
	goodTopics  map[string]struct{}

	cmds *commands // write-back, when SetCommands gave a handler (commands.go)
}

// Stats counts the Publisher's messages since New.
type Stats struct {
	Published uint64 // acknowledged by the broker (QoS 0: handed to the connection)
	Failed    uint64 // lost: not taken by the spool (write error), rejected before reaching paho's store (QoS 1, 2) or reported failed (QoS 0)
	Connected bool   // connected, and caught up after the last reconnect

	Spooled uint64 // values in the disk spool not yet acknowledged by the broker
	// SpoolBytes is what those values take in the spool, record framing
	// included: 0 once the broker has everything, whatever the files'
	// size (which mqtt.spool.max_bytes bounds).
	SpoolBytes int64
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
	// ConnectAttempts counts connections to the broker tried; Reconnects
	// those established after the first.
	ConnectAttempts uint64
	Reconnects      uint64
	SpoolMaxBytes   int64 // the spool's bound (mqtt.spool.max_bytes)
	// PublishLatency is how long records took from the intake to the
	// broker's acknowledgement.
	PublishLatency Histogram
	// PLCs counts Published, Failed and Dropped by PLC entry: every
	// configured entry, and UnknownPLC when records were not known.
	PLCs map[string]PLCCounts
}

// New checks the MQTT settings, opens the spool in agent.spool_dir and
// prepares a client; it does not connect. states are the PLC entries'
// current states (a publisher started by a reload takes over running
// sessions), handed to the format before any event from Run's channel.
func New(cfg *config.Config, log zerolog.Logger, states []collectors.PLCState) (*Publisher, error) {
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
	format, err := newFormat(formatOpts, time.Now())
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
		store:      pahostore.New(),
		format:     format,
		qos:        qos,
		retain:     m.Retain,
		maxPacket:  int(cmp.Or(m.MaxPacketSize, config.DefaultMaxPacketSize)),
		goodTopics: map[string]struct{}{},
		up:         make(chan struct{}),
		done:       make(chan struct{}),
		expired:    make(chan *armed, len(cfg.PLCs)+1),
		rebirth:    make(chan struct{}, 1),
		states:     states,
		settings:   settingsOf(cfg),
		owners:     newOwners(cfg.PLCs),
		retags:     make(chan retagRequest),
		since:      map[string]time.Time{},
		inflight:   ring{buf: make([]inflight, window)},
		fenced:     cfg.MQTT.Payload == config.PayloadSparkplugB,
		fenceWake:  make(chan struct{}, 1),
	}
	p.idle.L = &p.mu
	p.silence = newSilence(formatOpts.PLCs, func(a *armed) {
		select {
		case p.expired <- a:
		case <-p.done:
		}
	})

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
		SetCustomOpenConnectionFn(mqttconn.Open(p.maxPacket, p.store.ResumeAll, p.conn.Store)) // coalesced writes, buffered and bounded reads (conn.go)
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
			p.store.ResumeOneByOne()
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
	p.spoolMax = maxBytes
	p.syncEach = cmp.Or(m.Spool.SyncInterval.Duration(), config.DefaultSpoolSyncInterval)
	if p.spool, err = spool.Open(cfg.Agent.SpoolDir, maxBytes, p.log); err != nil { // p.log names the component (mqtt); the spool prefixes its messages
		return nil, err
	}
	p.spool.OnDrop(func(topic string, n uint64) { p.owners.of(topic).dropped.Add(n) })
	return p, nil
}

// CheckTopics renders every topic the configuration makes (tags, batches,
// status) and checks them as New does, without touching the broker or the
// spool: validate and a reload refuse what run would.
func CheckTopics(cfg *config.Config) error {
	if _, err := newFormat(payload.FromConfig(cfg), time.Time{}); err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	return nil
}

// newFormat builds the format o asks for, once its tags' topics pass;
// started is the agent's start time, which the json status reports. The
// format's state files are not opened (see payload.Format.Open).
func newFormat(o payload.Options, started time.Time) (payload.Format, error) {
	if o.Format == "" || o.Format == config.PayloadJSON {
		// NewJSON renders and checks the topics itself: rendering them
		// twice is a second table of every tag (100,000 at start-up).
		return payload.NewJSON(o, started)
	}
	if err := payload.CheckTopics(o); err != nil {
		return nil, err
	}
	switch o.Format {
	case config.PayloadSparkplugB:
		return sparkplug.New(o)
	case config.PayloadOPCUAJSON:
		return uajson.New(o)
	default:
		return nil, fmt.Errorf("payload %q is not supported yet", o.Format)
	}
}

// Stats returns the counters; safe to call from any goroutine.
func (p *Publisher) Stats() Stats {
	p.mu.Lock()
	up := p.isUp
	p.mu.Unlock()
	sp := p.spool.Stats()
	acked, asideAcked := p.store.Acked(), p.asideAcked.Load()
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

		ConnectAttempts: p.connectAttempts.Load(),
		Reconnects:      max(p.connects.Load(), 1) - 1,
		SpoolMaxBytes:   p.spoolMax,
		PublishLatency:  p.latency.histogram(),
		PLCs:            p.owners.stats(),
	}
}

// Run connects and publishes every event from in (samples and PLC state
// changes), in order, until in is closed; then it waits until the broker
// has acknowledged everything, disconnects and returns nil. Every sample
// goes through the spool, so a broker outage never blocks in. Cancelling ctx stops it at once; what the
// broker has not acknowledged stays in the spool, for the next start. Run
// is called once; it closes the spool when it returns.
func (p *Publisher) Run(ctx context.Context, in <-chan collectors.Event) error {
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
	commandsDone := make(chan struct{})
	go func() {
		defer close(commandsDone)
		p.runCommands(intakeCtx)
	}()
	defer func() { stopIntake(); <-commandsDone }()
	for {
		select {
		case <-ctx.Done():
			<-taken
			return p.stop(ctx)
		case <-taken:
			return p.drain(ctx, tick.C)
		case <-wake: // records appended: look at sendable again
		case <-p.rebirth: // look at announceable again
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

// intake hands every event from in to the format, in order, and appends
// the records it makes to the spool, until in is closed or ctx ends. It
// writes to the spool whenever in is empty. The states New was given go
// first; an event older than one of them is stale, and passed over.
func (p *Publisher) intake(ctx context.Context, in <-chan collectors.Event, wake chan<- struct{}) {
	defer p.spoolFlush()
	for _, st := range p.states {
		p.since[st.PLC] = st.Since
		p.takeState(st)
	}
	p.states = nil
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-in:
			if !ok {
				return
			}
			at, from := time.Now(), p.spool.Next()
			if ev.Batch != nil {
				p.encode(ev.Batch)
			}
			if st := ev.State; st != nil && !p.stale(*st) {
				p.takeState(*st)
			}
			p.latency.taken(from, p.spool.Next(), at)
		case r := <-p.retags:
			p.retag(r)
		case a := <-p.expired:
			if st, ok := p.silence.expire(a); ok {
				p.appendFor = p.owners.counts(st.PLC)
				p.queueDirect(p.format.PLCState(st, p.spoolAppend))
			}
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

// spoolAppend appends a record of the entry p.appendFor, on the intake.
func (p *Publisher) spoolAppend(topic string, payload []byte) {
	if p.appendFor != nil {
		p.owners.learn(topic, p.appendFor)
	}
	if err := p.spool.Append(topic, payload); err != nil {
		p.failed.Add(1)
		p.owners.of(topic).failed.Add(1)
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
