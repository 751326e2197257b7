// Package agent wires collectors to the publisher and owns their lifecycle
// (docs/architecture.md tells the whole path).
//
// Stop order, on cancellation of Run's context:
//  1. every collector session stops collecting, forwards what it already
//     received, closes its OPC UA session and returns;
//  2. the agent, owner of the event channel, closes it;
//  3. the publisher drains the channel into its disk spool, sends what the
//     spool holds while the broker is reachable, waits for in-flight
//     publishes and disconnects from the broker; what the broker has not
//     acknowledged stays in the spool for the next start.
//
// The whole sequence is bounded by ShutdownTimeout.
//
// Reload, while Run runs, applies a new configuration in this order:
//  1. when the publisher says the new configuration needs a new publisher
//     (publish.Publisher.NeedsRestart), it is stopped at once: every event
//     it took from the event channel is in its spool, and what the broker
//     has not acknowledged stays there; a new publisher, given the sessions'
//     current states, opens the same spool and sends it first. The channel
//     is not closed: the sessions keep filling it meanwhile. Otherwise
//     the publisher takes the new tag set (publish.Publisher.Retag);
//  2. sessions that say the new entries need a new session
//     (opcua.Session.NeedsRestart), or whose entries went away, are stopped
//     and awaited; sessions whose entries changed only in tags they can
//     take live change their monitored items instead (opcua.Session.Retag):
//     no new session, no stopped state, no gap for the other tags;
//  3. sessions for changed and new entries start. Sessions whose entries
//     did not change keep running untouched.
package agent

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/publish"
)

// ShutdownTimeout bounds the stop sequence after cancellation.
const ShutdownTimeout = 9 * time.Second

// eventBuffer, in events (a batch per publish cycle and session, or a state
// change), decouples collectors from short publisher hiccups, and from a
// publisher switch.
const eventBuffer = 1024

// collector is what the agent needs from a PLC session.
type collector interface {
	// Collect sends batches and state changes to out until ctx ends.
	Collect(ctx context.Context, out chan<- collectors.Event) error
	States() *collectors.Tracker
	// NeedsRestart reports whether serving next needs a new collector.
	NeedsRestart(next []config.PLC) bool
	// Retag makes a running collector serve next, whose entries differ
	// only in tags it takes without a restart (NeedsRestart said no).
	Retag(next []config.PLC)
}

// publisher is what the agent needs from the MQTT side.
type publisher interface {
	Run(ctx context.Context, in <-chan collectors.Event) error
	Stats() publish.Stats
	// NeedsRestart reports whether next needs a new publisher.
	NeedsRestart(next *config.Config) bool
	// Retag hands next's tags to the formats, which publish what a changed
	// tag set asks of them (a DBIRTH, new DataSetMetaData); called when
	// NeedsRestart said no, before the sessions change their tags.
	Retag(next *config.Config) error
}

// Agent runs the collectors and the publisher of one configuration at a
// time; Reload switches to another while Run runs.
type Agent struct {
	log     zerolog.Logger
	cfg     *config.Config // in force; after Run starts, only its loop uses it
	reloads chan reloadRequest
	exited  chan struct{} // closed once Run takes no more reloads

	newPublisher func(*config.Config, []collectors.PLCState) (publisher, error)
	newCollector func([]config.PLC) collector

	mu     sync.Mutex // guards groups and pub for status readers
	groups []*group   // in configuration order
	pub    publisher

	commands *commandSwitch // write-back from MQTT to the sessions (commands.go)

	reload reloadState // how the latest configuration load went (reloadstate.go)
}

// group is one collector and the PLC entries it serves (one ShareKey).
type group struct {
	key    string
	plcs   []config.PLC
	c      collector
	cancel context.CancelFunc
	done   chan struct{} // closed when c.Run has returned
	err    error         // c.Run's result, once done
}

// names is the entries' names as the session logs them.
func (g *group) names() string {
	names := make([]string, len(g.plcs))
	for i, p := range g.plcs {
		names[i] = p.Name
	}
	return strings.Join(names, ",")
}

func (g *group) endpoint() string {
	if len(g.plcs) == 0 {
		return ""
	}
	return g.plcs[0].Endpoint
}

type reloadRequest struct {
	cfg    *config.Config
	result chan error
}

