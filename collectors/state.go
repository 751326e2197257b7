package collectors

import (
	"slices"
	"sync"
	"time"
)

// States of a PLC entry's collection, as shown in status and logs.
const (
	StateConnecting   = "connecting"   // first connection attempt under way
	StateStreaming    = "streaming"    // subscribed, values flow
	StateRecovering   = "recovering"   // channel lost; reactivating the session without losing values
	StateDisconnected = "disconnected" // down; retrying with backoff
	StateStopped      = "stopped"      // the agent stopped collecting
)

// rateWindow is the period over which ValuesPerSecond is measured.
const rateWindow = 5 * time.Second

// PLCState is a snapshot of one PLC entry's collection.
type PLCState struct {
	PLC      string    `json:"plc"`
	State    string    `json:"state"`
	Reason   string    `json:"reason,omitempty"` // why it left streaming; empty while streaming
	Since    time.Time `json:"since"`            // when State last changed
	Endpoint string    `json:"endpoint"`

	// Link is how the collector reaches the PLC, in its protocol's terms
	// (OPC UA: security, secure channel and token, see opcua.Link); nil
	// when the collector has none. In JSON its fields follow endpoint (see
	// MarshalJSON); read back, it is the entry's RawLink.
	Link Link `json:"-"`

	Reconnects   uint64    `json:"reconnects"` // sessions established after the first
	Recoveries   uint64    `json:"recoveries"` // sessions reactivated on a new channel without a gap
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
	TagsOK       int       `json:"tags_ok"`
	TagsFailed   int       `json:"tags_failed"`
	Values       uint64    `json:"values"` // values collected since start
	ValuesPerSec float64   `json:"values_per_second"`

	ClockOffset        time.Duration `json:"-"` // PLC clock minus ours
	ClockOffsetSeconds float64       `json:"clock_offset_seconds"`

	LastValueAt time.Time `json:"last_value_at,omitzero"` // when the latest value was collected

	FailedTags []FailedTag `json:"failed_tags,omitempty"` // the tags the server refused, with why

	ConnectFailures uint64 `json:"connect_failures"` // connection attempts that failed before streaming

	NextAttempt time.Time `json:"next_attempt,omitzero"` // while disconnected: when the session tries again
}

// FailedTag is a tag the server refused (e.g. BadNodeIdUnknown after a
// PLC program change); the session asks for it again now and then.
type FailedTag struct {
	Tag    string `json:"tag"`
	Node   string `json:"node"`
	Status string `json:"status"`
}

// SetFailedTags records the tags of an entry the server refuses now.
func (t *Tracker) SetFailedTags(plc string, failed []FailedTag) {
	t.mu.Lock()
	if p := t.plcs[plc]; p != nil {
		p.FailedTags = failed
	}
	t.mu.Unlock()
}

// Tracker keeps the live status of the PLC entries one collector serves.
// It is safe for concurrent use; the collector writes, status readers
// take snapshots, and an observer hears of every state change.
type Tracker struct {
	mu       sync.Mutex
	order    []string
	plcs     map[string]*plcTrack
	onChange func(PLCState)
	ever     bool // some entry has streamed: later sessions count as reconnects
}

type plcTrack struct {
	PLCState
	// The rate window: values counted since windowStart, the latest at
	// lastValue; lastRate is the rate of the window before. Collected, the
	// writer, starts a new window once one is complete; readers only read.
	windowStart time.Time
	windowCount uint64
	lastValue   time.Time
	lastRate    float64
}

// NewTracker starts every entry in StateConnecting.
func NewTracker(endpoint string, plcs ...string) *Tracker {
	t := &Tracker{plcs: make(map[string]*plcTrack, len(plcs))}
	now := time.Now()
	for _, name := range plcs {
		t.order = append(t.order, name)
		t.plcs[name] = &plcTrack{
			PLCState:    PLCState{PLC: name, State: StateConnecting, Since: now, Endpoint: endpoint},
			windowStart: now,
		}
	}
	return t
}

// OnChange registers fn to hear of every state change, after it happened,
// outside the tracker's lock, in order for each entry. Set it before the
// collector runs.
func (t *Tracker) OnChange(fn func(PLCState)) {
	t.mu.Lock()
	t.onChange = fn
	t.mu.Unlock()
}

