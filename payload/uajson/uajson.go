package uajson

import (
	"crypto/rand"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/payload"
)

// uaJSONFormat is mqtt.payload opcua_json: OPC UA Part 14 (v1.05) PubSub
// JSON network messages over MQTT (Part 14, 7.2.5 and 7.3.4).
//
// The agent is one Publisher (PublisherId = agent.id) with one WriterGroup
// (uaWriterGroup) holding one DataSetWriter per PLC entry: DataSetWriterName
// is the PLC's name, DataSetWriterId its position in plcs: counting from 1.
// Each publish cycle of a PLC entry becomes one ua-data NetworkMessage on
// opcua/json/data/<agent id>/<writer group>/<plc>, holding one ua-deltaframe
// DataSetMessage (a tag that changed twice within the cycle starts another,
// since a Payload names each field once) whose Payload maps tag names to
// DataValues; see appendUADataValue for the encoding. SequenceNumber counts
// a writer's DataSetMessages from 1, assigned as values enter the spool, so
// a consumer sees a gap only where values were dropped (or, by up to
// seqReserve, after a crash); it goes on across restarts (seqFile). A
// writer quiet for its KeepAliveTime sends a ua-keepalive (keepAlives), and
// every connect publishes each writer's retained ua-metadata (metadata).
//
// A PLC entry that goes disconnected (which includes recovering for longer
// than the watchdog, see silence) or stopped gets a ua-keyframe with
// Status Bad_NoCommunication (Bad_OutOfService when stopped) and every
// configured tag as a DataValue with that status and no value: the
// DataSetMessage Status applies to all of its values (Part 14, 7.2.5.4),
// and a key frame reaches consumers that look only at the fields. Fresh
// values follow once the PLC streams again. There is no per-writer status
// message in Part 14, and the ua-status message belongs to the Publisher.
//
// The Publisher's ua-status (7.2.5.5.5) is retained on
// opcua/json/status/<agent id> with IsCyclic false, as the broker reports
// the agent's loss through the will: Status Operational after every
// connect, Error as the will, Disabled on a clean stop.
type uaJSONFormat struct {
	payload.None
	publisher       string
	statusTopic     string
	connectionTopic string
	keyTopic        string               // a message here asks for key frames (see Command)
	wantKey         bool                 // a key frame was asked for; f.mu guards it
	writers         map[string]*uaWriter // plc -> its writer
	nextID          int                  // for PLC entries missing from the configuration
	header          []byte               // the NetworkMessage's fields after MessageId

	idPrefix string        // random per process; MessageIds are idPrefix-<n>
	ids      atomic.Uint64 // intake and Run's goroutine both make messages

	buf       []byte              // intake goroutine only
	value     []byte              // intake goroutine only
	maxPacket int                 // mqtt.max_packet_size: a NetworkMessage is split to fit
	keyFrames int                 // mqtt.opcua_json.keyframe_count: every n-th DataSetMessage a key frame; 0: none
	seen      map[string]struct{} // tags in the DataSetMessage being written

	// mu guards writers and their seq, reserved and last: the intake
	// numbers DataSetMessages, Run's goroutine sends keep-alives.
	mu     sync.Mutex
	dir    string // agent.spool_dir, where open keeps seqFile
	opened bool   // by run, not validate: seqFile may be written
}

// uaWriter is one PLC entry's DataSetWriter.
type uaWriter struct {
	id    int
	plc   string
	name  string // DataSetWriterName, JSON-encoded
	topic string
	tags  []string
	seq   uint32 // last SequenceNumber assigned
	bad   bool   // its last DataSetMessage was the Bad key frame

	// reserved is the SequenceNumber up to which seqFile lets a restart
	// after a crash go on: seq never passes it unsaved.
	reserved  uint64
	keepAlive time.Duration // KeepAliveTime
	// values holds each tag's last DataValue (for key frames), sinceKey
	// the DataSetMessages since the last key frame.
	values   map[string][]byte
	sinceKey int
	last     time.Time // its latest DataSetMessage, keep-alives included

	version uint32 // ConfigurationVersion of its DataSetMetaData (a VersionTime)
}

// seqFile, in agent.spool_dir, holds each writer's SequenceNumber, so that
// numbering goes on across restarts. It is written exactly on a clean
// stop; while running, seqReserve numbers ahead of the last one written,
// so that after a crash numbering goes on past every number used (a jump
// of up to seqReserve).
const (
	seqFile    = "opcua_json_seq"
	seqReserve = 4096
)