// New prepares an agent for cfg; nothing starts until Run.
func New(cfg *config.Config, log zerolog.Logger) *Agent {
	opcuaLog := log.With().Str("component", "opcua").Logger()
	mqttLog := log.With().Str("component", "mqtt").Logger()
	var a *Agent
	a = &Agent{
		log:     log,
		cfg:     cfg,
		reloads: make(chan reloadRequest),
		exited:  make(chan struct{}),
		newPublisher: func(c *config.Config, states []collectors.PLCState) (publisher, error) {
			p, err := publish.New(c, mqttLog, states)
			if err != nil {
				return nil, fmt.Errorf("mqtt: %w", err)
			}
			p.SetCommands(a.commands)
			return p, nil
		},
		newCollector: func(plcs []config.PLC) collector { return opcua.NewSharedSession(plcs, opcuaLog) },
	}
	a.commands = newCommandSwitch(a, cfg, log.With().Str("component", "command").Logger())
	return a
}

// Run is New(cfg, log).Run(ctx).
func Run(ctx context.Context, cfg *config.Config, log zerolog.Logger) error {
	return New(cfg, log).Run(ctx)
}

// Run collects and publishes until ctx ends, then stops in order. It returns
// an error only when something fails that stops the whole agent. Run is
// called once.
func (a *Agent) Run(ctx context.Context) error {
	groups := a.plan(a.cfg)
	pub, err := a.newPublisher(a.cfg, states(groups))
	if err != nil {
		close(a.exited)
		return err
	}
	a.mu.Lock()
	a.pub, a.groups = pub, groups
	a.mu.Unlock()
	for _, g := range groups {
		a.logShared(g)
	}
	stopStatus, err := a.startStatus(ctx)
	if err != nil {
		close(a.exited)
		return err
	}
	defer stopStatus() // after the stop sequence, which it shows
	// Certificates running out: a Warn 30 days ahead.
	defer a.startExpiryWatch(ctx)()
	a.log.Info().Str("agent", a.cfg.Agent.ID).Int("plcs", len(a.cfg.PLCs)).Int("tags", a.cfg.TagCount()).Msg("agent starting")
	err = a.run(ctx)
	a.log.Info().Msg("agent stopped")
	return err
}

// run runs prepared sessions and a publisher, with no configuration: the
// tests' way in.
func run(ctx context.Context, sessions []collector, pub publisher) error {
	a := &Agent{log: zerolog.Nop(), reloads: make(chan reloadRequest), exited: make(chan struct{}), pub: pub}
	for i, s := range sessions {
		a.groups = append(a.groups, &group{key: fmt.Sprint(i), c: s})
	}
	return a.run(ctx)
}

// Trackers returns the live status of the running sessions, in
// configuration order; safe to call from any goroutine.
func (a *Agent) Trackers() []*collectors.Tracker {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*collectors.Tracker, len(a.groups))
	for i, g := range a.groups {
		out[i] = g.c.States()
	}
	return out
}

// PublisherStats returns the current publisher's counters (since it
// started: a reload that changes the MQTT settings starts a new one).
func (a *Agent) PublisherStats() publish.Stats {
	a.mu.Lock()
	p := a.pub
	a.mu.Unlock()
	if p == nil {
		return publish.Stats{}
	}
	return p.Stats()
}

// Reload applies cfg, an already validated configuration, while Run runs,
// and returns once it is in force. On an error the agent keeps running on
// the configuration it had.
func (a *Agent) Reload(cfg *config.Config) error {
	req := reloadRequest{cfg: cfg, result: make(chan error, 1)}
	select {
	case a.reloads <- req:
		return <-req.result
	case <-a.exited:
		return errors.New("reload: the agent is stopping")
	}
}

// pubRun is a publisher under way.
type pubRun struct {
	pub    publisher
	cancel context.CancelFunc
	done   chan error
}

func startPublisher(ctx context.Context, pub publisher, events <-chan collectors.Event) *pubRun {
	ctx, cancel := context.WithCancel(ctx)
	r := &pubRun{pub: pub, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- pub.Run(ctx, events) }()
	return r
}

