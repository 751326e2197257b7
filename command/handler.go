package command

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/config"
)

// Message is an MQTT message to publish: a command's result.
type Message struct {
	Topic   string
	Payload []byte
}

// rules are one PLC entry's allow-list and safety settings.
type rules struct {
	tags      map[string]config.Tag    // writable tags by name
	methods   map[string]config.Method // callable methods by name
	expiry    time.Duration
	maxExpiry time.Duration
	secret    []byte
}

// route is what a command topic addresses.
type route struct {
	kind   Kind
	plc    string
	target string
	reply  string
}

// Handler checks and runs the commands of every PLC entry. It is safe for
// concurrent use; each command runs on the caller's goroutine.
type Handler struct {
	format string
	rules  map[string]*rules
	routes map[string]route // command topic -> what it addresses (json, opcua_json)
	// patterns catch commands for anything else under the topic templates,
	// so that they are answered (refused) rather than ignored.
	patterns []pattern
	sp       *sparkplugRoutes // sparkplug_b: DCMD topics
	exec     Executor
	log      zerolog.Logger
	now      func() time.Time

	mu     sync.Mutex
	seen   map[seenKey]time.Time // ids seen, until their command's expiry
	counts map[string]uint64     // results by status name
	recent []Record              // the last commands, newest last
}

type seenKey struct{ plc, id string }

// Record is one command as audited, for status.
type Record struct {
	Time    time.Time     `json:"time"`
	PLC     string        `json:"plc"`
	Kind    string        `json:"kind"`
	Target  string        `json:"target"`
	ID      string        `json:"id"`
	Status  string        `json:"status"`
	Error   string        `json:"error,omitempty"`
	Latency time.Duration `json:"latency_ns"`
}

// recentKept is how many commands Recent returns.
const recentKept = 20

// maxSeen bounds the ids remembered; beyond it new commands are refused
// until old ones expire, so a flood cannot grow memory without bound.
const maxSeen = 100_000

// New builds the handler of cfg's commands, run by exec.
func New(cfg *config.Config, exec Executor, log zerolog.Logger) *Handler {
	h := &Handler{
		format: cfg.MQTT.Payload,
		rules:  map[string]*rules{},
		routes: map[string]route{},
		exec:   exec,
		log:    log,
		now:    time.Now,
		seen:   map[seenKey]time.Time{},
		counts: map[string]uint64{},
	}
	for _, p := range cfg.PLCs {
		r := &rules{
			tags:      map[string]config.Tag{},
			methods:   map[string]config.Method{},
			expiry:    cmp.Or(p.Commands.Expiry.Duration(), config.DefaultCommandExpiry),
			maxExpiry: cmp.Or(p.Commands.MaxExpiry.Duration(), config.DefaultCommandMaxExpiry),
			secret:    []byte(p.Commands.Secret.Reveal()),
		}
		for _, t := range p.Tags {
			if t.Writable {
				r.tags[t.Name] = t
				topic := render(cmp.Or(t.Topic, cfg.MQTT.Topic), cfg.Agent.ID, p.Name, t.Name) + "/set"
				h.routes[topic] = route{Write, p.Name, t.Name, topic + "/result"}
			}
		}
		for _, m := range p.Commands.Methods {
			r.methods[m.Name] = m
			topic := render(cfg.MQTT.Topic, cfg.Agent.ID, p.Name, m.Name) + "/call"
			h.routes[topic] = route{Call, p.Name, m.Name, topic + "/result"}
		}
		h.rules[p.Name] = r
	}
	h.patterns = patternsOf(cfg)
	if h.format == config.PayloadSparkplugB {
		h.sp = newSparkplugRoutes(cfg)
	}
	return h
}

func render(tmpl, agent, plc, tag string) string {
	return strings.NewReplacer("{agent}", agent, "{plc}", plc, "{tag}", tag).Replace(tmpl)
}

