package uafast

import (
	"encoding/binary"
	"time"

	"github.com/gopcua/opcua/ua"
)

// Value is the item's value as the Go value gopcua's Variant holds after
// uadecode decoded it (Variant.Value()): int32, []float64, *ua.NodeID,
// ua.ByteArray, ...; nil for no value or the null Variant. Everything is
// copied out of the message. Numeric scalars are boxed here, which
// allocates: a caller after zero allocations reads Bits.
func (it *Item) Value() any {
	typ := it.Type()
	if typ == ua.TypeIDNull {
		return nil
	}
	if it.IsArray() {
		return it.array(typ)
	}
	switch typ {
	case ua.TypeIDBoolean:
		return it.bits != 0
	case ua.TypeIDSByte:
		return int8(it.bits)
	case ua.TypeIDByte:
		return uint8(it.bits)
	case ua.TypeIDInt16:
		return int16(it.bits)
	case ua.TypeIDUint16:
		return uint16(it.bits)
	case ua.TypeIDInt32:
		return int32(it.bits)
	case ua.TypeIDUint32:
		return uint32(it.bits)
	case ua.TypeIDInt64:
		return int64(it.bits)
	case ua.TypeIDUint64:
		return it.bits
	case ua.TypeIDFloat:
		return Float32(it.bits)
	case ua.TypeIDDouble:
		return Float64(it.bits)
	case ua.TypeIDDateTime:
		return dateTime(it.bits)
	case ua.TypeIDStatusCode:
		return ua.StatusCode(it.bits)
	}
	v := valueReader{b: it.data}
	return v.scalar(typ)
}

// String is a String or XmlElement scalar's text without the boxing Value
// does; "" for other types.
func (it *Item) String() string {
	if it.IsArray() || (it.Type() != ua.TypeIDString && it.Type() != ua.TypeIDXMLElement) {
		return ""
	}
	v := valueReader{b: it.data}
	return v.str()
}

// valueReader reads values the decoder already checked.
type valueReader struct {
	b   []byte
	pos int
}

func (v *valueReader) next(n int) []byte {
	s := v.b[v.pos : v.pos+n]
	v.pos += n
	return s
}

func (v *valueReader) u8() uint8   { return v.next(1)[0] }
func (v *valueReader) u16() uint16 { return binary.LittleEndian.Uint16(v.next(2)) }
func (v *valueReader) u32() uint32 { return binary.LittleEndian.Uint32(v.next(4)) }
func (v *valueReader) u64() uint64 { return binary.LittleEndian.Uint64(v.next(8)) }

// raw is a String's or ByteString's bytes, nil for null.
func (v *valueReader) raw() []byte {
	n := int32(v.u32())
	if n <= 0 {
		return nil
	}
	return v.next(int(n))
}

func (v *valueReader) str() string { return string(v.raw()) }

// bytes is a ByteString as uadecode reads it: a copy, nil for null and empty.
func (v *valueReader) bytes() []byte {
	if s := v.raw(); len(s) > 0 {
		return append([]byte(nil), s...)
	}
	return nil
}

func (v *valueReader) guid() *ua.GUID {
	s := v.next(16)
	return &ua.GUID{
		Data1: binary.LittleEndian.Uint32(s),
		Data2: binary.LittleEndian.Uint16(s[4:]),
		Data3: binary.LittleEndian.Uint16(s[6:]),
		Data4: append([]byte(nil), s[8:16]...),
	}
}

// nodeID builds a NodeId with gopcua's own decoder from a copy of its
// bytes, as uadecode does (its fields are private).
func (v *valueReader) nodeID() *ua.NodeID {
	start := v.pos
	mask := v.u8()
	switch mask & 0xf {
	case 0:
		v.pos++
	case 1:
		v.pos += 3
	case 2:
		v.pos += 6
	case 4:
		v.pos += 18
	default: // 3, 5: the decoder let no other through
		v.pos += 2
		v.raw()
	}
	n := new(ua.NodeID)
	_, _ = n.Decode(append([]byte(nil), v.b[start:v.pos]...))
	return n
}