func startGroup(ctx context.Context, g *group, events chan<- collectors.Event) {
	ctx, g.cancel = context.WithCancel(ctx)
	g.done = make(chan struct{})
	go func() {
		defer close(g.done)
		g.err = g.c.Collect(ctx, events)
	}()
}

func (a *Agent) run(ctx context.Context) error {
	collectCtx, stopCollecting := context.WithCancel(ctx)
	defer stopCollecting()

	// The publisher outlives ctx so it can drain; it is cut off only when the
	// shutdown budget is spent.
	publishCtx, stopPublishing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPublishing()
	go func() {
		<-collectCtx.Done()
		select {
		case <-time.After(ShutdownTimeout):
			stopPublishing()
		case <-publishCtx.Done():
		}
	}()

	events := make(chan collectors.Event, eventBuffer)
	pub := startPublisher(publishCtx, a.pub, events)
	for _, g := range a.groups {
		startGroup(collectCtx, g, events)
	}

	var pubErr error
	pubDone := false
loop:
	for {
		select {
		case <-collectCtx.Done():
			break loop
		case pubErr = <-pub.done: // a publisher that gives up stops the agent
			pubDone = true
			break loop
		case req := <-a.reloads:
			next, err, fatal := a.apply(collectCtx, publishCtx, req.cfg, events, pub)
			req.result <- err
			pub = next
			if fatal != nil {
				pubErr, pubDone = fatal, true
				break loop
			}
		}
	}
	close(a.exited)
	stopCollecting()

	errs := make([]error, 0, len(a.groups)+1)
	for _, g := range a.groups {
		<-g.done
		errs = append(errs, g.err)
	}
	close(events)
	if !pubDone {
		pubErr = <-pub.done
	}
	if pubErr == nil && ctx.Err() == nil {
		pubErr = errors.New("publisher stopped unexpectedly")
	}
	return errors.Join(append(errs, pubErr)...)
}

