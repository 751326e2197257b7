// Package opcua collects tag values from OPC UA servers (PLCs): one Session
// per PLC, each owning its session client (uaclient), subscriptions and
// reconnect loop.
package opcua

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/subscription"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
	"github.com/tagbridge/tagbridge/config"
)

const (
	// defaultItemsPerCall bounds CreateMonitoredItems requests when the server
	// does not report MaxMonitoredItemsPerCall.
	defaultItemsPerCall = 500
	// healthInterval is how often a streaming session reads the server state,
	// which catches sessions that look connected but are dead.
	healthInterval = 5 * time.Second
	// healthyAfter is how long a session must stream before backoff resets.
	healthyAfter = 10 * time.Second
	// keepAliveEvery is the target time between subscription keep-alives;
	// well inside the request timeout that bounds each PublishRequest.
	keepAliveEvery = 5 * time.Second
	// dialTimeout bounds opening the TCP connection to a PLC.
	dialTimeout = 10 * time.Second
	// closeTimeout bounds closing a session on the way out.
	closeTimeout = 2 * time.Second
	// heartbeatHandle and above are client handles of heartbeat items, never tags.
	heartbeatHandle = 1 << 31
	// heartbeatEvery is the sampling interval of the heartbeat item.
	heartbeatEvery = time.Second
	// minWatchdog is the shortest silence the watchdog accepts: a few heartbeats.
	minWatchdog = 5 * time.Second
)

// Session collects one PLC's tags over one OPC UA session and reconnects
// forever until its context ends. PLC entries with the same endpoint and
// security settings share one session (see ShareKey).
type Session struct {
	plc config.PLC // the first entry: connection, security and timing settings
	// tags are every entry's tags; the index is the client handle. Only
	// the session's goroutine changes it (retag.go), under tagsMu, which
	// readers on other goroutines (commands) hold.
	tags   []tagRef
	tagsMu sync.RWMutex
	// items are the tags' monitored items, by handle (retag.go).
	items map[uint32]itemRef
	// entries are the entries served, as the agent last asked (NeedsRestart,
	// Retag; the agent's goroutine only); pendingTags are those a Retag
	// asked for and the session has not applied yet.
	entries     []config.PLC
	retagMu     sync.Mutex
	pendingTags []config.PLC
	itemsUnsure bool // a retag's requests failed part-way (retag.go)

	log     zerolog.Logger
	backoff Backoff

	// rejected remembers the status of tags the server refused, so each is
	// logged once per status rather than once per reconnect.
	rejected map[uint32]ua.StatusCode
	// declared is each tag's type from its DataType attribute (TypeNull when not
	// a built-in type), by handle: the Type of a sample without a value.
	declared []collectors.Type
	// newRejections are the tags refused since the last summary, for one
	// warning per subscribe or retry round.
	newRejections []string
	// refusedToSend are the tags refused with a new status, whose failure
	// goes out on their own topics (publishRefused).
	refusedToSend []uint32

	states *collectors.Tracker // the PLC entries' states, which status, health and metrics show

	// retry cuts the wait before the next connection attempt short
	// (RetryNow); waiting is true during that wait.
	retry   chan struct{}
	waiting atomic.Bool

	clockOffset    atomic.Int64 // PLC clock minus ours, in ns, from the heartbeat
	skewWarned     bool         // the clock offset warning is given once
	hostnameWarned bool         // the verify_hostname: false warning is given once
	sha1Warned     bool         // the allow_sha1 warning is given once

	reverse *reverseListener // with reverse connect, while Run runs
	gaps    gapState         // the gap fill from the PLC's history (history.go)
	subIDs  []uint32         // the subscriptions created last (namespaces.go)
	// nsSubscribed is the NamespaceArray the monitored items were resolved with.
	nsSubscribed []string

	chanWatch chanWatch // the secure channel's tokens, as last reported to status

	maxItemsPerSub int // items per subscription before the tags are split; 0: the default (tests lower it)

	link writeLink // the client commands use (write.go)

	types  structTypes // the PLC's structure types, by their definitions (typedefs.go)
	beats  *heartbeats // republish unchanged values (heartbeat.go); nil: no tag has a heartbeat
	events []eventRef  // event streams (events.go); handle eventHandle+i is events[i]

	limits       serverLimits                    // the server's, read at every session start
	subsAllowed  int                             // subscriptions the server took before BadTooManySubscriptions; 0: not seen
	merged       map[time.Duration]time.Duration // publishing intervals carried by a faster one's subscriptions
	mergedLogged string                          // the merge last logged
}