// uaWriterGroup is the WriterGroupName of every NetworkMessage and the
// writer group level of the data topics.
const uaWriterGroup = "tagbridge"

// PubSubState values (Part 14, 6.2.1), written as numbers: ua-status uses
// the CompactEncoding (7.2.5.5.5).
const (
	pubSubDisabled    = 0
	pubSubOperational = 2
	pubSubError       = 3
)

// Status codes of the Bad key frame (Part 6, A.2).
const (
	badNoCommunication = 0x80310000
	badOutOfService    = 0x808D0000
)

// New builds the format from o; it opens no file (see Open).
func New(o payload.Options) (payload.Format, error) {
	f, err := newUAJSONFormat(o)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func newUAJSONFormat(o payload.Options) (*uaJSONFormat, error) {
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, fmt.Errorf("message id prefix: %w", err)
	}
	f := &uaJSONFormat{
		dir:             o.StateDir,
		publisher:       o.AgentID,
		statusTopic:     "opcua/json/status/" + o.AgentID,
		connectionTopic: "opcua/json/connection/" + o.AgentID,
		keyTopic:        "opcua/json/keyframe/" + o.AgentID,
		writers:         map[string]*uaWriter{},
		idPrefix:        fmt.Sprintf("%x", r),
		seen:            map[string]struct{}{},
		maxPacket:       o.MaxPacketSize,
		keyFrames:       o.UAKeyFrameCount,
	}
	if err := payload.CheckTopic(f.statusTopic); err != nil {
		return nil, fmt.Errorf("status topic %q: %w", f.statusTopic, err)
	}
	f.header = append(f.header, `,"MessageType":"ua-data","PublisherId":`...)
	f.header = payload.AppendString(f.header, f.publisher)
	f.header = append(f.header, `,"WriterGroupName":`...)
	f.header = payload.AppendString(f.header, uaWriterGroup)
	f.header = append(f.header, `,"Messages":[`...)
	for i, plc := range o.PLCs {
		if i+1 > 0xFFFF {
			return nil, fmt.Errorf("plc %q: more than 65535 PLC entries do not fit DataSetWriterId (UInt16)", plc.Name)
		}
		w := f.newWriter(i+1, plc.Name)
		w.keepAlive = plc.Silence
		if err := payload.CheckTopic(w.topic); err != nil {
			return nil, fmt.Errorf("plc %q: topic %q: %w", plc.Name, w.topic, err)
		}
		for _, t := range plc.Tags {
			w.tags = append(w.tags, t.Name)
		}
		w.version = versionTime(time.Now())
		f.writers[plc.Name] = w
	}
	f.nextID = len(o.PLCs) + 1
	return f, nil
}

func (f *uaJSONFormat) newWriter(id int, plc string) *uaWriter {
	return &uaWriter{
		id:        id,
		plc:       plc,
		name:      string(payload.AppendString(nil, plc)),
		topic:     "opcua/json/data/" + f.publisher + "/" + uaWriterGroup + "/" + payload.Level(plc),
		keepAlive: payload.MinSilence,
		last:      time.Now(),
	}
}

// writer returns plc's writer, making one for an entry the configuration
// does not have (which the agent's sessions never send).
func (f *uaJSONFormat) writer(plc string) *uaWriter {
	w, ok := f.writers[plc]
	if !ok {
		w = f.newWriter(f.nextID, plc)
		f.nextID++
		f.writers[plc] = w
	}
	return w
}

// appendHeader starts a NetworkMessage, up to the opening of Messages.
func (f *uaJSONFormat) appendHeader(dst []byte) []byte {
	dst = f.appendMessageID(dst)
	return append(dst, f.header...)
}

func (f *uaJSONFormat) appendMessageID(dst []byte) []byte {
	dst = append(dst, `{"MessageId":"`...)
	dst = append(dst, f.idPrefix...)
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, f.ids.Add(1), 10)
	return append(dst, '"')
}

