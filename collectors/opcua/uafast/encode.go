package uafast

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/gopcua/opcua/ua"
)

// EncodeRequest encodes the requests a session sends in bulk or all the
// time (PublishRequest; CreateMonitoredItemsRequest and ReadRequest with
// one entry per tag at start-up) without reflection, byte for byte as
// ua.Encode does (TestEncodeRequest holds it to that). ok is false for
// other requests and for any with a nil pointer in it, which the caller
// encodes with ua.Encode.
func EncodeRequest(req ua.Request) (b []byte, ok bool) {
	e := encoder{}
	switch r := req.(type) {
	case *ua.PublishRequest:
		e.b = make([]byte, 0, 64+8*len(r.SubscriptionAcknowledgements))
		e.requestHeader(r.RequestHeader)
		e.length(len(r.SubscriptionAcknowledgements), r.SubscriptionAcknowledgements == nil)
		for _, a := range r.SubscriptionAcknowledgements {
			if a == nil {
				return nil, false
			}
			e.u32(a.SubscriptionID)
			e.u32(a.SequenceNumber)
		}
	case *ua.CreateMonitoredItemsRequest:
		e.b = make([]byte, 0, 64+48*len(r.ItemsToCreate))
		e.requestHeader(r.RequestHeader)
		e.u32(r.SubscriptionID)
		e.u32(uint32(r.TimestampsToReturn))
		e.length(len(r.ItemsToCreate), r.ItemsToCreate == nil)
		for _, it := range r.ItemsToCreate {
			if it == nil || it.RequestedParameters == nil {
				return nil, false
			}
			e.readValueID(it.ItemToMonitor)
			e.u32(uint32(it.MonitoringMode))
			p := it.RequestedParameters
			e.u32(p.ClientHandle)
			e.f64(p.SamplingInterval)
			e.extensionObject(p.Filter)
			e.u32(p.QueueSize)
			e.boolean(p.DiscardOldest)
		}
	case *ua.ReadRequest:
		e.b = make([]byte, 0, 64+24*len(r.NodesToRead))
		e.requestHeader(r.RequestHeader)
		e.f64(r.MaxAge)
		e.u32(uint32(r.TimestampsToReturn))
		e.length(len(r.NodesToRead), r.NodesToRead == nil)
		for _, n := range r.NodesToRead {
			e.readValueID(n)
		}
	default:
		return nil, false
	}
	if e.bad {
		return nil, false
	}
	return e.b, true
}

// encoder appends; bad is set for what ua.Encode is to judge.
type encoder struct {
	b   []byte
	bad bool
}

func (e *encoder) u16(v uint16) { e.b = binary.LittleEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.LittleEndian.AppendUint64(e.b, v) }

func (e *encoder) boolean(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

// f64 writes NaN as gopcua does, as its quiet NaN.
func (e *encoder) f64(v float64) {
	if math.IsNaN(v) {
		e.u64(f64QuietNaN)
		return
	}
	e.u64(math.Float64bits(v))
}

// str writes "" as the null String, as gopcua does.
func (e *encoder) str(s string) {
	if s == "" {
		e.u32(math.MaxUint32)
		return
	}
	if len(s) > math.MaxInt32 {
		e.bad = true
		return
	}
	e.u32(uint32(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) length(n int, null bool) {
	if null {
		e.u32(math.MaxUint32)
		return
	}
	e.u32(uint32(n))
}

func (e *encoder) dateTime(t time.Time) {
	if t.IsZero() {
		e.u64(0)
		return
	}
	e.u64(uint64(t.UTC().UnixNano()/100 + unixEpochTicks))
}

// nodeID uses gopcua's own NodeID encoder: its fields are private.
func (e *encoder) nodeID(n *ua.NodeID) {
	if n == nil {
		e.bad = true
		return
	}
	b, err := n.Encode()
	if err != nil {
		e.bad = true
		return
	}
	e.b = append(e.b, b...)
}

// extensionObject uses gopcua's encoder, which writes nil as the empty
// ExtensionObject.
func (e *encoder) extensionObject(x *ua.ExtensionObject) {
	b, err := x.Encode()
	if err != nil {
		e.bad = true
		return
	}
	e.b = append(e.b, b...)
}

func (e *encoder) requestHeader(h *ua.RequestHeader) {
	if h == nil {
		e.bad = true
		return
	}
	e.nodeID(h.AuthenticationToken)
	e.dateTime(h.Timestamp)
	e.u32(h.RequestHandle)
	e.u32(h.ReturnDiagnostics)
	e.str(h.AuditEntryID)
	e.u32(h.TimeoutHint)
	e.extensionObject(h.AdditionalHeader)
}

func (e *encoder) readValueID(r *ua.ReadValueID) {
	if r == nil || r.DataEncoding == nil {
		e.bad = true
		return
	}
	e.nodeID(r.NodeID)
	e.u32(uint32(r.AttributeID))
	e.str(r.IndexRange)
	e.u16(r.DataEncoding.NamespaceIndex)
	e.str(r.DataEncoding.Name)
}