// SetState moves every entry to state, with reason (empty when streaming).
// It reports whether the state changed.
func (t *Tracker) SetState(state, reason string) bool {
	t.mu.Lock()
	var changed []PLCState
	now := time.Now()
	if state == StateStreaming {
		for _, p := range t.plcs {
			if p.State != StateStreaming && t.ever && p.State != StateRecovering {
				p.Reconnects++
			}
		}
		t.ever = true
	}
	for _, name := range t.order {
		p := t.plcs[name]
		if p.State == state && p.Reason == reason {
			continue
		}
		p.State, p.Reason, p.Since = state, reason, now
		changed = append(changed, p.snapshot(now))
	}
	fn := t.onChange
	t.mu.Unlock()
	if fn != nil {
		for _, c := range changed {
			fn(c)
		}
	}
	return len(changed) > 0
}

// update runs fn on every entry under the lock.
func (t *Tracker) update(fn func(p *plcTrack)) {
	t.mu.Lock()
	for _, p := range t.plcs {
		fn(p)
	}
	t.mu.Unlock()
}

// NoteError records the latest failure.
func (t *Tracker) NoteError(err error) {
	if err == nil {
		return
	}
	now := time.Now()
	t.update(func(p *plcTrack) { p.LastError, p.LastErrorAt = err.Error(), now })
}

// SetNextAttempt records when a disconnected entry is tried again (zero:
// not waiting).
func (t *Tracker) SetNextAttempt(at time.Time) { t.update(func(p *plcTrack) { p.NextAttempt = at }) }

// NoteConnectFailure counts a connection attempt that failed before the
// entry streamed (refused, timed out, security rejected).
func (t *Tracker) NoteConnectFailure() { t.update(func(p *plcTrack) { p.ConnectFailures++ }) }

// NoteRecovery counts a session reactivated on a new channel.
func (t *Tracker) NoteRecovery() { t.update(func(p *plcTrack) { p.Recoveries++ }) }

// UpdateLink changes every entry's Link to what fn makes of it (nil at
// first). fn runs under the tracker's lock: it must be quick, and it must
// return a new value rather than change one it was given.
func (t *Tracker) UpdateLink(fn func(Link) Link) {
	t.update(func(p *plcTrack) { p.Link = fn(p.Link) })
}

// SetClockOffset records the PLC's clock minus ours.
func (t *Tracker) SetClockOffset(d time.Duration) {
	t.update(func(p *plcTrack) { p.ClockOffset = d })
}

// SetTags records, per entry, how many tags the server accepted and refused.
func (t *Tracker) SetTags(plc string, ok, failed int) {
	t.mu.Lock()
	if p := t.plcs[plc]; p != nil {
		p.TagsOK, p.TagsFailed = ok, failed
	}
	t.mu.Unlock()
}

// Collected counts the values of a batch for their entries.
func (t *Tracker) Collected(b Batch) {
	if len(b) == 0 {
		return
	}
	now := time.Now()
	t.mu.Lock()
	var p *plcTrack
	for i := range b {
		if p == nil || p.PLC != b[i].PLC {
			p = t.plcs[b[i].PLC]
			if p == nil {
				continue
			}
			p.roll(now)
		}
		p.Values++
		p.windowCount++
	}
	t.mu.Unlock()
}

// Names returns the entries' names, in configuration order.
func (t *Tracker) Names() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.order)
}

// Snapshot returns the status of every entry, in configuration order.
func (t *Tracker) Snapshot() []PLCState {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]PLCState, 0, len(t.order))
	for _, name := range t.order {
		out = append(out, t.plcs[name].snapshot(now))
	}
	return out
}

// roll starts a new rate window once the current one is complete, keeping
// its rate. Called with the lock held, for a value taken at now.
func (p *plcTrack) roll(now time.Time) {
	if el := now.Sub(p.windowStart); el >= rateWindow {
		p.lastRate = float64(p.windowCount) / el.Seconds()
		p.windowStart, p.windowCount = now, 0
	}
	p.lastValue = now
}

// snapshot is the entry's status at now, with the rate over the current
// window (the one before while the current is under a second old, 0 once
// a whole window passed without a value); it changes nothing. Called with
// the lock held.
func (p *plcTrack) snapshot(now time.Time) PLCState {
	s := p.PLCState
	el := now.Sub(p.windowStart)
	switch {
	case p.windowCount > 0 && now.Sub(p.lastValue) >= rateWindow, p.windowCount == 0 && el >= rateWindow:
		s.ValuesPerSec = 0
	case el >= time.Second:
		s.ValuesPerSec = float64(p.windowCount) / el.Seconds()
	default:
		s.ValuesPerSec = p.lastRate
	}
	s.ClockOffsetSeconds = s.ClockOffset.Seconds()
	s.LastValueAt = p.lastValue
	s.FailedTags = slices.Clone(p.FailedTags)
	return s
}
