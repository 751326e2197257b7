// Package uafast decodes the PublishResponses that carry data changes
// without reflection and without a gopcua value per item: the items of a
// DataChangeNotification become flat Items (the scalar's bits, or a span of
// the message for strings and arrays) in one slice per notification.
// Turning an Item into a neutral value is the collector's business.
//
// It covers what PLCs send in the steady state: every built-in type as a
// scalar or a one-dimensional array, except the four that nest
// (ExtensionObject, DataValue, Variant, DiagnosticInfo). Anything else
// (matrices, those four, other notification kinds, diagnostics, header
// extensions, a malformed message) makes Decode decline, and the caller
// decodes the message with uadecode, the bounded reflective decoder: Decode
// is never more lenient than uadecode, so a message it accepts decodes
// there to the same values (FuzzDecode holds it to that). DecodeRead does
// the same for ReadResponses of scalars (read.go), which start-up reads by
// the hundred thousand.
package uafast

import (
	"encoding/binary"
	"math"
	"sync"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors/opcua/uadecode"
)

// Item is one MonitoredItemNotification: its client handle and DataValue.
type Item struct {
	ClientHandle uint32
	// Mask is the DataValue's encoding mask (ua.DataValueValue, ...); the
	// fields it does not name are zero.
	Mask        uint8
	variant     uint8 // the Variant's encoding mask; 0 is the null Variant
	SourcePicos uint16
	ServerPicos uint16
	Status      ua.StatusCode
	length      int32  // array length, -1 for a null array
	bits        uint64 // a fixed-size scalar, little-endian
	sourceTicks uint64
	serverTicks uint64
	data        []byte // a variable-size scalar (encoded) or an array's elements, in the message
}

// DataChange is one DataChangeNotification, decoded.
type DataChange struct {
	Items []Item
	// body is the encoded notification, for Notification.
	body []byte
}

// itemSlices keeps the Items of released notifications for the next ones:
// at 100,000 values a second they are the largest garbage the decoder
// would make.
var itemSlices sync.Pool // *[]Item

// Release gives the notification's Items back for reuse; n and its Items
// must not be used afterwards. A notification not released is simply
// collected.
func (n *DataChange) Release() {
	if n.Items != nil {
		items := n.Items[:0]
		n.Items = nil
		itemSlices.Put(&items)
	}
}

// newItems is a zeroed slice of n Items, reused when one is free.
func newItems(n int) []Item {
	if p, _ := itemSlices.Get().(*[]Item); p != nil && cap(*p) >= n {
		items := (*p)[:n]
		clear(items)
		return items
	}
	return make([]Item, n)
}

// Notification decodes the notification again into gopcua's types, with
// uadecode: for callers that want ua.DataChangeNotification.
func (n *DataChange) Notification() (*ua.DataChangeNotification, error) {
	var dn *ua.DataChangeNotification
	if _, err := uadecode.DefaultLimits().Decode(n.body, &dn); err != nil {
		return nil, err
	}
	return dn, nil
}

// Type is the built-in type of the item's value (ua.TypeIDNull for none).
func (it *Item) Type() ua.TypeID {
	if it.Mask&ua.DataValueValue == 0 {
		return ua.TypeIDNull
	}
	return ua.TypeID(it.variant & variantTypeMask)
}

// IsArray tells an array from a scalar.
func (it *Item) IsArray() bool { return it.variant&ua.VariantArrayValues != 0 }

// Bits is a fixed-size scalar's value (Boolean 0 or 1, integers, Float and
// Double bits, StatusCode), zero-extended; DateTime is in DateTime.
func (it *Item) Bits() uint64 { return it.bits }

// SourceTime and ServerTime are the DataValue's timestamps as gopcua reads
// them (the zero time for 0); only meaningful when Mask has their bit.
func (it *Item) SourceTime() time.Time { return dateTime(it.sourceTicks) }
func (it *Item) ServerTime() time.Time { return dateTime(it.serverTicks) }

// SourceTicks and ServerTicks are the timestamps as sent, in DateTime ticks.
func (it *Item) SourceTicks() uint64 { return it.sourceTicks }
func (it *Item) ServerTicks() uint64 { return it.serverTicks }

// DateTime converts DateTime ticks as gopcua does (SourceTime, ServerTime).
func DateTime(ticks uint64) time.Time { return dateTime(ticks) }