// appendDataSetMessage starts w's next DataSetMessage, up to the opening of
// its Payload; status 0 leaves Status out. historical adds "Historical":true
// (see Encode). f.mu is held.
func (f *uaJSONFormat) appendDataSetMessage(dst []byte, w *uaWriter, now time.Time, status collectors.StatusCode, kind string, historical bool) []byte {
	w.seq++
	if w.seq == 0 { // UInt32 wraps; 0 stays unused so that numbering starts at 1
		w.seq = 1
		w.reserved = 0
	}
	if uint64(w.seq) > w.reserved {
		w.reserved = uint64(w.seq) + seqReserve
		f.saveSeqs()
	}
	w.last = now
	w.sinceKey++
	dst = append(dst, `{"DataSetWriterId":`...)
	dst = strconv.AppendInt(dst, int64(w.id), 10)
	dst = append(dst, `,"DataSetWriterName":`...)
	dst = append(dst, w.name...)
	dst = append(dst, `,"SequenceNumber":`...)
	dst = strconv.AppendUint(dst, uint64(w.seq), 10)
	dst = append(dst, `,"Timestamp":`...)
	dst = payload.AppendTime(dst, now)
	if status != 0 {
		dst = append(dst, `,"Status":`...)
		dst = appendStatusCode(dst, status)
	}
	dst = append(dst, `,"MessageType":"`...)
	dst = append(dst, kind...)
	if historical {
		return append(dst, `","Historical":true,"Payload":{`...)
	}
	return append(dst, `","Payload":{`...)
}

func (f *uaJSONFormat) Encode(b collectors.Batch, _ bool, add func(topic string, payload []byte)) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	var events collectors.Batch
	if slices.ContainsFunc(b, isEvent) {
		events = slices.DeleteFunc(slices.Clone(b), func(s collectors.Sample) bool { return !isEvent(s) })
		b = slices.DeleteFunc(slices.Clone(b), isEvent)
	}
	defer func() {
		for i := range events {
			f.event(&events[i], now, add)
		}
	}()
	// One NetworkMessage per PLC entry, in order of first appearance: a
	// shared session's batch may hold several.
	for i := range b {
		if !payload.FirstOfPLC(b, i) {
			continue
		}
		plc := b[i].PLC
		w := f.writer(plc)
		hist := b[i].Historical
		f.buf = f.appendHeader(f.buf[:0])
		f.buf = f.appendDataSetMessage(f.buf, w, now, 0, "ua-deltaframe", hist)
		clear(f.seen)
		first, values := true, false
		// Room for a DataSetMessage's header, which a repeated tag starts.
		dsm := 256 + len(w.name)
		for j := i; j < len(b); j++ {
			s := &b[j]
			if s.PLC != plc {
				continue
			}
			f.value = payload.AppendString(f.value[:0], s.Tag)
			f.value = append(f.value, ':')
			dv := len(f.value)
			f.value = appendUADataValue(f.value, s)
			// Kept for keyframe_count and for key frames on demand.
			w.keep(s.Tag, f.value[dv:])
			_, dup := f.seen[s.Tag]
			// Part 14 has no mark for values read back from the PLC's
			// history: they go in DataSetMessages of their own that say
			// "Historical":true, which decoders of the standard ignore.
			dup = dup || s.Historical != hist
			hist = s.Historical
			if values && payload.PacketSize(w.topic, len(f.buf)+dsm+len(f.value)+4, 1) > f.maxPacket {
				// This value starts the next NetworkMessage.
				add(w.topic, append(f.buf, "}}]}"...))
				f.buf = f.appendHeader(f.buf[:0])
				f.buf = f.appendDataSetMessage(f.buf, w, now, 0, "ua-deltaframe", hist)
				clear(f.seen)
				first, values, dup = true, false, false
			}
			if dup {
				f.buf = append(f.buf, "}},"...)
				f.buf = f.appendDataSetMessage(f.buf, w, now, 0, "ua-deltaframe", hist)
				clear(f.seen)
				first = true
			}
			f.seen[s.Tag] = struct{}{}
			if !first {
				f.buf = append(f.buf, ',')
			}
			first, values = false, true
			f.buf = append(f.buf, f.value...)
		}
		f.buf = append(f.buf, "}}]}"...)
		w.bad = false
		add(w.topic, f.buf)
		if f.keyFrames > 0 && w.sinceKey >= f.keyFrames {
			f.keyFrame(w, now, add)
		}
	}
}

func isEvent(s collectors.Sample) bool { return s.Type == collectors.TypeEvent }