// Filters are the topics to subscribe to, at QoS 1; none when nothing is
// writable.
func (h *Handler) Filters() []string {
	var out []string
	if len(h.routes) == 0 {
		return nil
	}
	for t := range h.routes {
		if !h.covered(t) {
			out = append(out, t)
		}
	}
	for _, p := range h.patterns {
		out = append(out, p.filter)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if h.sp != nil && len(out) > 0 {
		out = append(out, h.sp.filter, h.sp.ncmd)
	}
	return out
}

// Handle runs the command in one received message and returns the
// results to publish. retained is the message's retain flag.
func (h *Handler) Handle(ctx context.Context, topic string, payload []byte, retained bool) []Message {
	received := h.now()
	var items []pending
	if rt, ok := h.routes[topic]; ok {
		req, err := decodeJSON(rt.kind, topic, payload)
		req.Kind, req.PLC, req.Target, req.Reply = rt.kind, rt.plc, rt.target, rt.reply
		items = []pending{{req, err}}
	} else if rt, ok := h.match(topic); ok {
		req, err := decodeJSON(rt.kind, topic, payload)
		req.Kind, req.PLC, req.Target, req.Reply = rt.kind, rt.plc, rt.target, rt.reply
		items = []pending{{req, err}}
	} else if h.sp != nil && h.sp.matches(topic) {
		ps, err := h.sp.decode(topic, payload)
		if err != nil {
			ps = []pending{{Request{PLC: h.sp.devices[topic[len(h.sp.prefix):]]}, err}}
		}
		items = ps
	} else if h.sp != nil && topic == h.sp.ncmd {
		ps, err := h.sp.decodeNCMD(topic, payload)
		if err != nil {
			ps = []pending{{Request{Reply: h.sp.nodeAck}, err}}
		}
		items = ps
	} else {
		return nil
	}
	var out []Message
	for _, it := range items {
		req := it.req
		req.Topic, req.Retained, req.Received, req.Format = topic, retained, received, h.format
		var res Result
		if it.err != nil {
			res = h.refused(req, it.err)
		} else {
			res = h.run(ctx, req)
		}
		out = h.reply(out, req.Reply, res)
	}
	return out
}

// pending is a decoded command, or why it could not be decoded.
type pending struct {
	req Request
	err error
}

func (h *Handler) reply(out []Message, topic string, res Result) []Message {
	if topic == "" {
		return out
	}
	return append(out, Message{Topic: topic, Payload: EncodeResult(res)})
}

// run checks req and, when it passes, executes it; every command is
// audited once.
func (h *Handler) run(ctx context.Context, req Request) Result {
	if err := h.check(req); err != nil {
		return h.refused(req, err)
	}
	var out Outcome
	var err error
	if req.Kind == Call {
		out, err = h.exec.Call(ctx, req.PLC, req.Target, req.Args)
	} else {
		out, err = h.exec.Write(ctx, req.PLC, req.Target, req.Value, req.Type)
	}
	if err != nil {
		var r *Refusal
		if errors.As(err, &r) {
			return h.refused(req, r)
		}
		// Sent, but the answer never came: the write may have happened.
		return h.finish(req, Result{ID: req.ID, Status: Status{"BadCommunicationError", 0x80050000}, Error: err.Error()})
	}
	res := Result{ID: req.ID, Status: out.Status, Value: out.Value, ReadBack: out.ReadBack, Outputs: out.Outputs, HasValue: out.ReadBack != ""}
	if out.Status.Code>>31 == 1 {
		res.Error = "the PLC answered " + out.Status.Name
	}
	return h.finish(req, res)
}

func (h *Handler) refused(req Request, err error) Result {
	r := errorAs(err, BadRequest)
	return h.finish(req, Result{ID: req.ID, Status: r.Status, Error: r.Reason})
}

func errorAs(err error, fallback Status) *Refusal {
	var r *Refusal
	if errors.As(err, &r) {
		return r
	}
	return &Refusal{Status: fallback, Reason: err.Error()}
}

// finish audits a command: one Info line, the count by status, and the
// recent list.
func (h *Handler) finish(req Request, res Result) Result {
	latency := h.now().Sub(req.Received)
	h.mu.Lock()
	h.counts[res.Status.Name]++
	h.recent = append(h.recent, Record{Time: req.Received, PLC: req.PLC, Kind: req.Kind.String(), Target: req.Target,
		ID: req.ID, Status: res.Status.Name, Error: res.Error, Latency: latency})
	if len(h.recent) > recentKept {
		h.recent = slices.Delete(h.recent, 0, len(h.recent)-recentKept)
	}
	h.mu.Unlock()
	ev := h.log.Info().Str("plc", req.PLC).Str("kind", req.Kind.String()).Str("target", req.Target).
		Str("id", req.ID).Str("topic", req.Topic).Str("result", res.Status.Name).Dur("latency_ms", latency)
	if req.Kind == Call {
		ev = ev.Interface("args", req.Args)
	} else {
		ev = ev.Interface("value", req.Value)
	}
	if res.Error != "" {
		ev = ev.Str("error", res.Error)
	}
	ev.Msg("command")
	return res
}

// check applies the safety rules in order: addressed to something
// allowed, fresh, signed, not seen before, within limits. Nothing that
// fails here reaches the PLC.
func (h *Handler) check(req Request) error {
	r := h.rules[req.PLC]
	if r == nil {
		return refuse(NotAllowed, "plc %q takes no commands", req.PLC)
	}
	var tag config.Tag
	switch req.Kind {
	case Write:
		t, ok := r.tags[req.Target]
		if !ok {
			return refuse(NotAllowed, "tag %q of plc %q is not writable", req.Target, req.PLC)
		}
		tag = t
	case Call:
		if _, ok := r.methods[req.Target]; !ok {
			return refuse(NotAllowed, "method %q of plc %q is not allowed", req.Target, req.PLC)
		}
	}
	if req.ID == "" {
		return refuse(BadRequest, "id required")
	}
	if req.Retained {
		return refuse(Expired, "a retained command is never executed (it may be old)")
	}
	expiry := h.expiry(req, r)
	if !req.Received.Before(expiry) {
		return refuse(Expired, "expired at %s, received %s", expiry.UTC().Format(time.RFC3339Nano), req.Received.UTC().Format(time.RFC3339Nano))
	}
	if len(r.secret) > 0 {
		if req.MAC == nil && req.Format == config.PayloadSparkplugB {
			return refuse(BadSignature, "hmac required (the metric's property \"hmac\")")
		}
		if req.MAC == nil {
			return refuse(BadSignature, "hmac required")
		}
		mac := hmac.New(sha256.New, r.secret)
		mac.Write(req.Signed)
		if !hmac.Equal(mac.Sum(nil), req.MAC) {
			return refuse(BadSignature, "hmac does not match")
		}
	}
	if req.Kind == Write {
		if err := checkLimits(req.Value, tag.Write); err != nil {
			return err
		}
	} else if m := r.methods[req.Target]; len(req.Args) != len(m.Args) {
		return refuse(WrongType, "method %q takes %d arguments, got %d", req.Target, len(m.Args), len(req.Args))
	}
	return h.remember(req.PLC, req.ID, req.Received, expiry)
}

// expiry is when req goes stale: its own expires, else its sent time (or,
// lacking that, its arrival) plus the PLC's expiry; never later than
// max_expiry after arrival.
func (h *Handler) expiry(req Request, r *rules) time.Time {
	limit := req.Received.Add(r.maxExpiry)
	e := req.Expires
	if e.IsZero() {
		e = cmp.Or(req.Sent, req.Received).Add(r.expiry)
	}
	if e.After(limit) {
		return limit
	}
	return e
}

// remember records a command id until expiry; an id already remembered is
// a duplicate (a QoS 1 redelivery, or a replay).
func (h *Handler) remember(plc, id string, now, expiry time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := seenKey{plc, id}
	if until, ok := h.seen[k]; ok && now.Before(until) {
		return refuse(Duplicate, "id %q was taken already", id)
	}
	if len(h.seen) >= maxSeen {
		for k, until := range h.seen {
			if !now.Before(until) {
				delete(h.seen, k)
			}
		}
		if len(h.seen) >= maxSeen {
			return refuse(Duplicate, "too many commands within their lifetime (%d); id %q not taken", maxSeen, id)
		}
	}
	h.seen[k] = expiry
	return nil
}

// Counts returns the commands handled, by result status name.
func (h *Handler) Counts() map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]uint64, len(h.counts))
	for k, v := range h.counts {
		out[k] = v
	}
	return out
}