const (
	variantTypeMask = 0x3f
	// ExpandedNodeId flags in the NodeId's mask: a namespace URI and a
	// server index follow.
	expandedURI   = 0x80
	expandedIndex = 0x40
	// Encoding ids (numeric, namespace 0) of what the fast path reads.
	publishResponseID        = id.PublishResponse_Encoding_DefaultBinary
	dataChangeNotificationID = id.DataChangeNotification_Encoding_DefaultBinary
	// uadecode's DefaultLimits, which Decode never exceeds.
	maxArrayLength  = 1 << 24
	maxStringLength = 1 << 26
)

// Decode decodes a service message body (the type id, then the service) if
// it is a PublishResponse the fast path covers; ok is false for anything
// else, which the caller decodes with uadecode (also to get the error of a
// malformed message). The DataChangeNotifications become *DataChange values
// of the NotificationData's ExtensionObjects; their Items alias b, which the
// caller must not change afterwards.
func Decode(b []byte) (res *ua.PublishResponse, ok bool) {
	r := reader{b: b}
	if r.numericNodeID() != publishResponseID || r.bad {
		return nil, false
	}
	res = &ua.PublishResponse{ResponseHeader: r.responseHeader()}
	res.SubscriptionID = r.u32()
	res.AvailableSequenceNumbers = r.uint32s()
	res.MoreNotifications = r.u8() > 0
	msg := &ua.NotificationMessage{SequenceNumber: r.u32(), PublishTime: dateTime(r.u64())}
	res.NotificationMessage = msg
	if n, null := r.length(3); !null && !r.bad {
		msg.NotificationData = make([]*ua.ExtensionObject, n)
		for i := range msg.NotificationData {
			msg.NotificationData[i] = r.notification()
			if r.bad {
				return nil, false
			}
		}
	}
	if n, null := r.length(4); !null && !r.bad {
		res.Results = make([]ua.StatusCode, n)
		for i := range res.Results {
			res.Results[i] = ua.StatusCode(r.u32())
		}
	}
	res.DiagnosticInfos = r.emptyDiagnostics()
	if r.bad {
		return nil, false
	}
	return res, true
}

// reader walks one message; bad is sticky, and set for anything malformed
// and anything the fast path leaves to uadecode alike.
type reader struct {
	b   []byte
	pos int
	bad bool
}

func (r *reader) left() int { return len(r.b) - r.pos }

func (r *reader) take(n int) []byte {
	if r.bad || n > r.left() {
		r.bad = true
		return nil
	}
	s := r.b[r.pos : r.pos+n : r.pos+n]
	r.pos += n
	return s
}

func (r *reader) u8() uint8 {
	if r.bad || r.pos >= len(r.b) {
		r.bad = true
		return 0
	}
	r.pos++
	return r.b[r.pos-1]
}