// apply switches to cfg in the order written at the top. It returns the
// publisher now running (nil with fatal, when none could be started), the
// reload's error, and fatal when the agent cannot go on.
func (a *Agent) apply(collectCtx, publishCtx context.Context, cfg *config.Config, events chan collectors.Event, pub *pubRun) (next *pubRun, err, fatal error) {
	started := time.Now()
	if cfg.Agent.LogLevel != a.cfg.Agent.LogLevel || cfg.Agent.LogFormat != a.cfg.Agent.LogFormat {
		a.log.Warn().Msg("reload: agent.log_level and agent.log_format take effect at the next start")
	}
	if statusChanged(a.cfg.Agent, cfg.Agent) {
		a.log.Warn().Msg("reload: agent.status_listen, status_allow_remote and status_token_file take effect at the next start")
	}

	switched := false
	if pub.pub.NeedsRestart(cfg) {
		a.log.Info().Msg("reload: MQTT settings or the list of PLC entries changed; reconnecting the publisher")
		pub.cancel()
		if err := <-pub.done; err != nil {
			a.log.Error().Err(err).Msg("reload: the old publisher failed while stopping")
		}
		p, err := a.newPublisher(cfg, states(a.groups))
		if err != nil {
			a.log.Error().Err(err).Msg("reload: cannot start the publisher with the new settings; keeping the old configuration")
			old, oldErr := a.newPublisher(a.cfg, states(a.groups))
			if oldErr != nil {
				fatal = fmt.Errorf("reload: cannot restart the publisher with the old settings either: %w", oldErr)
				return pub, err, fatal
			}
			a.setPublisher(old)
			return startPublisher(publishCtx, old, events), fmt.Errorf("reload refused: %w", err), nil
		}
		if cfg.Agent.SpoolDir != a.cfg.Agent.SpoolDir {
			if n := pub.pub.Stats().Spooled; n > 0 {
				a.log.Warn().Str("dir", a.cfg.Agent.SpoolDir).Uint64("values", n).
					Msg("reload: agent.spool_dir changed; the old spool keeps values it could not send")
			}
		}
		a.setPublisher(p)
		pub = startPublisher(publishCtx, p, events)
		switched = true
	} else if err := pub.pub.Retag(cfg); err != nil { // before the sessions send values of new tags
		return pub, fmt.Errorf("reload refused: %w", err), nil
	}

	// Sessions: keep the unchanged, stop the changed and removed, then start.
	old := make(map[string]*group, len(a.groups))
	for _, g := range a.groups {
		old[g.key] = g
	}
	planned := a.plan(cfg)
	kept := map[string]bool{}
	groups := make([]*group, 0, len(planned))
	retagged := 0
	for _, g := range planned {
		if o, ok := old[g.key]; ok && !o.c.NeedsRestart(g.plcs) {
			kept[g.key] = true
			if !reflect.DeepEqual(o.plcs, g.plcs) {
				// Only tags changed: the session changes its monitored
				// items and logs what it did; no state change, no stopped.
				o.c.Retag(g.plcs)
				o.plcs = g.plcs
				retagged++
			}
			groups = append(groups, o)
			continue
		}
		groups = append(groups, g)
	}
	var stopped, restarted, added int
	for _, o := range a.groups {
		if kept[o.key] {
			continue
		}
		o.cancel()
	}
	for _, o := range a.groups {
		if kept[o.key] {
			continue
		}
		<-o.done
		if o.err != nil {
			a.log.Error().Err(o.err).Str("plc", o.names()).Str("endpoint", o.endpoint()).Msg("reload: plc session failed while stopping")
		}
		if _, ok := indexOf(planned, o.key); ok {
			restarted++
			a.log.Info().Str("plc", o.names()).Str("endpoint", o.endpoint()).Msg("reload: plc settings changed; session restarting")
		} else {
			stopped++
			a.log.Info().Str("plc", o.names()).Str("endpoint", o.endpoint()).Msg("reload: plc removed; session stopped")
		}
	}
	for _, g := range groups {
		if kept[g.key] {
			continue
		}
		if _, ok := old[g.key]; !ok {
			added++
			a.log.Info().Str("plc", g.names()).Str("endpoint", g.endpoint()).Msg("reload: new plc; session starting")
		}
		a.logShared(g)
		startGroup(collectCtx, g, events)
	}
	a.mu.Lock()
	a.groups = groups
	a.mu.Unlock()
	a.cfg = cfg
	if a.commands != nil {
		a.commands.set(cfg)
	}

	a.log.Info().Int("unchanged", len(kept)-retagged).Int("restarted", restarted).Int("started", added).Int("stopped", stopped).
		Bool("publisher_reconnected", switched).Int("retagged", retagged).Int("plcs", len(cfg.PLCs)).Int("tags", cfg.TagCount()).
		Dur("took_ms", time.Since(started)).Msg("configuration reloaded")
	return pub, nil, nil
}

func (a *Agent) setPublisher(p publisher) {
	a.mu.Lock()
	a.pub = p
	a.mu.Unlock()
}

// plan groups cfg's PLC entries into sessions, not yet started.
func (a *Agent) plan(cfg *config.Config) []*group {
	var groups []*group
	for _, plcs := range shareSessions(cfg.PLCs) {
		c := a.newCollector(plcs)
		groups = append(groups, &group{key: opcua.ShareKey(plcs[0]), plcs: plcs, c: c})
	}
	return groups
}

// states are the current states of the groups' PLC entries, for a new
// publisher; the state changes that follow come on the event channel.
func states(groups []*group) []collectors.PLCState {
	var out []collectors.PLCState
	for _, g := range groups {
		out = append(out, g.c.States().Snapshot()...)
	}
	return out
}

func (a *Agent) logShared(g *group) {
	if len(g.plcs) > 1 {
		a.log.Info().Str("component", "opcua").Str("plc", g.names()).Str("endpoint", g.endpoint()).
			Msg("PLC entries with the same endpoint and security settings share one OPC UA session")
	}
}

func indexOf(groups []*group, key string) (int, bool) {
	for i, g := range groups {
		if g.key == key {
			return i, true
		}
	}
	return 0, false
}

// shareSessions groups PLC entries that may share one OPC UA session, in
// the order of the configuration.
func shareSessions(plcs []config.PLC) [][]config.PLC {
	var groups [][]config.PLC
	index := map[string]int{}
	for _, p := range plcs {
		k := opcua.ShareKey(p)
		if i, ok := index[k]; ok {
			groups[i] = append(groups[i], p)
			continue
		}
		index[k] = len(groups)
		groups = append(groups, []config.PLC{p})
	}
	return groups
}