func (v *valueReader) expandedNodeID() *ua.ExpandedNodeID {
	n := v.nodeID()
	e := &ua.ExpandedNodeID{NodeID: n}
	if n.URIFlag() {
		e.NamespaceURI = v.str()
	}
	if n.IndexFlag() {
		e.ServerIndex = v.u32()
	}
	return e
}

func (v *valueReader) localizedText() *ua.LocalizedText {
	l := &ua.LocalizedText{EncodingMask: v.u8()}
	if l.Has(ua.LocalizedTextLocale) {
		l.Locale = v.str()
	}
	if l.Has(ua.LocalizedTextText) {
		l.Text = v.str()
	}
	return l
}

func (v *valueReader) qualifiedName() *ua.QualifiedName {
	q := &ua.QualifiedName{NamespaceIndex: v.u16()}
	q.Name = v.str()
	return q
}

// scalar reads one value of a type the decoder encodes in data.
func (v *valueReader) scalar(typ ua.TypeID) any {
	switch typ {
	case ua.TypeIDString:
		return v.str()
	case ua.TypeIDXMLElement:
		return ua.XMLElement(v.str())
	case ua.TypeIDByteString:
		return v.bytes()
	case ua.TypeIDGUID:
		return v.guid()
	case ua.TypeIDNodeID:
		return v.nodeID()
	case ua.TypeIDExpandedNodeID:
		return v.expandedNodeID()
	case ua.TypeIDQualifiedName:
		return v.qualifiedName()
	case ua.TypeIDLocalizedText:
		return v.localizedText()
	}
	return nil
}

// array builds the slice uadecode builds: ua.ByteArray for Byte, a nil
// slice of the type for a null array, an empty one for length 0.
func (it *Item) array(typ ua.TypeID) any {
	n := int(it.length)
	v := valueReader{b: it.data}
	switch typ {
	case ua.TypeIDBoolean:
		return arrayOf(n, func() bool { return v.u8() > 0 })
	case ua.TypeIDSByte:
		return arrayOf(n, func() int8 { return int8(v.u8()) })
	case ua.TypeIDByte:
		if n < 0 {
			return ua.ByteArray(nil)
		}
		return ua.ByteArray(append(make([]byte, 0, n), it.data...))
	case ua.TypeIDInt16:
		return arrayOf(n, func() int16 { return int16(v.u16()) })
	case ua.TypeIDUint16:
		return arrayOf(n, v.u16)
	case ua.TypeIDInt32:
		return arrayOf(n, func() int32 { return int32(v.u32()) })
	case ua.TypeIDUint32:
		return arrayOf(n, v.u32)
	case ua.TypeIDInt64:
		return arrayOf(n, func() int64 { return int64(v.u64()) })
	case ua.TypeIDUint64:
		return arrayOf(n, v.u64)
	case ua.TypeIDFloat:
		return arrayOf(n, func() float32 { return Float32(uint64(v.u32())) })
	case ua.TypeIDDouble:
		return arrayOf(n, func() float64 { return Float64(v.u64()) })
	case ua.TypeIDString:
		return arrayOf(n, v.str)
	case ua.TypeIDDateTime:
		return arrayOf(n, func() time.Time { return dateTime(v.u64()) })
	case ua.TypeIDGUID:
		return arrayOf(n, v.guid)
	case ua.TypeIDByteString:
		// gopcua decodes these for uadecode: each element aliases its
		// buffer, nil when empty; copied here.
		return arrayOf(n, v.bytes)
	case ua.TypeIDXMLElement:
		return arrayOf(n, func() ua.XMLElement { return ua.XMLElement(v.str()) })
	case ua.TypeIDNodeID:
		return arrayOf(n, v.nodeID)
	case ua.TypeIDExpandedNodeID:
		return arrayOf(n, v.expandedNodeID)
	case ua.TypeIDStatusCode:
		return arrayOf(n, func() ua.StatusCode { return ua.StatusCode(v.u32()) })
	case ua.TypeIDQualifiedName:
		return arrayOf(n, v.qualifiedName)
	case ua.TypeIDLocalizedText:
		return arrayOf(n, v.localizedText)
	}
	return nil
}

func arrayOf[T any](n int, read func() T) []T {
	if n < 0 {
		return nil
	}
	out := make([]T, n)
	for i := range out {
		out[i] = read()
	}
	return out
}