func (r *reader) u16() uint16 {
	if s := r.take(2); s != nil {
		return binary.LittleEndian.Uint16(s)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if s := r.take(4); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if s := r.take(8); s != nil {
		return binary.LittleEndian.Uint64(s)
	}
	return 0
}

// length reads an Int32 length prefix as uadecode checks it: -1 is null,
// other negatives, lengths past the limit and lengths the remaining bytes
// cannot hold (minSize bytes an element) are bad.
func (r *reader) length(minSize int) (n int, null bool) {
	raw := int32(r.u32())
	switch {
	case r.bad:
		return 0, false
	case raw == -1:
		return 0, true
	case raw < 0 || raw > maxArrayLength || int(raw) > r.left()/minSize:
		r.bad = true
		return 0, false
	}
	return int(raw), false
}

// str skips a String or ByteString and returns its bytes (nil for null).
func (r *reader) str() []byte {
	raw := int32(r.u32())
	switch {
	case r.bad || raw == -1:
		return nil
	case raw < 0 || raw > maxStringLength:
		r.bad = true
		return nil
	}
	return r.take(int(raw))
}

// numericNodeID reads a NodeId in namespace 0 without flags and returns
// its number; any other NodeId is bad (and so is its message declined).
func (r *reader) numericNodeID() uint32 {
	switch r.u8() {
	case 0: // two-byte
		return uint32(r.u8())
	case 1: // four-byte
		if r.u8() != 0 {
			r.bad = true
		}
		return uint32(r.u16())
	case 2:
		if r.u16() != 0 {
			r.bad = true
		}
		return r.u32()
	}
	r.bad = true
	return 0
}

// responseHeader reads a ResponseHeader whose diagnostics and additional
// header are empty; the string table is read and dropped (it only serves
// diagnostics).
func (r *reader) responseHeader() *ua.ResponseHeader {
	h := &ua.ResponseHeader{
		Timestamp:          dateTime(r.u64()),
		RequestHandle:      r.u32(),
		ServiceResult:      ua.StatusCode(r.u32()),
		ServiceDiagnostics: &ua.DiagnosticInfo{},
	}
	if r.u8() != 0 { // diagnostics
		r.bad = true
	}
	if n, null := r.length(4); !null {
		for i := 0; i < n && !r.bad; i++ {
			r.str()
		}
	}
	// AdditionalHeader: the null NodeId and no body.
	if r.numericNodeID() != 0 || r.u8() != 0 {
		r.bad = true
	}
	h.AdditionalHeader = &ua.ExtensionObject{TypeID: ua.NewTwoByteExpandedNodeID(0)}
	return h
}

func (r *reader) uint32s() []uint32 {
	n, null := r.length(4)
	if null || r.bad {
		return nil
	}
	s := r.take(4 * n)
	out := make([]uint32, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(s[4*i:])
	}
	return out
}

// emptyDiagnostics reads an array of DiagnosticInfos that must all be empty.
func (r *reader) emptyDiagnostics() []*ua.DiagnosticInfo {
	n, null := r.length(1)
	if null || r.bad {
		return nil
	}
	out := make([]*ua.DiagnosticInfo, n)
	for i := range out {
		if r.u8() != 0 {
			r.bad = true
			return nil
		}
		out[i] = &ua.DiagnosticInfo{}
	}
	return out
}

// notification reads one ExtensionObject of NotificationData, which must
// be a binary DataChangeNotification.
func (r *reader) notification() *ua.ExtensionObject {
	if r.numericNodeID() != dataChangeNotificationID || r.u8() != ua.ExtensionObjectBinary {
		r.bad = true
		return nil
	}
	length := r.u32()
	if r.bad || length == 0 || length == 0xffffffff || int64(length) > int64(r.left()) {
		r.bad = true
		return nil
	}
	body := r.take(int(length))
	inner := reader{b: body}
	n := &DataChange{body: body}
	n.Items = inner.items()
	inner.emptyDiagnostics()
	if inner.bad {
		r.bad = true
		return nil
	}
	return &ua.ExtensionObject{
		TypeID:       ua.NewFourByteExpandedNodeID(0, dataChangeNotificationID),
		EncodingMask: ua.ExtensionObjectBinary,
		Value:        n,
	}
}

// items reads the MonitoredItemNotifications (a ClientHandle and a
// DataValue, at least 5 bytes each).
func (r *reader) items() []Item {
	n, null := r.length(5)
	if null || r.bad {
		return nil
	}
	items := newItems(n)
	for i := range items {
		it := &items[i]
		it.ClientHandle = r.u32()
		r.dataValue(it)
		if r.bad {
			return nil
		}
	}
	return items
}

func (r *reader) dataValue(it *Item) {
	it.Mask = r.u8()
	if it.Mask&ua.DataValueValue != 0 {
		r.variant(it)
	}
	if it.Mask&ua.DataValueStatusCode != 0 {
		it.Status = ua.StatusCode(r.u32())
	}
	if it.Mask&ua.DataValueSourceTimestamp != 0 {
		it.sourceTicks = r.u64()
	}
	if it.Mask&ua.DataValueSourcePicoseconds != 0 {
		it.SourcePicos = r.u16()
	}
	if it.Mask&ua.DataValueServerTimestamp != 0 {
		it.serverTicks = r.u64()
	}
	if it.Mask&ua.DataValueServerPicoseconds != 0 {
		it.ServerPicos = r.u16()
	}
}

// fixedSize is the encoded size of the fixed-size built-in types.
var fixedSize = [...]uint8{
	ua.TypeIDBoolean: 1, ua.TypeIDSByte: 1, ua.TypeIDByte: 1,
	ua.TypeIDInt16: 2, ua.TypeIDUint16: 2,
	ua.TypeIDInt32: 4, ua.TypeIDUint32: 4, ua.TypeIDFloat: 4, ua.TypeIDStatusCode: 4,
	ua.TypeIDInt64: 8, ua.TypeIDUint64: 8, ua.TypeIDDouble: 8, ua.TypeIDDateTime: 8,
	ua.TypeIDGUID: 16,
}

// minSize is the fewest bytes of one element of a variable-size type, as
// uadecode checks array lengths.
var minSize = [...]uint8{
	ua.TypeIDString: 4, ua.TypeIDByteString: 4, ua.TypeIDXMLElement: 4,
	ua.TypeIDNodeID: 2, ua.TypeIDExpandedNodeID: 2,
	ua.TypeIDQualifiedName: 6, ua.TypeIDLocalizedText: 1,
}

func (r *reader) variant(it *Item) {
	mask := r.u8()
	typ := ua.TypeID(mask & variantTypeMask)
	it.variant = mask
	switch {
	case r.bad:
		return
	case typ == ua.TypeIDNull:
		if mask != 0 {
			r.bad = true // flag bits on a null Variant: uadecode's to judge
		}
		return
	case typ >= ua.TypeIDExtensionObject, mask&ua.VariantArrayDimensions != 0:
		r.bad = true // nesting types, matrices, invalid types
		return
	}
	if mask&ua.VariantArrayValues == 0 {
		if size := fixedSizeOf(typ); size > 0 && typ != ua.TypeIDGUID {
			s := r.take(size)
			if s == nil {
				return
			}
			switch size {
			case 1:
				it.bits = uint64(s[0])
				if typ == ua.TypeIDBoolean && s[0] > 0 {
					it.bits = 1
				}
			case 2:
				it.bits = uint64(binary.LittleEndian.Uint16(s))
			case 4:
				it.bits = uint64(binary.LittleEndian.Uint32(s))
			case 8:
				it.bits = binary.LittleEndian.Uint64(s)
			}
			return
		}
		start := r.pos
		r.skip(typ)
		if !r.bad {
			it.data = r.b[start:r.pos:r.pos]
		}
		return
	}
	elemMin := elementMinSize(typ)
	n, null := r.length(elemMin)
	if r.bad {
		return
	}
	if null {
		it.length = -1
		return
	}
	if typ == ua.TypeIDByteString && n > ua.MaxVariantArrayLength {
		r.bad = true // gopcua decodes ByteString arrays for uadecode, and refuses these
		return
	}
	it.length = int32(n)
	start := r.pos
	if size := fixedSizeOf(typ); size > 0 {
		r.take(n * size)
	} else {
		for i := 0; i < n && !r.bad; i++ {
			r.skip(typ)
		}
	}
	if !r.bad {
		it.data = r.b[start:r.pos:r.pos]
	}
}

func fixedSizeOf(typ ua.TypeID) int {
	if int(typ) < len(fixedSize) {
		return int(fixedSize[typ])
	}
	return 0
}

func elementMinSize(typ ua.TypeID) int {
	if s := fixedSizeOf(typ); s > 0 {
		return s
	}
	return int(minSize[typ])
}

// skip reads past one value of a variable-size type (or a Guid),
// checking it as uadecode does.
func (r *reader) skip(typ ua.TypeID) {
	switch typ {
	case ua.TypeIDGUID:
		r.take(16)
	case ua.TypeIDString, ua.TypeIDByteString, ua.TypeIDXMLElement:
		r.str()
	case ua.TypeIDNodeID:
		r.nodeID()
	case ua.TypeIDExpandedNodeID:
		mask := r.nodeID()
		if mask&expandedURI != 0 {
			r.str()
		}
		if mask&expandedIndex != 0 {
			r.u32()
		}
	case ua.TypeIDQualifiedName:
		r.u16()
		r.str()
	case ua.TypeIDLocalizedText:
		mask := r.u8()
		if mask&ua.LocalizedTextLocale != 0 {
			r.str()
		}
		if mask&ua.LocalizedTextText != 0 {
			r.str()
		}
	default:
		r.bad = true
	}
}

// nodeID reads past a NodeId of any encoding and returns its mask.
func (r *reader) nodeID() uint8 {
	mask := r.u8()
	switch mask & 0xf {
	case 0:
		r.take(1)
	case 1:
		r.take(3)
	case 2:
		r.take(6)
	case 4:
		r.take(18)
	case 3, 5:
		r.take(2)
		r.str()
	default:
		r.bad = true
	}
	return mask
}

// Ticks of 100 ns from 1601-01-01 to 1970-01-01.
const unixEpochTicks = 116444736000000000

// dateTime converts as gopcua (and uadecode) do: 0 is the zero time,
// anything else wraps the same unsigned way.
func dateTime(ticks uint64) time.Time {
	if ticks == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64((ticks-unixEpochTicks)*100)).UTC()
}

// The quiet NaN patterns gopcua writes; it reads them back as Go's NaN.
const (
	f32QuietNaN = 0xffc00000
	f64QuietNaN = 0xfff8000000000000
)

// Float32 and Float64 read Float and Double bits as gopcua does.
func Float32(bits uint64) float32 {
	if bits == f32QuietNaN {
		return float32(math.NaN())
	}
	return math.Float32frombits(uint32(bits))
}

func Float64(bits uint64) float64 {
	if bits == f64QuietNaN {
		return math.NaN()
	}
	return math.Float64frombits(bits)
}