// event sends one event as its own NetworkMessage holding a ua-event
// DataSetMessage (Part 14, 7.2.5.4) of its PLC's writer: the Payload maps
// each selected field to a Variant, as Part 14 encodes event fields. The
// stream is named by the DataSetMessage's "EventStream" (the tag name of
// the other formats), which decoders of the standard ignore. f.mu is held.
func (f *uaJSONFormat) event(s *collectors.Sample, now time.Time, add func(topic string, payload []byte)) {
	w := f.writer(s.PLC)
	f.buf = f.appendHeader(f.buf[:0])
	f.buf = f.appendDataSetMessage(f.buf, w, now, 0, "ua-event", s.Historical)
	f.buf = f.buf[:len(f.buf)-len(`"Payload":{`)]
	f.buf = append(f.buf, `"EventStream":`...)
	f.buf = payload.AppendString(f.buf, s.Tag)
	f.buf = append(f.buf, `,"Payload":{`...)
	st, _ := s.Value.(collectors.Structure)
	for i, fld := range st.Fields {
		if i > 0 {
			f.buf = append(f.buf, ',')
		}
		f.buf = payload.AppendString(f.buf, fld.Name)
		f.buf = append(f.buf, ":{"...)
		v := fld.Value
		if t, ok := v.(collectors.Typed); ok && t.Type == collectors.TypeVariant {
			v = t.Value
		}
		f.buf = appendUAVariant(f.buf, collectors.TypeNull, v)
		f.buf = append(f.buf, '}')
	}
	f.buf = append(f.buf, "}}]}"...)
	w.bad = false
	add(w.topic, f.buf)
}

// keep remembers a tag's last DataValue for the key frames.
func (w *uaWriter) keep(tag string, dv []byte) {
	if w.values == nil {
		w.values = map[string][]byte{}
	}
	w.values[tag] = append(w.values[tag][:0], dv...)
}

// keyFrame sends w's key frame (Part 14, 7.2.5.4: MessageType
// ua-keyframe): every tag's last DataValue, the configured tags first in
// their order, split over NetworkMessages as deltas are. f.mu is held.
func (f *uaJSONFormat) keyFrame(w *uaWriter, now time.Time, add func(topic string, payload []byte)) {
	tags := slices.Clone(w.tags)
	for _, t := range slices.Sorted(maps.Keys(w.values)) {
		if !slices.Contains(w.tags, t) {
			tags = append(tags, t)
		}
	}
	f.buf = f.appendHeader(f.buf[:0])
	f.buf = f.appendDataSetMessage(f.buf, w, now, 0, "ua-keyframe", false)
	first := true
	dsm := 256 + len(w.name)
	for _, t := range tags {
		dv, ok := w.values[t]
		if !ok {
			continue
		}
		f.value = payload.AppendString(f.value[:0], t)
		f.value = append(f.value, ':')
		f.value = append(f.value, dv...)
		if !first && payload.PacketSize(w.topic, len(f.buf)+dsm+len(f.value)+4, 1) > f.maxPacket {
			add(w.topic, append(f.buf, "}}]}"...))
			f.buf = f.appendHeader(f.buf[:0])
			f.buf = f.appendDataSetMessage(f.buf, w, now, 0, "ua-keyframe", false)
			first = true
		}
		if !first {
			f.buf = append(f.buf, ',')
		}
		first = false
		f.buf = append(f.buf, f.value...)
	}
	add(w.topic, append(f.buf, "}}]}"...))
	w.sinceKey = 0
}

