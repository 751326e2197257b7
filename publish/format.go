package publish

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
)

// Message is an MQTT message outside the spooled data: status, birth and
// death messages. It goes out at QoS 0, only while the link is up, so it
// never enters paho's store (whose acknowledgements count spooled records).
type Message struct {
	Topic   string
	Payload []byte
	Retain  bool
}

// format is a payload format (mqtt.payload): how batches become spooled
// records, and what it publishes around the data.
//
// The intake goroutine calls encode and plcStatus; Run's goroutine calls
// outgoing, connected and stopping. will is called once, by New.
type format interface {
	// encode appends the records of one batch, in order, through add.
	// online tells whether the link was up when the batch was taken.
	encode(b collectors.Batch, online bool, add func(topic string, payload []byte))
	// plcStatus handles a PLC entry's state change, after every batch taken
	// before it: records through add go out in order with the data; the
	// returned messages go out directly, if the link is up.
	plcStatus(st collectors.PLCStatus, add func(topic string, payload []byte)) []Message
	// outgoing may rewrite a spooled record as it is handed to the broker;
	// it returns payload when it need not, nil when the record need not
	// go out at all.
	outgoing(topic string, payload []byte) []byte
	// will is registered with the broker as the MQTT last will, at QoS 1.
	will() (Message, bool)
	// connected is published after every connect, before any spooled record.
	connected() []Message
	// stopping is published on a clean stop, before disconnecting.
	stopping() []Message
}

// CheckTopics renders every topic the configuration makes (tags, batches,
// status) and checks them as New does, without touching the broker or the
// spool: validate and a reload refuse what run would.
func CheckTopics(cfg *config.Config) error {
	t, err := newTopics(cfg)
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	if _, err := newFormat(cfg, t, time.Time{}); err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	return nil
}

// newFormat picks the format the configuration asks for.
func newFormat(cfg *config.Config, t *topics, started time.Time) (format, error) {
	switch cfg.MQTT.Payload {
	case "", config.PayloadJSON:
		return newJSONFormat(cfg, t, started)
	case config.PayloadSparkplugB:
		return newSparkplugFormat(cfg)
	case config.PayloadOPCUAJSON:
		return newUAJSONFormat(cfg)
	default:
		return nil, fmt.Errorf("payload %q is not supported yet", cfg.MQTT.Payload)
	}
}

// firstOfPLC reports whether b[i] is the first sample of its PLC entry in
// b, where formats that group a batch by entry start a group. Most batches
// hold one entry; a shared session's may hold several, interleaved.
func firstOfPLC(b collectors.Batch, i int) bool {
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
	status map[string]collectors.PLCStatus // latest, re-announced on every connect
	order  []string

	buf, value []byte // intake goroutine only
}

func newJSONFormat(cfg *config.Config, t *topics, started time.Time) (*jsonFormat, error) {
	prefix := statusPrefix(cfg.MQTT.Topic, cfg.Agent.ID)
	f := &jsonFormat{
		topics:     t,
		batch:      cfg.MQTT.Batch,
		batched:    map[string]string{},
		maxPacket:  int(cmp.Or(cfg.MQTT.MaxPacketSize, config.DefaultMaxPacketSize)),
		version:    cfg.Agent.Version,
		started:    started,
		agentTopic: prefix + "/status",
		plcTopic:   map[string]string{},
		status:     map[string]collectors.PLCStatus{},
	}
	if err := checkTopic(f.agentTopic); err != nil {
		return nil, fmt.Errorf("status topic %q: %w", f.agentTopic, err)
	}
	data := map[string]string{} // a status topic must not also carry values
	for _, plc := range cfg.PLCs {
		for _, topic := range t.byPLC[plc.Name] {
			data[topic] = plc.Name
		}
	}
	for _, plc := range cfg.PLCs {
		f.order = append(f.order, plc.Name)
		st := prefix + "/" + level(plc.Name) + "/status"
		if other, clash := data[st]; clash || st == f.agentTopic {
			return nil, fmt.Errorf("plc %q: status topic %q is also the topic of a tag of plc %q; rename the tag or change mqtt.topic", plc.Name, st, other)
		}
		f.plcTopic[plc.Name] = st
		bt := render(cfg.MQTT.BatchTopic, cfg.Agent.ID, plc.Name, "")
		if f.batch {
			if err := checkTopic(bt); err != nil {
				return nil, fmt.Errorf("plc %q: batch topic %q: %w", plc.Name, bt, err)
			}
		}
		f.batched[plc.Name] = bt
	}
	return f, nil
}

func (f *jsonFormat) encode(b collectors.Batch, _ bool, add func(topic string, payload []byte)) {
	if !f.batch {
		for i := range b {
			s := &b[i]
			f.buf = AppendJSON(f.buf[:0], s)
			add(f.topics.topic(s.PLC, s.Tag), f.buf)
		}
		return
	}
	// One array per PLC entry, in order of first appearance, split into
	// several where one packet would be over mqtt.max_packet_size.
	for i := range b {
		if !firstOfPLC(b, i) {
			continue
		}
		plc := b[i].PLC
		topic, ok := f.batched[plc]
		if !ok { // not configured: cannot happen with the agent's sessions
			topic = strings.TrimSuffix(f.agentTopic, "status") + level(plc)
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
			f.buf = AppendJSON(f.buf, &b[j])
			if end > 1 && packetSize(topic, len(f.buf)+1, 1) > f.maxPacket {
				// Send the array without this value, which starts the next.
				f.value = append(f.value[:0], f.buf[end+1:]...)
				add(topic, append(f.buf[:end], ']'))
				f.buf = append(append(f.buf[:0], '['), f.value...)
			}
		}
		add(topic, append(f.buf, ']'))
	}
}

func (f *jsonFormat) plcStatus(st collectors.PLCStatus, _ func(string, []byte)) []Message {
	topic, ok := f.plcTopic[st.PLC]
	if !ok {
		return nil
	}
	f.mu.Lock()
	f.status[st.PLC] = st
	f.mu.Unlock()
	return []Message{{Topic: topic, Payload: plcStatusJSON(st), Retain: true}}
}

func (f *jsonFormat) outgoing(_ string, payload []byte) []byte { return payload }

func (f *jsonFormat) will() (Message, bool) {
	return Message{Topic: f.agentTopic, Payload: []byte(`{"state":"offline"}`), Retain: true}, true
}

func (f *jsonFormat) connected() []Message {
	b := []byte(`{"state":"online","version":`)
	b = appendString(b, f.version)
	b = append(b, `,"started":`...)
	b = appendTime(b, f.started)
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

func (f *jsonFormat) stopping() []Message {
	msgs := []Message{{Topic: f.agentTopic, Payload: []byte(`{"state":"offline"}`), Retain: true}}
	now := time.Now()
	for _, plc := range f.order {
		st := collectors.PLCStatus{PLC: plc, State: collectors.StateStopped, Reason: "agent stopped", Since: now}
		msgs = append(msgs, Message{Topic: f.plcTopic[plc], Payload: plcStatusJSON(st), Retain: true})
	}
	return msgs
}

// plcStatusJSON is a PLC entry's status message:
// {"state":"disconnected","reason":"...","since":"..."}.
func plcStatusJSON(st collectors.PLCStatus) []byte {
	b := []byte(`{"state":`)
	b = appendString(b, st.State)
	b = append(b, `,"reason":`...)
	b = appendString(b, st.Reason)
	b = append(b, `,"since":`...)
	b = appendTime(b, st.Since)
	return append(b, '}')
}
