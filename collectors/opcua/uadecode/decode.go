// Package uadecode decodes OPC UA binary service messages into gopcua's ua
// types with bounds: nesting depth, array and string lengths, array
// dimensions and the memory a message may decode into. gopcua's own decoder
// (ua.DecodeService) has none of these, so one message from a hostile or
// broken server can panic it (a Variant array length of -2), overflow the
// stack (millions of nested Variants) or exhaust memory (dimensions whose
// product wraps to 0). Service is a drop-in for ua.DecodeService.
//
// Why a walker over gopcua's types and not a codec generated from the OPC
// Foundation schema: everything above this package (uasc, uaclient, the
// session) uses gopcua's ua types, and the extension objects a PLC sends
// decode into whatever is registered with ua.RegisterExtensionObject at run
// time (our rawBody for the PLC's own structures, learned after connecting).
// A generated codec would have to reproduce gopcua's Go names and its
// decoding quirks for some 300 types and go stale with every gopcua update,
// and still need a walker for run-time registrations. The walker reads the
// exported fields of the Go type gopcua registered, so it follows gopcua by
// construction; only the built-in types with their own encodings (NodeId,
// Variant, DataValue, ExtensionObject, DiagnosticInfo, ...) are decoded by
// hand here, and each has a differential test against gopcua's decoder.
package uadecode

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"time"

	"github.com/gopcua/opcua/ua"
)

// Limits bound what one message may make the decoder do. The length of the
// message bounds everything anyway (no array or string is allocated before
// the bytes it needs are known to be there); these catch what the length
// alone does not: nesting (stack) and amplification (memory). A zero field
// takes DefaultLimits' value.
type Limits struct {
	// MaxDepth is the deepest nesting of structures, Variants, DataValues,
	// ExtensionObjects and DiagnosticInfos.
	MaxDepth int
	// MaxArrayLength is the most elements of one array.
	MaxArrayLength int
	// MaxStringLength is the most bytes of one String, ByteString or XmlElement.
	MaxStringLength int
	// MaxArrayDimensions is the most dimensions of one Variant matrix.
	MaxArrayDimensions int
	// MaxAlloc bounds the bytes the decoded Go values of one message take
	// (estimated from the Go types' sizes, checked before allocating).
	// 0 means 256 MiB, or 200 times the message length plus 1 MiB if
	// less: a valid message decodes into at most ~170 times its length (a
	// DataValue of one byte becomes a DataValue and an empty Variant), a
	// real one into 5 to 35 times.
	MaxAlloc int
}

const defaultMaxAlloc = 256 << 20

// DefaultLimits are generous for real servers and small enough that no
// message can crash the agent.
func DefaultLimits() Limits {
	return Limits{
		MaxDepth:           100,
		MaxArrayLength:     1 << 24,
		MaxStringLength:    1 << 26,
		MaxArrayDimensions: 32,
	}
}

// Service decodes a service message body (the bytes after the sequence
// header: the type id, then the service structure) with DefaultLimits. It is
// ua.DecodeService with bounds: the same type id and the same ua value.
func Service(b []byte) (*ua.ExpandedNodeID, any, error) {
	return DefaultLimits().Service(b)
}

// Service decodes a service message body within l. Unknown service type ids
// are ua.StatusBadServiceUnsupported, malformed messages
// ua.StatusBadDecodingError and exceeded limits
// ua.StatusBadEncodingLimitsExceeded (errors.Is finds them). Unlike
// ua.DecodeService it returns no half-decoded value with an error.
func (l Limits) Service(b []byte) (*ua.ExpandedNodeID, any, error) {
	d := newDecoder(b, l)
	typeID := d.expandedNodeID()
	if d.err != nil {
		return nil, nil, fmt.Errorf("decode service type id: %w", d.err)
	}
	t := serviceType(b[:d.pos], typeID.NodeID)
	if t == nil {
		return nil, nil, fmt.Errorf("decode service %s: %w", shortID(typeID.NodeID), ua.StatusBadServiceUnsupported)
	}
	v := reflect.New(t).Elem()
	planOf(t).decode(d, v)
	if d.err != nil {
		return nil, nil, fmt.Errorf("decode %s: %w", t.Elem().Name(), d.err)
	}
	return typeID, v.Interface(), nil
}

