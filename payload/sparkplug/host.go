package sparkplug

import (
	"encoding/json"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tagbridge/tagbridge/payload"
)

func (f *sparkplugFormat) Will() (payload.Message, bool) {
	return payload.Message{Topic: f.nodeTopic("NDEATH"), Payload: f.appendDeath(nil, time.Time{})}, true
}

// appendDeath appends an NDEATH payload: bdSeq, no seq; the will's has no
// timestamp, as it is made long before the broker sends it.
func (f *sparkplugFormat) appendDeath(b []byte, now time.Time) []byte {
	if !now.IsZero() {
		b = appendSpTimestamp(b, spPayloadTimestamp, now)
	}
	return f.appendBDSeq(b, now)
}

func (f *sparkplugFormat) appendBDSeq(b []byte, now time.Time) []byte {
	var mb []byte
	mb = protowire.AppendTag(mb, spMetricName, protowire.BytesType)
	mb = protowire.AppendString(mb, spBDSeq)
	mb = protowire.AppendTag(mb, spMetricAlias, protowire.VarintType)
	mb = protowire.AppendVarint(mb, f.bdSeqAlias)
	if !now.IsZero() {
		mb = appendSpTimestamp(mb, spMetricTimestamp, now)
	}
	mb = protowire.AppendTag(mb, spMetricDatatype, protowire.VarintType)
	mb = protowire.AppendVarint(mb, spInt64)
	mb = protowire.AppendTag(mb, spMetricLong, protowire.VarintType)
	mb = protowire.AppendVarint(mb, f.bdSeq.Load())
	b = protowire.AppendTag(b, spPayloadMetrics, protowire.BytesType)
	return protowire.AppendBytes(b, mb)
}

// connected starts the connection's seq at 0 with the NBIRTH, followed by
// the DBIRTH of every device born at the point of the spooled stream where
// sending resumes (devices born later are born by their spooled DBIRTH).
func (f *sparkplugFormat) Connected() []payload.Message {
	now := time.Now()
	f.seq = 0
	b := appendSpTimestamp(nil, spPayloadTimestamp, now)
	b = f.appendBDSeq(b, now)
	var mb []byte
	mb = protowire.AppendTag(mb, spMetricName, protowire.BytesType)
	mb = protowire.AppendString(mb, spRebirth)
	mb = protowire.AppendTag(mb, spMetricAlias, protowire.VarintType)
	mb = protowire.AppendVarint(mb, f.rebirthAlias)
	mb = appendSpTimestamp(mb, spMetricTimestamp, now)
	mb = protowire.AppendTag(mb, spMetricDatatype, protowire.VarintType)
	mb = protowire.AppendVarint(mb, spBoolean)
	mb = appendSpValue(mb, spBoolean, false)
	b = protowire.AppendTag(b, spPayloadMetrics, protowire.BytesType)
	b = protowire.AppendBytes(b, mb)
	b = appendSpSeq(b, f.nextSeq())
	msgs := []payload.Message{{Topic: f.nodeTopic("NBIRTH"), Payload: b}}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.order {
		if f.live[d.id] {
			msgs = append(msgs, payload.Message{Topic: d.birth, Payload: f.sendBirth(d, now, f.nextSeq())})
		}
	}
	return msgs
}

func (f *sparkplugFormat) Stopping() []payload.Message {
	return []payload.Message{{Topic: f.nodeTopic("NDEATH"), Payload: f.appendDeath(nil, time.Now())}}
}

// commandTopics are the node's NCMD topic and its devices' DCMD topics,
// which an edge node subscribes to (tagbridge writes nothing: a DCMD is
// taken and ignored).
func (f *sparkplugFormat) CommandTopics() []string {
	topics := []string{f.nodeTopic("NCMD"), f.nodeTopic("DCMD") + "/+"}
	if f.hostTopic != "" {
		topics = append(topics, f.hostTopic)
	}
	return topics
}

// gate reports whether the node may be born and send: always, or with
// sparkplug.primary_host_id while its host is online; changed is closed
// when that changes.
func (f *sparkplugFormat) Gate() (open bool, changed <-chan struct{}) {
	if f.hostTopic == "" {
		return true, nil
	}
	f.hostMu.Lock()
	defer f.hostMu.Unlock()
	return f.hostOnline, f.hostChanged
}

// setHost takes a STATE of the primary host, unless it is older than
// the latest taken (stamp -1: a new session, which forgets the host).
func (f *sparkplugFormat) setHost(online bool, stamp int64) {
	if f.hostTopic == "" {
		return
	}
	f.hostMu.Lock()
	defer f.hostMu.Unlock()
	if stamp >= 0 && stamp < f.hostStamp {
		return
	}
	if stamp >= 0 {
		f.hostStamp = stamp
	}
	if online != f.hostOnline {
		f.hostOnline = online
		close(f.hostChanged)
		f.hostChanged = make(chan struct{})
	}
}

// hostState takes a STATE payload (Sparkplug 3.0: JSON, {"online": true,
// "timestamp": ms}); anything else is ignored.
func (f *sparkplugFormat) hostState(payload []byte) {
	var st struct {
		Online    *bool `json:"online"`
		Timestamp int64 `json:"timestamp"`
	}
	if json.Unmarshal(payload, &st) != nil || st.Online == nil || st.Timestamp < 0 {
		return
	}
	f.setHost(*st.Online, st.Timestamp)
}

// command reports whether an NCMD payload asks for a rebirth: a metric
// named Node Control/Rebirth with the boolean value true.
func (f *sparkplugFormat) Command(topic string, payload []byte) bool {
	if f.hostTopic != "" && topic == f.hostTopic {
		f.hostState(payload)
		return false
	}
	if topic != f.nodeTopic("NCMD") {
		return false
	}
	rebirth := false
	walkFields(payload, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		if num != spPayloadMetrics || typ != protowire.BytesType {
			return
		}
		var name string
		var value, isBool bool
		walkFields(v, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) {
			switch {
			case num == spMetricName && typ == protowire.BytesType:
				name = string(v)
			case num == spMetricBool && typ == protowire.VarintType:
				value, isBool = n != 0, true
			case num >= spMetricInt && num <= spMetricExtension && typ == spValueWireType[num-spMetricInt]:
				isBool = false // the value oneof: the last one counts
			}
		})
		if name == spRebirth && isBool && value {
			rebirth = true
		}
	})
	return rebirth
}