// Recent returns the last commands, newest last.
func (h *Handler) Recent() []Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.recent)
}

// SignedBytes is what a command's HMAC-SHA256 covers: a version label,
// the topic, the id, the value (or a call's args) exactly as written in
// the payload, and expires as written ("" when absent), each on its own
// line.
func SignedBytes(topic, id string, value []byte, expires string) []byte {
	return fmt.Appendf(nil, "tagbridge-command-v1\n%s\n%s\n%s\n%s", topic, id, value, expires)
}

// pattern is a topic template whose {plc} and {tag} are whole levels, as
// a wildcard filter for commands.
type pattern struct {
	levels []string // the template's levels, {agent} filled in
	kind   Kind
	filter string
}

func patternsOf(cfg *config.Config) []pattern {
	templates := []string{cfg.MQTT.Topic}
	for _, p := range cfg.PLCs {
		for _, t := range p.Tags {
			if t.Topic != "" && t.Writable {
				templates = append(templates, t.Topic)
			}
		}
	}
	var out []pattern
	for _, tmpl := range templates {
		levels := strings.Split(strings.ReplaceAll(tmpl, "{agent}", cfg.Agent.ID), "/")
		whole := true
		filter := make([]string, len(levels))
		for i, l := range levels {
			filter[i] = l
			switch {
			case l == "{plc}" || l == "{tag}":
				filter[i] = "+"
			case strings.Contains(l, "{"):
				whole = false
			}
		}
		if !whole || !slices.Contains(levels, "{tag}") {
			continue
		}
		for _, k := range []Kind{Write, Call} {
			suffix := map[Kind]string{Write: "set", Call: "call"}[k]
			if k == Call && tmpl != cfg.MQTT.Topic {
				continue // methods live under mqtt.topic only
			}
			p := pattern{levels: append(slices.Clone(levels), suffix), kind: k, filter: strings.Join(filter, "/") + "/" + suffix}
			if !slices.ContainsFunc(out, func(q pattern) bool { return q.filter == p.filter }) {
				out = append(out, p)
			}
		}
	}
	return out
}