// Decode decodes one value into v, a non-nil pointer, like ua.Decode, within
// l, and returns the bytes it read.
func (l Limits) Decode(b []byte, v any) (int, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return 0, fmt.Errorf("decode into %T: not a non-nil pointer", v)
	}
	d := newDecoder(b, l)
	planOf(rv.Type().Elem()).decode(d, rv.Elem())
	if d.err != nil {
		return d.pos, fmt.Errorf("decode %s: %w", rv.Type().Elem(), d.err)
	}
	return d.pos, nil
}

// decoder reads one message. Errors are sticky: after the first, reads
// return zero values and every loop stops, so callers check d.err once per
// value rather than once per read.
type decoder struct {
	b          []byte
	pos        int
	base       int // offset of b in the whole message (b is an extension object's body)
	lim        Limits
	depth      int
	budget     int64 // bytes of decoded values still allowed
	allocLimit int64 // the budget's start, for the error
	allocated  int64 // estimated bytes of our own decoded values so far
	err        error
}

func newDecoder(b []byte, l Limits) *decoder {
	def := DefaultLimits()
	if l.MaxDepth <= 0 {
		l.MaxDepth = def.MaxDepth
	}
	if l.MaxArrayLength <= 0 {
		l.MaxArrayLength = def.MaxArrayLength
	}
	if l.MaxStringLength <= 0 {
		l.MaxStringLength = def.MaxStringLength
	}
	if l.MaxArrayDimensions <= 0 {
		l.MaxArrayDimensions = def.MaxArrayDimensions
	}
	budget := int64(l.MaxAlloc)
	if budget <= 0 {
		budget = min(defaultMaxAlloc, 200*int64(len(b))+1<<20)
	}
	return &decoder{b: b, lim: l, budget: budget, allocLimit: budget}
}

func (d *decoder) left() int { return len(d.b) - d.pos }

// fail records the first error: what was decoded, where, why, and the
// status code it stands for.
func (d *decoder) fail(code ua.StatusCode, what, format string, args ...any) {
	if d.err != nil {
		return
	}
	d.err = fmt.Errorf("%s at byte %d: %s: %w", what, d.base+d.pos, fmt.Sprintf(format, args...), code)
}

func (d *decoder) malformed(what, format string, args ...any) {
	d.fail(ua.StatusBadDecodingError, what, format, args...)
}

func (d *decoder) limit(what, format string, args ...any) {
	d.fail(ua.StatusBadEncodingLimitsExceeded, what, format, args...)
}

// enter counts one level of nesting; false (and an error) past MaxDepth.
func (d *decoder) enter(what string) bool {
	if d.err != nil {
		return false
	}
	if d.depth >= d.lim.MaxDepth {
		d.limit(what, "nested deeper than %d", d.lim.MaxDepth)
		return false
	}
	d.depth++
	return true
}

func (d *decoder) leave() { d.depth-- }

// charge takes n estimated bytes of decoded values from the budget.
func (d *decoder) charge(what string, n int) bool { return d.chargeN(what, n, 1) }

// chargeN charges count values of size bytes, in 64 bits: on a 32-bit
// platform count × size may not fit an int.
func (d *decoder) chargeN(what string, count, size int) bool {
	if d.err != nil {
		return false
	}
	n := int64(count) * int64(size)
	if !d.spend(what, n) {
		return false
	}
	d.allocated += n
	return true
}

// spend takes n bytes from the budget.
func (d *decoder) spend(what string, n int64) bool {
	if d.err != nil {
		return false
	}
	if n > d.budget {
		d.limit(what, "decoded values would take more than %d bytes", d.allocLimit)
		return false
	}
	d.budget -= n
	return true
}

