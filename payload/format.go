// Package payload turns samples and PLC state changes into MQTT messages:
// the formats (json, sparkplug_b, opcua_json), their topics and the rules
// a topic must follow.
package payload

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
)

// Message is an MQTT message outside the spooled data: status, birth and
// death messages. It goes out at QoS 0, only while the link is up, so it
// never enters paho's store (whose acknowledgements count spooled records).
type Message struct {
	Topic   string
	Payload []byte
	Retain  bool
}

// Format is a payload format (mqtt.payload): how batches become spooled
// records, what it publishes around the data, and the capabilities only
// some formats use (state files, per-connection wills, births before a
// record, commands, a gate, keep-alives), each with a no-op in the formats
// that lack it.
//
// The publisher's intake goroutine calls Encode and PLCState; its Run
// goroutine calls the rest, except Will and Open, which New calls once, and
// Command, which paho's goroutine calls.
type Format interface {
	// Encode appends the records of one batch, in order, through add.
	// online tells whether the link was up when the batch was taken.
	Encode(b collectors.Batch, online bool, add func(topic string, payload []byte))
	// PLCState handles a PLC entry's state change, after every batch taken
	// before it: records through add go out in order with the data; the
	// returned messages go out directly, if the link is up.
	PLCState(st collectors.PLCState, add func(topic string, payload []byte)) []Message
	// Outgoing may rewrite a spooled record as it is handed to the broker;
	// it returns payload when it need not, nil when the record need not
	// go out at all.
	Outgoing(topic string, payload []byte) []byte
	// Will is registered with the broker as the MQTT last will, at QoS 1.
	Will() (Message, bool)
	// Reconnecting returns the will for the next connection attempt
	// (Sparkplug's bdSeq changes per connection).
	Reconnecting() Message
	// Connected is published after every connect, before any spooled record.
	Connected() []Message
	// Stopping is published on a clean stop, before disconnecting.
	Stopping() []Message

	// Open reads the format's state files; the publisher calls it, never
	// Check (validate must not create files).
	Open() error
	// SessionStarted hears of every CONNECT the broker accepts, before
	// anything is published on it (Sparkplug's bdSeq).
	SessionStarted() error
	// Prelude returns messages to publish, at QoS 0, right before a spooled
	// record on topic (Sparkplug's DBIRTH before a device's first DDATA on
	// a connection).
	Prelude(topic string) []Message
	// CommandTopics are subscribed to, at QoS 1, after every connect and
	// before the Connected messages go out (Sparkplug's NCMD).
	CommandTopics() []string
	// Command takes a message on a command topic and reports whether it
	// asks for the Connected messages again (a rebirth).
	Command(topic string, payload []byte) bool
	// Gate reports whether the format may send (Sparkplug's Primary Host
	// online); changed is closed when that changes, nil if it never does.
	// While it is shut, values wait in the spool.
	Gate() (open bool, changed <-chan struct{})
	// KeepAlives returns keep-alive messages for writers that have been
	// quiet (Part 14's ua-keepalive), published at QoS 0 while the link is up.
	KeepAlives(now time.Time) []Message
	// TagOfAlias names the tag of a metric alias the format gave in a
	// birth (Sparkplug), for commands that address metrics by alias.
	TagOfAlias(plc string, alias uint64) (tag string, ok bool)
}

// None is the no-op of every capability a format may lack.
type None struct{}

func (None) Open() error                                { return nil }
func (None) SessionStarted() error                      { return nil }
func (None) Prelude(string) []Message                   { return nil }
func (None) CommandTopics() []string                    { return nil }
func (None) Command(string, []byte) bool                { return false }
func (None) Gate() (open bool, changed <-chan struct{}) { return true, nil }
func (None) KeepAlives(time.Time) []Message             { return nil }
func (None) TagOfAlias(string, uint64) (string, bool)   { return "", false }

// CheckTopics renders the tags' topics and checks them as the broker
// would; a format is built only from options that pass it.
func CheckTopics(o Options) error {
	_, err := newTopics(o)
	return err
}