// match finds what a command topic outside the allow-list addresses.
func (h *Handler) match(topic string) (route, bool) {
	got := strings.Split(topic, "/")
	for _, p := range h.patterns {
		if len(got) != len(p.levels) {
			continue
		}
		rt := route{kind: p.kind, plc: "", reply: topic + "/result"}
		ok := true
		for i, l := range p.levels {
			switch l {
			case "{plc}":
				rt.plc = got[i]
			case "{tag}":
				rt.target = got[i]
			default:
				ok = ok && l == got[i]
			}
		}
		if ok {
			return rt, true
		}
	}
	return route{}, false
}

// covered reports whether a pattern's filter already takes topic.
func (h *Handler) covered(topic string) bool {
	_, ok := h.match(topic)
	return ok
}

// Inherit takes over old's memory, so that a reload does not forget the
// ids seen (a redelivery after a reload is still a duplicate), the
// counts or the recent commands. Call it before h handles anything.
func (h *Handler) Inherit(old *Handler) {
	if old == nil || old == h {
		return
	}
	old.mu.Lock()
	defer old.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen = old.seen
	h.counts = old.counts
	h.recent = old.recent
	if old.sp != nil && h.sp != nil {
		h.sp.aliases.Store(old.sp.aliases.Load())
	}
}

// ByPLC is an Executor that hands each command to the executor of its
// PLC entry; an entry without one is down.
type ByPLC func(plc string) Executor

func (f ByPLC) Write(ctx context.Context, plc, tag string, value any, named string) (Outcome, error) {
	e := f(plc)
	if e == nil {
		return Outcome{}, refuse(PLCDown, "plc %q has no session", plc)
	}
	return e.Write(ctx, plc, tag, value, named)
}

func (f ByPLC) Call(ctx context.Context, plc, method string, args []any) (Outcome, error) {
	e := f(plc)
	if e == nil {
		return Outcome{}, refuse(PLCDown, "plc %q has no session", plc)
	}
	return e.Call(ctx, plc, method, args)
}