func (d *decoder) take(what string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > d.left() {
		d.malformed(what, "needs %d bytes, %d left", n, d.left())
		return nil
	}
	s := d.b[d.pos : d.pos+n : d.pos+n]
	d.pos += n
	return s
}

func (d *decoder) u8(what string) uint8 {
	if s := d.take(what, 1); s != nil {
		return s[0]
	}
	return 0
}

func (d *decoder) u16(what string) uint16 {
	if s := d.take(what, 2); s != nil {
		return binary.LittleEndian.Uint16(s)
	}
	return 0
}

func (d *decoder) u32(what string) uint32 {
	if s := d.take(what, 4); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (d *decoder) u64(what string) uint64 {
	if s := d.take(what, 8); s != nil {
		return binary.LittleEndian.Uint64(s)
	}
	return 0
}

func (d *decoder) boolean() bool { return d.u8("Boolean") > 0 }

// The quiet NaN patterns gopcua writes; it reads them back as Go's NaN.
const (
	f32QuietNaN = 0xffc00000
	f64QuietNaN = 0xfff8000000000000
)

func (d *decoder) float32() float32 {
	bits := d.u32("Float")
	if bits == f32QuietNaN {
		return float32(math.NaN())
	}
	return math.Float32frombits(bits)
}

func (d *decoder) float64() float64 {
	bits := d.u64("Double")
	if bits == f64QuietNaN {
		return math.NaN()
	}
	return math.Float64frombits(bits)
}

// Ticks of 100 ns from 1601-01-01 to 1970-01-01.
const unixEpochTicks = 116444736000000000

// dateTime reads a DateTime as gopcua does: 0 is the zero time, anything
// else is converted with the same unsigned arithmetic (dates before 1970
// wrap like gopcua's).
func (d *decoder) dateTime() time.Time {
	ticks := d.u64("DateTime")
	if ticks == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64((ticks-unixEpochTicks)*100)).UTC()
}

// length reads an Int32 length prefix: -1 is null, other negatives an
// error, and a length above max or above what the remaining bytes can hold
// (at least minSize bytes an element) is refused before anything is
// allocated.
func (d *decoder) length(what string, max, minSize int) (n int, null bool) {
	raw := int32(d.u32(what))
	if d.err != nil {
		return 0, false
	}
	switch {
	case raw == -1:
		return 0, true
	case raw < 0:
		d.malformed(what, "negative length %d", raw)
		return 0, false
	case int(raw) > max:
		d.limit(what, "length %d above the limit %d", raw, max)
		return 0, false
	case int(raw) > d.left()/max1(minSize):
		d.malformed(what, "length %d needs at least %d bytes, %d left", raw, int64(raw)*int64(max1(minSize)), d.left())
		return 0, false
	}
	return int(raw), false
}

func max1(n int) int { return max(n, 1) }

// bytes reads a length-prefixed byte string as a copy; null and empty are
// both nil (gopcua's ReadBytes).
func (d *decoder) bytes(what string) []byte {
	n, null := d.length(what, d.lim.MaxStringLength, 1)
	if null || n == 0 || !d.charge(what, n) {
		return nil
	}
	s := d.take(what, n)
	if s == nil {
		return nil
	}
	return append([]byte(nil), s...)
}

// str reads a String; null and empty are both "".
func (d *decoder) str(what string) string {
	n, null := d.length(what, d.lim.MaxStringLength, 1)
	if null || n == 0 || !d.charge(what, n) {
		return ""
	}
	return string(d.take(what, n))
}

// within decodes f over body, an extension object's body inside d.b, with
// d's depth, budget and sticky error; bytes after what f reads are ignored,
// as gopcua ignores them.
func (d *decoder) within(body []byte, f func()) {
	b, pos, base := d.b, d.pos, d.base
	d.base, d.b, d.pos = base+pos-len(body), body, 0
	f()
	d.b, d.pos, d.base = b, pos, base
}

// shortID names a node id from the wire in an error: quoted, and cut, since
// a server chooses its length.
func shortID(n *ua.NodeID) string {
	s := n.String()
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return fmt.Sprintf("%q", s)
}
