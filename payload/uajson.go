package payload

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
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
	none
	publisher   string
	statusTopic string
	writers     map[string]*uaWriter // plc -> its writer
	nextID      int                  // for PLC entries missing from the configuration
	header      []byte               // the NetworkMessage's fields after MessageId

	idPrefix string        // random per process; MessageIds are idPrefix-<n>
	ids      atomic.Uint64 // intake and Run's goroutine both make messages

	buf       []byte              // intake goroutine only
	value     []byte              // intake goroutine only
	maxPacket int                 // mqtt.max_packet_size: a NetworkMessage is split to fit
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
	last      time.Time     // its latest DataSetMessage, keep-alives included

	version uint32 // ConfigurationVersion of its DataSetMetaData (a VersionTime)
}

// metaFile, in agent.spool_dir, holds each writer's ConfigurationVersion
// with the field list it was given for, so that it changes when the
// writer's tags do, and only then.
const metaFile = "opcua_json_metadata"

// metaState is one writer's entry in metaFile.
type metaState struct {
	Fields  string `json:"fields"` // tagsHash
	Version uint32 `json:"version"`
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

func newUAJSONFormat(o Options) (*uaJSONFormat, error) {
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, fmt.Errorf("message id prefix: %w", err)
	}
	f := &uaJSONFormat{
		dir:         o.StateDir,
		publisher:   o.AgentID,
		statusTopic: "opcua/json/status/" + o.AgentID,
		writers:     map[string]*uaWriter{},
		idPrefix:    fmt.Sprintf("%x", r),
		seen:        map[string]struct{}{},
		maxPacket:   o.MaxPacketSize,
	}
	if err := CheckTopic(f.statusTopic); err != nil {
		return nil, fmt.Errorf("status topic %q: %w", f.statusTopic, err)
	}
	f.header = append(f.header, `,"MessageType":"ua-data","PublisherId":`...)
	f.header = appendString(f.header, f.publisher)
	f.header = append(f.header, `,"WriterGroupName":`...)
	f.header = appendString(f.header, uaWriterGroup)
	f.header = append(f.header, `,"Messages":[`...)
	for i, plc := range o.PLCs {
		if i+1 > 0xFFFF {
			return nil, fmt.Errorf("plc %q: more than 65535 PLC entries do not fit DataSetWriterId (UInt16)", plc.Name)
		}
		w := f.newWriter(i+1, plc.Name)
		w.keepAlive = plc.Silence
		if err := CheckTopic(w.topic); err != nil {
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
		name:      string(appendString(nil, plc)),
		topic:     "opcua/json/data/" + f.publisher + "/" + uaWriterGroup + "/" + level(plc),
		keepAlive: MinSilence,
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
// its Payload; status 0 leaves Status out. f.mu is held.
func (f *uaJSONFormat) appendDataSetMessage(dst []byte, w *uaWriter, now time.Time, status uint32, symbol, kind string) []byte {
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
	dst = append(dst, `{"DataSetWriterId":`...)
	dst = strconv.AppendInt(dst, int64(w.id), 10)
	dst = append(dst, `,"DataSetWriterName":`...)
	dst = append(dst, w.name...)
	dst = append(dst, `,"SequenceNumber":`...)
	dst = strconv.AppendUint(dst, uint64(w.seq), 10)
	dst = append(dst, `,"Timestamp":`...)
	dst = appendTime(dst, now)
	if status != 0 {
		dst = append(dst, `,"Status":`...)
		dst = appendStatusCode(dst, status, symbol)
	}
	dst = append(dst, `,"MessageType":"`...)
	dst = append(dst, kind...)
	return append(dst, `","Payload":{`...)
}

func (f *uaJSONFormat) Encode(b collectors.Batch, _ bool, add func(topic string, payload []byte)) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	// One NetworkMessage per PLC entry, in order of first appearance: a
	// shared session's batch may hold several.
	for i := range b {
		if !firstOfPLC(b, i) {
			continue
		}
		plc := b[i].PLC
		w := f.writer(plc)
		f.buf = f.appendHeader(f.buf[:0])
		f.buf = f.appendDataSetMessage(f.buf, w, now, 0, "", "ua-deltaframe")
		clear(f.seen)
		first, values := true, false
		// Room for a DataSetMessage's header, which a repeated tag starts.
		dsm := 256 + len(w.name)
		for j := i; j < len(b); j++ {
			s := &b[j]
			if s.PLC != plc {
				continue
			}
			f.value = appendString(f.value[:0], s.Tag)
			f.value = append(f.value, ':')
			f.value = appendUADataValue(f.value, s)
			_, dup := f.seen[s.Tag]
			if values && PacketSize(w.topic, len(f.buf)+dsm+len(f.value)+4, 1) > f.maxPacket {
				// This value starts the next NetworkMessage.
				add(w.topic, append(f.buf, "}}]}"...))
				f.buf = f.appendHeader(f.buf[:0])
				f.buf = f.appendDataSetMessage(f.buf, w, now, 0, "", "ua-deltaframe")
				clear(f.seen)
				first, values, dup = true, false, false
			}
			if dup {
				f.buf = append(f.buf, "}},"...)
				f.buf = f.appendDataSetMessage(f.buf, w, now, 0, "", "ua-deltaframe")
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
	}
}

func (f *uaJSONFormat) PLCStatus(st collectors.PLCStatus, add func(topic string, payload []byte)) []Message {
	var code uint32
	var symbol string
	switch st.State {
	case collectors.StateDisconnected:
		code, symbol = badNoCommunication, "BadNoCommunication"
	case collectors.StateStopped:
		code, symbol = badOutOfService, "BadOutOfService"
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
	f.buf = f.appendHeader(f.buf[:0])
	f.buf = f.appendDataSetMessage(f.buf, w, time.Now(), code, symbol, "ua-keyframe")
	for i, tag := range w.tags {
		if i > 0 {
			f.buf = append(f.buf, ',')
		}
		f.buf = appendString(f.buf, tag)
		f.buf = append(f.buf, ':')
		f.buf = appendUADataValue(f.buf, &collectors.Sample{Status: symbol, StatusCode: code})
	}
	f.buf = append(f.buf, "}}]}"...)
	add(w.topic, f.buf)
	return nil
}

func (f *uaJSONFormat) Outgoing(_ string, payload []byte) []byte { return payload }

func (f *uaJSONFormat) Will() (Message, bool) {
	return f.status(pubSubError), true
}

// reconnecting gives each connection attempt a will of its own: a
// MessageId names one publication (Part 14, 7.2.5.3).
func (f *uaJSONFormat) Reconnecting() Message {
	return f.status(pubSubError)
}

// connected publishes the ua-status, then every writer's ua-metadata.
func (f *uaJSONFormat) Connected() []Message {
	msgs := []Message{f.status(pubSubOperational)}
	f.mu.Lock()
	defer f.mu.Unlock()
	ws := slices.SortedFunc(maps.Values(f.writers), func(a, b *uaWriter) int { return a.id - b.id })
	now := time.Now()
	for _, w := range ws {
		msgs = append(msgs, f.metadata(w, now))
	}
	return msgs
}

// metadata is w's retained ua-metadata message (Part 14, 7.2.5.5.2) on
// opcua/json/metadata/<publisher>/<writer group>/<writer>: a field per
// configured tag, in configuration order, each of BaseDataType (i=24,
// BuiltInType 0, ValueRank -2, any) since the DataValues carry their own
// UaType; and the ConfigurationVersion, which changes when the writer's
// tags do (see open). Fields are in the VerboseEncoding, defaults left out.
func (f *uaJSONFormat) metadata(w *uaWriter, now time.Time) Message {
	b := f.appendMessageID(nil)
	b = append(b, `,"MessageType":"ua-metadata","PublisherId":`...)
	b = appendString(b, f.publisher)
	b = append(b, `,"DataSetWriterId":`...)
	b = strconv.AppendInt(b, int64(w.id), 10)
	b = append(b, `,"WriterGroupName":`...)
	b = appendString(b, uaWriterGroup)
	b = append(b, `,"DataSetWriterName":`...)
	b = append(b, w.name...)
	b = append(b, `,"Timestamp":`...)
	b = appendTime(b, now)
	b = append(b, `,"MetaData":{"Name":`...)
	b = append(b, w.name...)
	b = append(b, `,"Fields":[`...)
	for i, tag := range w.tags {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"Name":`...)
		b = appendString(b, tag)
		b = append(b, `,"DataType":"i=24","ValueRank":-2,"DataSetFieldId":"`...)
		b = append(b, fieldID(f.publisher, w.plc, tag)...)
		b = append(b, `"}`...)
	}
	b = append(b, `],"ConfigurationVersion":{"MajorVersion":`...)
	b = strconv.AppendUint(b, uint64(w.version), 10)
	b = append(b, `,"MinorVersion":`...)
	b = strconv.AppendUint(b, uint64(w.version), 10)
	b = append(b, "}}}"...)
	return Message{Topic: "opcua/json/metadata/" + f.publisher + "/" + uaWriterGroup + "/" + level(w.plc), Payload: b, Retain: true}
}

// fieldID is a field's DataSetFieldId: a Guid made from the names that
// identify it (an RFC 9562 version 8 UUID of their SHA-256), the same on
// every start.
func fieldID(publisher, plc, tag string) string {
	h := sha256.Sum256([]byte(publisher + "\x00" + plc + "\x00" + tag))
	h[6] = h[6]&0x0f | 0x80
	h[8] = h[8]&0x3f | 0x80
	x := fmt.Sprintf("%x", h[:16])
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

// versionTime is a VersionTime (Part 14, 6.2.3.2.2 / Part 3): seconds
// since 2000-01-01 UTC.
func versionTime(t time.Time) uint32 {
	return uint32(max(t.Unix()-946684800, 1))
}

// tagsHash identifies a writer's field list, to tell when it changed.
func tagsHash(tags []string) string {
	h := sha256.New()
	for _, t := range tags {
		h.Write([]byte(t))
		h.Write([]byte{0})
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// stopping saves every writer's exact SequenceNumber, so that a restart
// after a clean stop numbers on without a jump.
func (f *uaJSONFormat) Stopping() []Message {
	f.mu.Lock()
	for _, w := range f.writers {
		w.reserved = uint64(w.seq)
	}
	f.saveSeqs()
	f.mu.Unlock()
	return []Message{f.status(pubSubDisabled)}
}

// open reads seqFile and metaFile. Only run calls it (through New), never
// validate. A file that cannot be read as written is taken as absent:
// numbering starts at 1 again, as it did before there was one, and the
// ConfigurationVersions are new.
func (f *uaJSONFormat) Open() error {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fmt.Errorf("opcua_json state directory: %w", err)
	}
	if err := f.openMeta(); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(f.dir, seqFile))
	if errors.Is(err, fs.ErrNotExist) {
		f.mu.Lock()
		f.opened = true
		f.mu.Unlock()
		return nil
	}
	if err != nil {
		return fmt.Errorf("opcua_json sequence numbers: %w", err)
	}
	var seqs map[string]uint32
	if json.Unmarshal(b, &seqs) != nil {
		seqs = nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened = true
	for plc, seq := range seqs {
		if w, ok := f.writers[plc]; ok {
			w.seq, w.reserved = seq, uint64(seq)
		}
	}
	return nil
}

// openMeta keeps each writer's ConfigurationVersion from metaFile when
// its tags are those it was given for, and records new ones.
func (f *uaJSONFormat) openMeta() error {
	path := filepath.Join(f.dir, metaFile)
	var saved map[string]metaState
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if json.Unmarshal(b, &saved) != nil {
			saved = nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("opcua_json metadata versions: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := make(map[string]metaState, len(f.writers))
	for plc, w := range f.writers {
		st := metaState{Fields: tagsHash(w.tags), Version: w.version}
		if old, ok := saved[plc]; ok && old.Fields == st.Fields && old.Version != 0 {
			st.Version = old.Version
		} else if ok && old.Version >= st.Version {
			st.Version = old.Version + 1 // changed within the second of the last change
		}
		w.version = st.Version
		now[plc] = st
	}
	if maps.Equal(now, saved) {
		return nil
	}
	b, _ = json.Marshal(now) // strings and numbers always encode
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("opcua_json metadata versions: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("opcua_json metadata versions: %w", err)
	}
	return nil
}

// saveSeqs writes every writer's reserved SequenceNumber to seqFile, when
// the format was opened (not for validate). f.mu is held. A failure is not
// reported here: the spool, in the same directory, reports its own.
func (f *uaJSONFormat) saveSeqs() {
	if !f.opened {
		return
	}
	seqs := make(map[string]uint64, len(f.writers))
	for plc, w := range f.writers {
		seqs[plc] = min(w.reserved, math.MaxUint32)
	}
	b, _ := json.Marshal(seqs) // a map of numbers always encodes
	path := filepath.Join(f.dir, seqFile)
	tmp := path + ".tmp"
	if os.WriteFile(tmp, append(b, '\n'), 0o600) == nil {
		_ = os.Rename(tmp, path)
	}
}

// keepAlives returns a ua-keepalive DataSetMessage (Part 14, 7.2.5.4: no
// Payload; the SequenceNumber the writer's next DataSetMessage will have)
// for every writer that has sent nothing for its KeepAliveTime, the
// session's watchdog (see watchdogBound). They go out directly, at QoS 0,
// only while the link is up: a late keep-alive says nothing.
func (f *uaJSONFormat) KeepAlives(now time.Time) []Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	var msgs []Message
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
		b = appendTime(b, now)
		b = append(b, `,"MessageType":"ua-keepalive"}]}`...)
		msgs = append(msgs, Message{Topic: w.topic, Payload: b})
	}
	slices.SortFunc(msgs, func(a, b Message) int { return strings.Compare(a.Topic, b.Topic) })
	return msgs
}

// status is the Publisher's retained ua-status message. IsCyclic is false,
// so Timestamp and NextReportTime are left out (Part 14, 7.2.5.5.5).
func (f *uaJSONFormat) status(state int) Message {
	b := f.appendMessageID(nil)
	b = append(b, `,"MessageType":"ua-status","PublisherId":`...)
	b = appendString(b, f.publisher)
	b = append(b, `,"IsCyclic":false,"Status":`...)
	b = strconv.AppendInt(b, int64(state), 10)
	b = append(b, '}')
	return Message{Topic: f.statusTopic, Payload: b, Retain: true}
}

// appendStatusCode writes a StatusCode as Part 6 (v1.05.04) 5.4.2.12 does
// in the VerboseEncoding: {"Code":n,"Symbol":"BadXxx"}, the Symbol left
// out when it is not known.
func appendStatusCode(dst []byte, code uint32, symbol string) []byte {
	dst = append(dst, `{"Code":`...)
	dst = strconv.AppendUint(dst, uint64(code), 10)
	if isSymbol(symbol) {
		dst = append(dst, `,"Symbol":`...)
		dst = appendString(dst, symbol)
	}
	return append(dst, '}')
}

// isSymbol reports whether s reads like a status code's symbolic name
// ("BadTimeout"); the collectors write others, such as "Bad (0x80FF0000)",
// for codes they do not know.
func isSymbol(s string) bool {
	rest, ok := strings.CutPrefix(s, "Good")
	if !ok {
		if rest, ok = strings.CutPrefix(s, "Uncertain"); !ok {
			if rest, ok = strings.CutPrefix(s, "Bad"); !ok {
				return false
			}
		}
	}
	for _, r := range rest {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// Built-in type ids (Part 6, Table 1) that the encoder treats apart.
const (
	uaBoolean         = 1
	uaInt64           = 8
	uaUInt64          = 9
	uaFloat           = 10
	uaDouble          = 11
	uaString          = 12
	uaDateTime        = 13
	uaByteString      = 15
	uaStatusCode      = 19
	uaQualifiedName   = 20
	uaLocalizedText   = 21
	uaExtensionObject = 22
	uaDataValue       = 23
	uaVariant         = 24
	uaDiagnosticInfo  = 25
)

// uaTypeIDs maps the collectors' type names to built-in type ids.
var uaTypeIDs = map[string]int{
	"Boolean": 1, "SByte": 2, "Byte": 3, "Int16": 4, "UInt16": 5, "Int32": 6,
	"UInt32": 7, "Int64": 8, "UInt64": 9, "Float": 10, "Double": 11,
	"String": 12, "DateTime": 13, "Guid": 14, "ByteString": 15,
	"XmlElement": 16, "NodeId": 17, "ExpandedNodeId": 18, "StatusCode": 19,
	"QualifiedName": 20, "LocalizedText": 21, "ExtensionObject": 22,
	"DataValue": 23, "Variant": 24, "DiagnosticInfo": 25,
}

// uaMinDateTime is DateTime.MinValue in Part 6 JSON (5.4.2.6); the
// collectors pass a null DateTime on as nil.
const uaMinDateTime = `"0001-01-01T00:00:00Z"`

// appendUADataValue writes a sample as a DataValue in the Part 6 (v1.05.04)
// JSON encoding, 5.4.2.18, as a Part 14 DataSet field with RawData false
// (7.2.5.4.3): the Variant's fields, then the status and timestamps:
//
//	{"UaType":11,"Value":21.5,
//	 "Status":{"Code":2147811328,"Symbol":"BadCommunicationError"},
//	 "StatusCode":{"Code":2147811328,"Symbol":"BadCommunicationError"},
//	 "SourceTimestamp":"…","ServerTimestamp":"…"}
//
// The status goes under both keys: Part 6 names it Status, while
// node-opcua-json and OPC Publisher read StatusCode, and a decoder that
// finds neither takes the value as Good. Both are left out for Good (0),
// a timestamp the server did not send is left out. See appendUAVariant for
// the value.
func appendUADataValue(dst []byte, s *collectors.Sample) []byte {
	dst = append(dst, '{')
	n := len(dst)
	dst = appendUAVariant(dst, s.Type, s.Value)
	sep := func() {
		if len(dst) > n {
			dst = append(dst, ',')
		}
	}
	if s.StatusCode != 0 {
		sep()
		dst = append(dst, `"Status":`...)
		dst = appendStatusCode(dst, s.StatusCode, s.Status)
		dst = append(dst, `,"StatusCode":`...)
		dst = appendStatusCode(dst, s.StatusCode, s.Status)
	}
	if !s.SourceTime.IsZero() {
		sep()
		dst = append(dst, `"SourceTimestamp":`...)
		dst = appendTime(dst, s.SourceTime)
	}
	if !s.ServerTime.IsZero() {
		sep()
		dst = append(dst, `"ServerTimestamp":`...)
		dst = appendTime(dst, s.ServerTime)
	}
	return append(dst, '}')
}

// appendUAVariant writes the fields of a Variant (Part 6, 5.4.2.17) of the
// type named typeName, without braces: "UaType":t,"Value":…, and for a
// matrix, flattened, its dimensions under both Dimensions (Part 6) and
// UaDimensions (node-opcua-json). A Null Variant writes nothing; a null
// value of a known type writes only UaType, except DateTime, whose null is
// DateTime.MinValue. A value that does not fit typeName (which the
// collectors never send) gets the type its Go value has.
func appendUAVariant(dst []byte, typeName string, v any) []byte {
	t, ok := uaTypeIDs[typeName]
	if !ok && v == nil {
		return dst
	}
	var dims []int
	if arr, isArr := v.([]any); isArr {
		if d, flat, matrix := flatten(arr); matrix {
			v, dims = flat, d
		}
	}
	if !ok || !typeFits(t, v) {
		if t = goUAType(v); t == 0 {
			return dst
		}
	}
	dst = append(dst, `"UaType":`...)
	dst = strconv.AppendInt(dst, int64(t), 10)
	if v == nil {
		if t == uaDateTime {
			dst = append(dst, `,"Value":`...)
			dst = append(dst, uaMinDateTime...)
		}
		return dst
	}
	dst = append(dst, `,"Value":`...)
	dst = appendUAValue(dst, v, t)
	if dims != nil {
		for _, key := range []string{`,"Dimensions":[`, `,"UaDimensions":[`} {
			dst = append(dst, key...)
			for i, d := range dims {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = strconv.AppendInt(dst, int64(d), 10)
			}
			dst = append(dst, ']')
		}
	}
	return dst
}

// goUAType is the built-in type that a Go value from the collectors is in,
// for a nested Variant, whose type they do not pass on; 0 for nil.
func goUAType(v any) int {
	switch v := v.(type) {
	case bool:
		return 1
	case int8:
		return 2
	case uint8:
		return 3
	case int16:
		return 4
	case uint16:
		return 5
	case int32:
		return 6
	case uint32:
		return 7
	case int64, int:
		return uaInt64
	case uint64, uint:
		return uaUInt64
	case float32:
		return uaFloat
	case float64:
		return uaDouble
	case string:
		return uaString
	case time.Time:
		return uaDateTime
	case []byte:
		return uaByteString
	case map[string]any, collectors.Structure:
		return uaExtensionObject
	case []any:
		t := 0
		for _, e := range v {
			if et := goUAType(e); et != 0 {
				if t != 0 && et != t {
					return uaVariant // mixed elements: an array of Variants
				}
				t = et
			}
		}
		return cmp.Or(t, uaVariant)
	}
	return 0
}

// typeFits reports whether v (a scalar or a one-dimensional array) holds
// what the built-in type t says, so that UaType never lies.
func typeFits(t int, v any) bool {
	if arr, ok := v.([]any); ok {
		for _, e := range arr {
			if e != nil && !scalarFits(t, e) {
				return false
			}
		}
		return true
	}
	return v == nil || scalarFits(t, v)
}

func scalarFits(t int, v any) bool {
	switch t {
	case uaVariant:
		return true
	case uaDataValue, uaDiagnosticInfo:
		_, ok := v.(map[string]any)
		return ok
	case uaExtensionObject:
		switch v.(type) {
		case map[string]any, collectors.Structure:
			return true
		}
		return false
	}
	switch v.(type) {
	case bool:
		return t == uaBoolean
	case int8, uint8, int16, uint16, int32, uint32:
		return t >= 2 && t <= 7
	case int64, uint64, int, uint:
		return t == uaInt64 || t == uaUInt64
	case float32, float64:
		return t == uaFloat || t == uaDouble
	case string:
		return t == uaString || t == 14 || t >= 16 && t <= 18 || t >= uaStatusCode && t <= uaLocalizedText
	case time.Time:
		return t == uaDateTime
	case []byte:
		return t == uaByteString
	}
	return false
}

// appendUAValue writes v, a scalar or an array of scalars of built-in
// type t, in Part 6 (v1.05.04) JSON: Int64 and UInt64 as strings; NaN and
// ±Infinity as "NaN", "Infinity", "-Infinity"; ByteString base64; StatusCode
// {"Code","Symbol"}; QualifiedName "<ns index>:<name>"; LocalizedText
// {"Text"}; an ExtensionObject {"UaTypeId","UaBody"} (UaEncoding 1 or 2 for
// a body the agent could not decode); a nested DataValue or Variant with its
// own UaType. A null array element is null, a null DateTime element
// DateTime.MinValue.
func appendUAValue(dst []byte, v any, t int) []byte {
	switch v := v.(type) {
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			if e == nil && t == uaDateTime {
				dst = append(dst, uaMinDateTime...)
				continue
			}
			dst = appendUAValue(dst, e, t)
		}
		return append(dst, ']')
	case nil:
		return append(dst, "null"...)
	case int64:
		return appendQuotedInt(dst, v)
	case uint64:
		return appendQuotedUint(dst, v)
	case int:
		return appendQuotedInt(dst, int64(v))
	case uint:
		return appendQuotedUint(dst, uint64(v))
	case string:
		switch t {
		case uaLocalizedText:
			dst = append(dst, `{"Text":`...)
			dst = appendString(dst, v)
			return append(dst, '}')
		case uaStatusCode:
			code, ok := statusCodeOf(v)
			if !ok {
				return append(dst, "null"...)
			}
			if code == 0 {
				return append(dst, "{}"...)
			}
			return appendStatusCode(dst, code, v)
		}
	case collectors.Structure:
		return appendUAStructure(dst, v)
	case map[string]any:
		switch t {
		case uaExtensionObject:
			return appendUAExtensionObject(dst, v)
		case uaDataValue:
			return appendUANestedDataValue(dst, v)
		}
	}
	if t == uaVariant {
		dst = append(dst, '{')
		dst = appendUAVariant(dst, "", v)
		return append(dst, '}')
	}
	return appendValue(dst, v)
}

// appendUAStructure writes a structure whose DataType the collector knows:
// {"UaTypeId":"<DataType node id>","UaBody":{fields in the DataType's order}}.
func appendUAStructure(dst []byte, st collectors.Structure) []byte {
	dst = append(dst, '{')
	if st.TypeID != "" {
		dst = append(dst, `"UaTypeId":`...)
		dst = appendString(dst, st.TypeID)
		dst = append(dst, ',')
	}
	dst = append(dst, `"UaBody":{`...)
	for i, f := range st.Fields {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, f.Name)
		dst = append(dst, ':')
		dst = appendUAFieldValue(dst, f.Value)
	}
	return append(dst, "}}"...)
}

// appendUAFieldValue writes a structure field: its value in the form of
// the built-in type its Go value has (a field is not a Variant).
func appendUAFieldValue(dst []byte, v any) []byte {
	t := goUAType(v)
	if t == 0 {
		return append(dst, "null"...)
	}
	return appendUAValue(dst, v, t)
}

// appendUAExtensionObject writes an ExtensionObject from the collectors'
// map: one whose body they could not decode ({"type_id","encoding","body"})
// keeps its type id and body (UaEncoding 1 for binary, base64; 2 for XML);
// a decoded one, whose DataType they do not pass on, has its fields as
// UaBody without UaTypeId.
func appendUAExtensionObject(dst []byte, m map[string]any) []byte {
	typeID, hasID := m["type_id"].(string)
	enc, hasEnc := m["encoding"].(string)
	if hasID && hasEnc && len(m) == 3 {
		dst = append(dst, `{"UaTypeId":`...)
		dst = appendString(dst, typeID)
		switch enc {
		case "binary":
			dst = append(dst, `,"UaEncoding":1`...)
		case "xml":
			dst = append(dst, `,"UaEncoding":2`...)
		}
		if body := m["body"]; body != nil {
			dst = append(dst, `,"UaBody":`...)
			dst = appendValue(dst, body)
		}
		return append(dst, '}')
	}
	dst = append(dst, `{"UaBody":{`...)
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = appendUAFieldValue(dst, m[k])
	}
	return append(dst, "}}"...)
}

// appendUANestedDataValue writes a DataValue inside a Variant, from the
// collectors' map {"value","type","status","status_code","source_time","server_time"}.
func appendUANestedDataValue(dst []byte, m map[string]any) []byte {
	var s collectors.Sample
	s.Value = m["value"]
	s.Type, _ = m["type"].(string)
	s.Status, _ = m["status"].(string)
	s.StatusCode, _ = m["status_code"].(uint32)
	s.SourceTime, _ = m["source_time"].(time.Time)
	s.ServerTime, _ = m["server_time"].(time.Time)
	return appendUADataValue(dst, &s)
}

// statusCodes maps status code symbols to their codes, for StatusCode
// values, which the collectors pass on by name.
var statusCodes = sync.OnceValue(func() map[string]uint32 {
	undo := strings.NewReplacer("ID", "Id", "URI", "Uri", "URL", "Url", "TCP", "Tcp")
	m := make(map[string]uint32, len(ua.StatusCodes))
	for c, d := range ua.StatusCodes {
		m[undo.Replace(strings.TrimPrefix(d.Name, "Status"))] = uint32(c)
	}
	m["Good"] = 0
	return m
})

// statusCodeOf reads a status code from its symbol, or from the collectors'
// form for an unknown code, "Bad (0x80AB0000)".
func statusCodeOf(name string) (uint32, bool) {
	if c, ok := statusCodes()[name]; ok {
		return c, true
	}
	if i := strings.Index(name, "(0x"); i >= 0 && strings.HasSuffix(name, ")") {
		c, err := strconv.ParseUint(name[i+3:len(name)-1], 16, 32)
		return uint32(c), err == nil
	}
	return 0, false
}

// flatten turns a matrix (nested []any, outer dimension first, every row of
// a level the same length) into its elements in row-major order and its
// dimensions, as Part 6 (5.2.2.16, 5.4.2.17) wants. matrix is false for a
// one-dimensional array or a ragged one.
func flatten(arr []any) (dims []int, flat []any, matrix bool) {
	if len(arr) == 0 {
		return nil, nil, false
	}
	if _, ok := arr[0].([]any); !ok {
		return nil, nil, false
	}
	dims = []int{len(arr)}
	level := arr
	for {
		first, ok := level[0].([]any)
		if !ok {
			break
		}
		n := len(first)
		var next []any
		for _, e := range level {
			row, ok := e.([]any)
			if !ok || len(row) != n {
				return nil, nil, false
			}
			next = append(next, row...)
		}
		dims = append(dims, n)
		level = next
		if n == 0 {
			break
		}
	}
	for _, e := range level {
		if _, nested := e.([]any); nested {
			return nil, nil, false
		}
	}
	return dims, level, true
}