// ClockOffset is the last estimate of the PLC's clock minus the agent's; 0
// until the first heartbeat.
func (s *Session) ClockOffset() time.Duration { return time.Duration(s.clockOffset.Load()) }

// States is the live state of the session's PLC entries, for health,
// status and metrics; set its OnChange before Run to hear of state changes.
func (s *Session) States() *collectors.Tracker { return s.states }

// tagRef is a tag and the name of the PLC entry it belongs to. It points
// at the configuration's tag rather than copying it: 130 bytes a tag, 13 MB
// with 100,000 tags (docs/performance.md).
type tagRef struct {
	plc string
	*config.Tag
}

// NewSession prepares a session for plc; nothing connects until Run.
func NewSession(plc config.PLC, log zerolog.Logger) *Session {
	return NewSharedSession([]config.PLC{plc}, log)
}

// NewSharedSession prepares one session for PLC entries that share a
// ShareKey; the first entry's connection settings apply.
func NewSharedSession(plcs []config.PLC, log zerolog.Logger) *Session {
	plc := plcs[0]
	names := make([]string, 0, len(plcs))
	count := 0
	for _, p := range plcs {
		count += len(p.Tags)
	}
	tags := make([]tagRef, 0, count)
	for _, p := range plcs {
		names = append(names, p.Name)
		for i := range p.Tags {
			tags = append(tags, tagRef{plc: p.Name, Tag: &p.Tags[i]})
		}
	}
	s := &Session{
		plc:    plc,
		tags:   tags,
		states: collectors.NewTracker(plc.Endpoint, names...),
		log:    log.With().Str("plc", strings.Join(names, ",")).Str("endpoint", plc.Endpoint).Logger(),
		backoff: Backoff{
			Min: plc.Reconnect.Min.Duration(),
			Max: plc.Reconnect.Max.Duration(),
		},
		rejected: map[uint32]ua.StatusCode{},
		retry:    make(chan struct{}, 1),
		items:    map[uint32]itemRef{},
		entries:  plcs,
	}
	s.link.entries = map[string]config.PLC{}
	for _, p := range plcs {
		s.link.entries[p.Name] = p
	}
	s.beats = heartbeatsFor(plc, tags)
	s.events = eventsOf(plcs)
	s.updateLink(func(*Link) {}) // status shows the channel fields, zero, before the first connection
	return s
}

// warnSettings logs, once at start, the settings that weaken security.
func (s *Session) warnSettings() {
	sec := s.plc.Security
	if sec.Deprecated() {
		s.log.Warn().Str("policy", sec.Policy).Msg("deprecated security policy: its cryptography is broken; use Basic256Sha256 or an Aes policy")
	}
	if sec.Policy == "None" && s.plc.Auth.Username != "" {
		s.log.Warn().Msg("user name with security policy None: the password is protected only if the server's user token policy encrypts it")
	}
	if sec.Policy != "None" && !sec.VerifyHostname {
		s.log.Warn().Msg("verify_hostname is false: a server certificate for another host is accepted")
	}
}

// Run connects, subscribes and sends every data change to out until ctx
// ends. Failures are logged and retried with backoff; Run returns nil on
// cancellation.
func (s *Session) Run(ctx context.Context, out chan<- collectors.Batch) error {
	s.warnSettings()
	defer s.states.SetState(collectors.StateStopped, "")
	defer s.unlisten()
	s.loadGapState() // a gap across the agent's restart is filled too (history.go)
	defer s.saveGapState(true)
	out, stopBeats := s.withHeartbeats(ctx, out)
	defer stopBeats()
	var lastErr string
	for attempt := 0; ; attempt++ {
		healthy, err := s.connectAndStream(ctx, out)
		if ctx.Err() != nil {
			return nil
		}
		err = serverSide(err)
		s.states.NoteError(err)
		if !healthy {
			s.states.NoteConnectFailure()
		}
		s.states.SetState(collectors.StateDisconnected, err.Error())
		if healthy {
			attempt = 0
			lastErr = ""
		}
		wait := s.backoff.Next(attempt)
		if full := tooManyClients(err); full != nil {
			// A full PLC frees a place only when a client leaves: retrying
			// fast would only take the place an operator's HMI waits for.
			wait = max(wait, s.backoff.Max)
			if !errors.Is(err, full) {
				err = fmt.Errorf("%w: %w", full, err)
			}
		}
		ev := s.log.Warn()
		if err.Error() == lastErr {
			ev = s.log.Debug() // same failure again: once per state change
		}
		lastErr = err.Error()
		ev.Err(err).Int("attempt", attempt+1).Dur("backoff_ms", wait).Str("state", "disconnected").Msg("plc session down; retrying")
		select {
		case <-s.retry: // asked before this wait: stale
		default:
		}
		s.states.SetNextAttempt(time.Now().Add(wait))

		s.waiting.Store(true)
		select {
		case <-time.After(wait):
		case <-s.retry:
			s.log.Info().Msg("retrying now, as asked")
		case <-ctx.Done():
			s.waiting.Store(false)
			return nil
		}
		s.waiting.Store(false)
	}
}