func (f *uaJSONFormat) PLCState(st collectors.PLCState, add func(topic string, payload []byte)) []payload.Message {
	var code collectors.StatusCode
	switch st.State {
	case collectors.StateDisconnected:
		code = badNoCommunication
	case collectors.StateStopped:
		code = badOutOfService
	default:
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.writer(st.PLC)
	if w.bad {
		return nil // consumers hold every value Bad already
	}
	w.bad = true
	clear(w.values) // a key frame must not repeat values from before the loss as Good
	f.buf = f.appendHeader(f.buf[:0])
	f.buf = f.appendDataSetMessage(f.buf, w, time.Now(), code, "ua-keyframe", false)
	for i, tag := range w.tags {
		if i > 0 {
			f.buf = append(f.buf, ',')
		}
		f.buf = payload.AppendString(f.buf, tag)
		f.buf = append(f.buf, ':')
		f.buf = appendUADataValue(f.buf, &collectors.Sample{StatusCode: code})
	}
	f.buf = append(f.buf, "}}]}"...)
	add(w.topic, f.buf)
	return nil
}

func (f *uaJSONFormat) Outgoing(_ string, payload []byte) []byte { return payload }

func (f *uaJSONFormat) Will() (payload.Message, bool) {
	return f.status(pubSubError), true
}

// reconnecting gives each connection attempt a will of its own: a
// MessageId names one publication (Part 14, 7.2.5.3).
func (f *uaJSONFormat) Reconnecting() payload.Message {
	return f.status(pubSubError)
}

// connected publishes the ua-status, every writer's ua-metadata, then the
// ua-connection that names them all.
func (f *uaJSONFormat) Connected() []payload.Message {
	msgs := []payload.Message{f.status(pubSubOperational)}
	f.mu.Lock()
	defer f.mu.Unlock()
	ws := f.sortedWriters()
	now := time.Now()
	for _, w := range ws {
		msgs = append(msgs, f.metadata(w, now))
	}
	msgs = append(msgs, f.connection(ws, now))
	if f.wantKey {
		f.wantKey = false
		for _, w := range ws {
			if len(w.values) > 0 && !w.bad { // a PLC away had its Bad key frame
				f.keyFrame(w, now, func(topic string, p []byte) {
					msgs = append(msgs, payload.Message{Topic: topic, Payload: slices.Clone(p)})
				})
			}
		}
	}
	return msgs
}

// CommandTopics is the key frame trigger: opcua/json/keyframe/<agent id>.
func (f *uaJSONFormat) CommandTopics() []string { return []string{f.keyTopic} }

// Command takes any message on the trigger topic (a consumer that starts,
// or lost track) as a request for every writer's key frame: the
// Connected messages go out again (ua-status, ua-metadata, ua-connection),
// followed by a ua-keyframe per writer with each tag's last DataValue. A
// retained trigger asks again on every connect.
func (f *uaJSONFormat) Command(topic string, _ []byte) bool {
	if topic != f.keyTopic {
		return false
	}
	f.mu.Lock()
	f.wantKey = true
	f.mu.Unlock()
	return true
}

// stopping saves every writer's exact SequenceNumber, so that a restart
// after a clean stop numbers on without a jump.
func (f *uaJSONFormat) Stopping() []payload.Message {
	f.mu.Lock()
	for _, w := range f.writers {
		w.reserved = uint64(w.seq)
	}
	f.saveSeqs()
	f.mu.Unlock()
	return []payload.Message{f.status(pubSubDisabled)}
}

// keepAlives returns a ua-keepalive DataSetMessage (Part 14, 7.2.5.4: no
// Payload; the SequenceNumber the writer's next DataSetMessage will have)
// for every writer that has sent nothing for its KeepAliveTime, the
// session's watchdog (see watchdogBound). They go out directly, at QoS 0,
// only while the link is up: a late keep-alive says nothing.
func (f *uaJSONFormat) KeepAlives(now time.Time) []payload.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	var msgs []payload.Message
	for _, w := range f.writers {
		if now.Sub(w.last) < w.keepAlive {
			continue
		}
		w.last = now
		next := w.seq + 1
		if next == 0 {
			next = 1
		}
		b := f.appendHeader(nil)
		b = append(b, `{"DataSetWriterId":`...)
		b = strconv.AppendInt(b, int64(w.id), 10)
		b = append(b, `,"DataSetWriterName":`...)
		b = append(b, w.name...)
		b = append(b, `,"SequenceNumber":`...)
		b = strconv.AppendUint(b, uint64(next), 10)
		b = append(b, `,"Timestamp":`...)
		b = payload.AppendTime(b, now)
		b = append(b, `,"MessageType":"ua-keepalive"}]}`...)
		msgs = append(msgs, payload.Message{Topic: w.topic, Payload: b})
	}
	slices.SortFunc(msgs, func(a, b payload.Message) int { return strings.Compare(a.Topic, b.Topic) })
	return msgs
}

// status is the Publisher's retained ua-status message. IsCyclic is false,
// so Timestamp and NextReportTime are left out (Part 14, 7.2.5.5.5).
func (f *uaJSONFormat) status(state int) payload.Message {
	b := f.appendMessageID(nil)
	b = append(b, `,"MessageType":"ua-status","PublisherId":`...)
	b = payload.AppendString(b, f.publisher)
	b = append(b, `,"IsCyclic":false,"Status":`...)
	b = strconv.AppendInt(b, int64(state), 10)
	b = append(b, '}')
	return payload.Message{Topic: f.statusTopic, Payload: b, Retain: true}
}