// NewJSON is the default format (mqtt.payload json); started is the
// agent's start time, which its status reports.
func NewJSON(o Options, started time.Time) (Format, error) {
	t, err := newTopics(o)
	if err != nil {
		return nil, err
	}
	f, err := newJSONFormat(o, t, started)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// FirstOfPLC reports whether b[i] is the first sample of its PLC entry in
// b, where formats that group a batch by entry start a group. Most batches
// hold one entry; a shared session's may hold several, interleaved.
func FirstOfPLC(b collectors.Batch, i int) bool {
	plc := b[i].PLC
	if i > 0 && b[i-1].PLC == plc {
		return false
	}
	return !slices.ContainsFunc(b[:i], func(s collectors.Sample) bool { return s.PLC == plc })
}

// statusPrefix is where the status topics live: the topic template's
// levels up to the one holding {agent}, with the agent id filled in
// ("tagbridge/{agent}/{plc}/{tag}" gives "tagbridge/line1-ipc01"). A template
// without {agent} gives its levels before the first placeholder, then the
// agent id.
func statusPrefix(template, agent string) string {
	levels := strings.Split(template, "/")
	var prefix []string
	for _, l := range levels {
		if strings.Contains(l, "{agent}") {
			prefix = append(prefix, render(l, agent, "", ""))
			return strings.Join(prefix, "/")
		}
		if strings.Contains(l, "{") {
			break
		}
		prefix = append(prefix, l)
	}
	return strings.Join(append(prefix, agent), "/")
}

// jsonFormat is the default: one JSON object per value (AppendJSON) on the
// tag's topic, or with mqtt.batch one JSON array per PLC and publish cycle
// on mqtt.batch_topic; retained status topics for the agent and each PLC.
type jsonFormat struct {
	None
	topics  *topics
	batch   bool
	batched map[string]string // plc -> batch topic
	// maxPacket is mqtt.max_packet_size: a batch is split into arrays
	// whose packets fit.
	maxPacket int
	version   string
	started   time.Time

	agentTopic string
	plcTopic   map[string]string // plc -> its status topic

	mu     sync.Mutex
	status map[string]collectors.PLCState // latest, re-announced on every connect
	order  []string

	buf, value []byte   // intake goroutine only
	times      timeMemo // intake goroutine only
}

func newJSONFormat(o Options, t *topics, started time.Time) (*jsonFormat, error) {
	prefix := statusPrefix(o.Topic, o.AgentID)
	f := &jsonFormat{
		topics:     t,
		batch:      o.Batch,
		batched:    map[string]string{},
		maxPacket:  o.MaxPacketSize,
		version:    o.Version,
		started:    started,
		agentTopic: prefix + "/status",
		plcTopic:   map[string]string{},
		status:     map[string]collectors.PLCState{},
	}
	if err := CheckTopic(f.agentTopic); err != nil {
		return nil, fmt.Errorf("status topic %q: %w", f.agentTopic, err)
	}
	data := map[string]string{} // a status topic must not also carry values
	for _, plc := range o.PLCs {
		for _, topic := range t.byPLC[plc.Name] {
			data[topic] = plc.Name
		}
	}
	if f.batch {
		// Values go out on the batch topics: the tags' topics were only to
		// be checked (15 MB kept with 100,000 tags otherwise).
		f.topics = &topics{agent: t.agent, template: t.template}
	}
	for _, plc := range o.PLCs {
		f.order = append(f.order, plc.Name)
		st := prefix + "/" + Level(plc.Name) + "/status"
		if other, clash := data[st]; clash || st == f.agentTopic {
			return nil, fmt.Errorf("plc %q: status topic %q is also the topic of a tag of plc %q; rename the tag or change mqtt.topic", plc.Name, st, other)
		}
		f.plcTopic[plc.Name] = st
		bt := render(o.BatchTopic, o.AgentID, plc.Name, "")
		if f.batch {
			if err := CheckTopic(bt); err != nil {
				return nil, fmt.Errorf("plc %q: batch topic %q: %w", plc.Name, bt, err)
			}
		}
		f.batched[plc.Name] = bt
	}
	return f, nil
}

func (f *jsonFormat) Encode(b collectors.Batch, _ bool, add func(topic string, payload []byte)) {
	if !f.batch {
		for i := range b {
			s := &b[i]
			f.buf = appendJSON(f.buf[:0], s, &f.times)
			add(f.topics.topic(s.PLC, s.Tag), f.buf)
		}
		return
	}
	// One array per PLC entry, in order of first appearance, split into
	// several where one packet would be over mqtt.max_packet_size.
	for i := range b {
		if !FirstOfPLC(b, i) {
			continue
		}
		plc := b[i].PLC
		topic, ok := f.batched[plc]
		if !ok { // not configured: cannot happen with the agent's sessions
			topic = strings.TrimSuffix(f.agentTopic, "status") + Level(plc)
		}
		f.buf = append(f.buf[:0], '[')
		for j := i; j < len(b); j++ {
			if b[j].PLC != plc {
				continue
			}
			end := len(f.buf)
			if end > 1 {
				f.buf = append(f.buf, ',')
			}
			f.buf = appendJSON(f.buf, &b[j], &f.times)
			if end > 1 && PacketSize(topic, len(f.buf)+1, 1) > f.maxPacket {
				// Send the array without this value, which starts the next.
				f.value = append(f.value[:0], f.buf[end+1:]...)
				add(topic, append(f.buf[:end], ']'))
				f.buf = append(append(f.buf[:0], '['), f.value...)
			}
		}
		add(topic, append(f.buf, ']'))
	}
}

func (f *jsonFormat) PLCState(st collectors.PLCState, _ func(string, []byte)) []Message {
	topic, ok := f.plcTopic[st.PLC]
	if !ok {
		return nil
	}
	f.mu.Lock()
	f.status[st.PLC] = st
	f.mu.Unlock()
	return []Message{{Topic: topic, Payload: plcStatusJSON(st), Retain: true}}
}

func (f *jsonFormat) Outgoing(_ string, payload []byte) []byte { return payload }

func (f *jsonFormat) Reconnecting() Message {
	w, _ := f.Will()
	return w
}

func (f *jsonFormat) Will() (Message, bool) {
	return Message{Topic: f.agentTopic, Payload: []byte(`{"state":"offline"}`), Retain: true}, true
}

func (f *jsonFormat) Connected() []Message {
	b := []byte(`{"state":"online","version":`)
	b = AppendString(b, f.version)
	b = append(b, `,"started":`...)
	b = AppendTime(b, f.started)
	b = append(b, '}')
	msgs := []Message{{Topic: f.agentTopic, Payload: b, Retain: true}}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, plc := range f.order {
		if st, ok := f.status[plc]; ok {
			msgs = append(msgs, Message{Topic: f.plcTopic[plc], Payload: plcStatusJSON(st), Retain: true})
		}
	}
	return msgs
}

func (f *jsonFormat) Stopping() []Message {
	msgs := []Message{{Topic: f.agentTopic, Payload: []byte(`{"state":"offline"}`), Retain: true}}
	now := time.Now()
	for _, plc := range f.order {
		st := collectors.PLCState{PLC: plc, State: collectors.StateStopped, Reason: "agent stopped", Since: now}
		msgs = append(msgs, Message{Topic: f.plcTopic[plc], Payload: plcStatusJSON(st), Retain: true})
	}
	return msgs
}

// plcStatusJSON is a PLC entry's status message:
// {"state":"disconnected","reason":"...","since":"..."}.
func plcStatusJSON(st collectors.PLCState) []byte {
	b := []byte(`{"state":`)
	b = AppendString(b, st.State)
	b = append(b, `,"reason":`...)
	b = AppendString(b, st.Reason)
	b = append(b, `,"since":`...)
	b = AppendTime(b, st.Since)
	return append(b, '}')
}