// RetryNow makes a session waiting to reconnect try at once; false when
// it is not waiting (connecting, streaming or stopped).
func (s *Session) RetryNow() bool {
	if !s.waiting.Load() {
		return false
	}
	select {
	case s.retry <- struct{}{}:
	default: // already asked
	}
	return true
}

// connectAndStream runs one session from dial to loss. A lost channel is
// recovered without losing values where the server allows it (see
// recover); only when that fails does it return. healthy reports whether
// it streamed long enough to reset the backoff.
func (s *Session) connectAndStream(ctx context.Context, out chan<- collectors.Batch) (healthy bool, err error) {
	if err := s.listen(); err != nil {
		return false, err
	}
	s.retagOffline() // a reload's tags, taken while not streaming
	p, err := s.prepare(ctx)
	if err != nil {
		return false, err
	}
	c, err := s.dial(ctx, p)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() { closeClient(ctx, c) }() // c changes as the session moves
	defer s.link.attach(nil)               // commands: the PLC is down from here
	st := s.newFeed(out)
	if err := s.subscribe(ctx, c, st); err != nil {
		return false, err
	}
	s.link.attach(c)
	s.log.Info().Str("state", collectors.StateConnecting).Int("tags", len(s.tags)).Int("subscriptions", st.Len()).
		Int("rejected", len(s.rejected)).Msg("plc session established")
	s.fillGaps(ctx, c, out)
	s.publishRefused(ctx, out)
	s.reportTags()
	s.await(st, collectors.StateConnecting, "subscribed; waiting for the first notification")

	started := time.Now()
	moved := false // the session moved to a new channel
	for {
		got := st.progress()
		err := s.stream(ctx, c, st)
		// A session that delivered nothing is not healthy however long it lasted.
		healthy = healthy || (time.Since(started) >= healthyAfter && st.progress() > got)
		if ctx.Err() != nil {
			return healthy, nil
		}
		if errors.Is(err, subscription.ErrGone) {
			// The session is fine; its subscriptions are not.
			s.log.Warn().Err(err).Msg("plc subscriptions lost; recreating them")
			s.retagOffline()
			if err := s.subscribe(ctx, c, st); err != nil {
				return healthy, err
			}
			s.reportTags()
			s.await(st, collectors.StateRecovering, "subscriptions recreated; waiting for the first notification")
			s.fillGaps(ctx, c, out)
			s.publishRefused(ctx, out)
			continue
		}
		s.states.NoteError(err)
		if moved && st.progress() == got {
			// Nothing came on the new channel: some servers (gopcua's)
			// reactivate a session but not its subscriptions.
			return healthy, fmt.Errorf("%w; nothing arrived since the session moved to a new channel", err)
		}
		moved = true
		s.link.attach(nil)
		c, err = s.recover(ctx, c, p, st, err)
		if err != nil {
			return healthy, err
		}
		s.fillGaps(ctx, c, out)
		s.link.attach(c)
		started = time.Now()
	}
}

// dial opens a secure channel and a session on it, and pins the server's
// certificate if it was trusted on first use.
func (s *Session) dial(ctx context.Context, p *plan) (*uaclient.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, 2*dialTimeout)
	defer cancel()
	c, err := uaclient.Connect(dctx, p.cfg)
	if err != nil {
		return nil, explain(p, s.plc.Auth.CertificateFile, err)
	}
	if err := s.commitTrust(p); err != nil {
		closeClient(ctx, c)
		return nil, err
	}
	return c, nil
}

// closeClient closes c's session and channel, bounded in time.
func closeClient(ctx context.Context, c *uaclient.Client) {
	if c == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	_ = c.Close(cctx) // the client is going away either way
}

// watchdog catches a session that looks connected but delivers nothing:
// every subscription also monitors the server's CurrentTime as a
// heartbeat; the watchdog arms once that is seen to tick, so servers that
// never update it are left to the health check.
type watchdog struct {
	timeout time.Duration
	last    time.Time
	beats   int
}

func (s *Session) newWatchdog() *watchdog {
	var slowest time.Duration
	for _, t := range s.tags {
		slowest = max(slowest, t.PublishingInterval.Duration())
	}
	return &watchdog{
		timeout: max(time.Duration(s.plc.WatchdogIntervals)*slowest, minWatchdog),
		last:    time.Now(),
	}
}

func (w *watchdog) activity()  { w.last = time.Now() }
func (w *watchdog) heartbeat() { w.beats++ }

func (w *watchdog) check() error {
	if silent := time.Since(w.last); w.beats >= 2 && silent > w.timeout {
		return fmt.Errorf("watchdog: no data and no heartbeat for %v", silent.Round(time.Millisecond))
	}
	return nil
}

// noteHeartbeat feeds the watchdog and estimates the PLC's clock offset
// from the server's CurrentTime.
func (s *Session) noteHeartbeat(dv *ua.DataValue, dog *watchdog) {
	dog.heartbeat()
	if dv == nil || dv.Value == nil {
		return
	}
	serverNow, ok := dv.Value.Value().(time.Time)
	if !ok || serverNow.IsZero() {
		return
	}
	offset := serverNow.Sub(time.Now())
	s.clockOffset.Store(int64(offset))
	s.states.SetClockOffset(offset)
	if !s.skewWarned && offset.Abs() > s.plc.ClockSkewWarning.Duration() {
		s.skewWarned = true
		s.log.Warn().Dur("clock_offset_ms", offset).Str("offset", offset.Round(time.Millisecond).String()).
			Msg("PLC clock differs from ours; payloads keep the PLC's timestamps")
	}
}

// checkHealth reads the server state: a session whose channel looks open
// but whose server is gone or shutting down fails here.
func (s *Session) checkHealth(ctx context.Context, c *uaclient.Client) error {
	v, err := readValue(ctx, c, id.Server_ServerStatus_State)
	var st ua.StatusCode
	if errors.As(err, &st) && !isSessionError(st) {
		return nil // the server answered; it just does not expose its state
	}
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	if st, ok := v.Value().(int32); ok && ua.ServerState(st) != ua.ServerStateRunning {
		return fmt.Errorf("health check: server state %v", ua.ServerState(st))
	}
	return nil
}

// isSessionError tells status codes that mean the session or channel is gone.
func isSessionError(c ua.StatusCode) bool {
	switch c {
	case ua.StatusBadSessionIDInvalid, ua.StatusBadSessionClosed, ua.StatusBadSessionNotActivated,
		ua.StatusBadSecureChannelIDInvalid, ua.StatusBadSecureChannelClosed, ua.StatusBadServerNotConnected,
		ua.StatusBadServerHalted, ua.StatusBadShutdown, ua.StatusBadCommunicationError, ua.StatusBadConnectionClosed,
		ua.StatusBadTimeout, ua.StatusBadTooManySessions:
		return true
	}
	return false
}

// handle turns one data change notification into one batch of samples and
// hands it to out; it returns early when ctx ends.
func (s *Session) handle(ctx context.Context, n *ua.DataChangeNotification, out chan<- collectors.Batch, dog *watchdog) {
	batch := make(collectors.Batch, 0, len(n.MonitoredItems))
	for _, item := range n.MonitoredItems {
		if item != nil && item.ClientHandle >= heartbeatHandle {
			s.noteHeartbeat(item.Value, dog)
			continue
		}
		if item == nil || int(item.ClientHandle) >= len(s.tags) {
			s.log.Warn().Msg("notification for an unknown monitored item; ignored")
			continue
		}
		if s.tags[item.ClientHandle].Tag == removedTag {
			continue // removed by a reload; a notification already on its way
		}
		if s.fenced(item.ClientHandle, item.Value) {
			continue // handed on from the PLC's history already
		}
		tag := s.tags[item.ClientHandle]
		if item.Value != nil {
			s.types.resolve(item.Value.Value, s.log)
		}
		smp := sampleFrom(tag.plc, tag.Name, tag.Node.String(), item.Value)
		s.noteSent(item.ClientHandle, smp.SourceTime)
		if !smp.HasValue() && int(item.ClientHandle) < len(s.declared) && s.declared[item.ClientHandle] != collectors.TypeNull {
			smp.Type = s.declared[item.ClientHandle] // no value: say what the node holds
		}
		batch = append(batch, smp)
	}
	if len(batch) == 0 {
		return
	}
	s.states.Collected(batch)
	s.link.delivered(batch) // read-back of writes (write.go)
	select {
	case out <- batch:
	case <-ctx.Done():
	}
}
