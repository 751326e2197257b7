package sparkplug

import (
	"encoding/binary"
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/payload"
)

// withoutEchoes returns a spooled DDATA payload without the metrics in
// echo (byte for byte a value of the DBIRTH sent before: same alias,
// timestamp, status and value), which it takes out of echo, or nil if no
// metric is left.
func withoutEchoes(payload []byte, echo map[string]uint64) []byte {
	out := make([]byte, 0, len(payload))
	kept := 0
	walkFields(payload, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) {
		switch {
		case num == spPayloadMetrics && typ == protowire.BytesType:
			if alias, ok := echo[string(v)]; ok {
				for k, a := range echo { // its other encoding too: once only
					if a == alias {
						delete(echo, k)
					}
				}
				return
			}
			kept++
			out = protowire.AppendTag(out, num, typ)
			out = protowire.AppendBytes(out, v)
		case typ == protowire.VarintType:
			out = protowire.AppendTag(out, num, typ)
			out = protowire.AppendVarint(out, n)
		case typ == protowire.BytesType:
			out = protowire.AppendTag(out, num, typ)
			out = protowire.AppendBytes(out, v)
		}
	})
	if kept == 0 {
		return nil
	}
	return out
}

// withSpTimestamp returns a DDATA payload whose Payload.timestamp is t,
// the time it is sent (its metrics keep the source times): encode puts the
// timestamp first.
func withSpTimestamp(payload []byte, t time.Time) []byte {
	num, typ, n := protowire.ConsumeTag(payload)
	if n < 0 || num != spPayloadTimestamp || typ != protowire.VarintType {
		return payload
	}
	_, m := protowire.ConsumeVarint(payload[n:])
	if m < 0 {
		return payload
	}
	b := appendSpTimestamp(make([]byte, 0, len(payload)+12), spPayloadTimestamp, t)
	return append(b, payload[n+m:]...)
}

// spValueWireType is the wire type of Metric's value fields, from int_value.
var spValueWireType = [...]protowire.Type{
	protowire.VarintType, protowire.VarintType, protowire.Fixed32Type, protowire.Fixed64Type,
	protowire.VarintType, protowire.BytesType, protowire.BytesType, protowire.BytesType,
	protowire.BytesType, protowire.BytesType,
}

// walkFields calls fn for each field of a protobuf message, with the bytes
// of a length-delimited field or the number of a varint; it stops at the
// first malformed field.
func walkFields(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, n uint64)) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return
		}
		fn(num, typ, v, x)
		b = b[n:]
	}
}

// spType is the Sparkplug datatype of a sample's value: by its Go type,
// narrowed by the sample's Type where the collector widened it;
// spUnknown for no value. A one-dimensional array of a scalar type is that
// type's array; other arrays, structures and composite values go as String,
// holding their JSON text.
func spType(s *collectors.Sample) uint32 {
	if s.Unboxed {
		return spBitsType(s.Type)
	}
	return spValueType(s.Value, s.Type)
}

// spBitsType is the datatype of an unboxed scalar of type t: what
// spValueType gives the same value boxed.
func spBitsType(t collectors.Type) uint32 {
	switch t {
	case collectors.TypeBoolean:
		return spBoolean
	case collectors.TypeSByte:
		return spInt8
	case collectors.TypeInt16:
		return spInt16
	case collectors.TypeInt32:
		return spInt32
	case collectors.TypeInt64:
		return spInt64
	case collectors.TypeByte:
		return spUInt8
	case collectors.TypeUInt16:
		return spUInt16
	case collectors.TypeUInt32:
		return spUInt32
	case collectors.TypeUInt64:
		return spUInt64
	case collectors.TypeFloat:
		return spFloat
	case collectors.TypeDouble:
		return spDouble
	case collectors.TypeDateTime:
		return spDateTime
	}
	return spString // a StatusCode: its name
}

// spDeclaredType is the datatype a sample announces: its value's, or for
// a null value the node's DataType, which the collector gives in Type
// (with TypeArray for an array), when it knows it.
func spDeclaredType(s *collectors.Sample) uint32 {
	if s.HasValue() {
		return spType(s)
	}
	typ, array := s.Type&^collectors.TypeArray, s.Type&collectors.TypeArray != 0
	switch typ {
	case collectors.TypeNull, collectors.TypeVariant, collectors.TypeDataValue, collectors.TypeDiagnosticInfo:
		return spUnknown // no type, or one that names no Sparkplug datatype yet
	}
	if array {
		return spArrayType([]any{}, typ)
	}
	return spValueType(zeroOf(typ), typ)
}

// zeroOf is a zero value of the Go type the collectors give a built-in
// type's values; "" for the types that travel as String (String,
// LocalizedText, NodeId, Guid, structures...).
func zeroOf(t collectors.Type) any {
	switch t {
	case collectors.TypeBoolean:
		return false
	case collectors.TypeSByte:
		return int8(0)
	case collectors.TypeInt16:
		return int16(0)
	case collectors.TypeInt32:
		return int32(0)
	case collectors.TypeInt64:
		return int64(0)
	case collectors.TypeByte:
		return uint8(0)
	case collectors.TypeUInt16:
		return uint16(0)
	case collectors.TypeUInt32:
		return uint32(0)
	case collectors.TypeUInt64:
		return uint64(0)
	case collectors.TypeFloat:
		return float32(0)
	case collectors.TypeDouble:
		return float64(0)
	case collectors.TypeDateTime:
		return time.Time{}
	case collectors.TypeByteString:
		return []byte{}
	}
	return ""
}

func spValueType(v any, typ collectors.Type) uint32 {
	switch v := v.(type) {
	case nil:
		return spUnknown
	case []any:
		return spArrayType(v, typ)
	case bool:
		return spBoolean
	case int8:
		return spInt8
	case int16:
		return spInt16
	case int32:
		return spInt32
	case int, int64:
		switch typ {
		case collectors.TypeSByte:
			return spInt8
		case collectors.TypeInt16:
			return spInt16
		case collectors.TypeInt32:
			return spInt32
		}
		return spInt64
	case uint8:
		return spUInt8
	case uint16:
		return spUInt16
	case uint32:
		return spUInt32
	case uint, uint64:
		switch typ {
		case collectors.TypeByte:
			return spUInt8
		case collectors.TypeUInt16:
			return spUInt16
		case collectors.TypeUInt32:
			return spUInt32
		}
		return spUInt64
	case float32:
		return spFloat
	case float64:
		return spDouble
	case string:
		return spString
	case []byte:
		return spBytes
	case time.Time:
		return spDateTime
	}
	return spString
}

// spArrayType is the array datatype of a []any whose elements are all of
// the scalar type typ, or String (JSON) if there is none.
func spArrayType(v []any, typ collectors.Type) uint32 {
	var dt uint32
	switch typ {
	case collectors.TypeSByte, collectors.TypeInt16, collectors.TypeInt32, collectors.TypeInt64, collectors.TypeByte,
		collectors.TypeUInt16, collectors.TypeUInt32, collectors.TypeUInt64, collectors.TypeFloat, collectors.TypeDouble,
		collectors.TypeBoolean, collectors.TypeString, collectors.TypeDateTime:
	default:
		return spString
	}
	for i, e := range v {
		et := spValueType(e, typ)
		if s, ok := e.(string); ok && strings.IndexByte(s, 0) >= 0 {
			return spString // StringArray ends each string with a NUL
		}
		if i == 0 {
			dt = et
		}
		if et != dt || et < spInt8 || et > spDateTime || et == spString && typ != collectors.TypeString {
			return spString
		}
	}
	if dt == spUnknown { // empty: the element type from the type
		dt = spValueType(zeroOf(typ), typ)
	}
	return dt + spArray
}

// appendSpArray appends an array's bytes_value (Sparkplug 3.0, 6.4.17):
// elements little-endian at their width, DateTime as int64 ms; booleans as
// a uint32 count and then the bits, most significant first; strings each
// followed by a NUL.
func appendSpArray(b []byte, dt uint32, v []any) []byte {
	var a []byte
	switch dt - spArray {
	case spBoolean:
		a = binary.LittleEndian.AppendUint32(a, uint32(len(v)))
		bits := make([]byte, (len(v)+7)/8)
		for i, e := range v {
			if e.(bool) {
				bits[i/8] |= 0x80 >> (i % 8)
			}
		}
		a = append(a, bits...)
	case spString:
		for _, e := range v {
			a = append(append(a, e.(string)...), 0)
		}
	default:
		for _, e := range v {
			switch dt - spArray {
			case spInt8:
				a = append(a, byte(toInt64(e)))
			case spUInt8:
				a = append(a, byte(toUint64(e)))
			case spInt16:
				a = binary.LittleEndian.AppendUint16(a, uint16(toInt64(e)))
			case spUInt16:
				a = binary.LittleEndian.AppendUint16(a, uint16(toUint64(e)))
			case spInt32:
				a = binary.LittleEndian.AppendUint32(a, uint32(toInt64(e)))
			case spUInt32:
				a = binary.LittleEndian.AppendUint32(a, uint32(toUint64(e)))
			case spInt64:
				a = binary.LittleEndian.AppendUint64(a, uint64(toInt64(e)))
			case spUInt64:
				a = binary.LittleEndian.AppendUint64(a, toUint64(e))
			case spFloat:
				a = binary.LittleEndian.AppendUint32(a, math.Float32bits(e.(float32)))
			case spDouble:
				a = binary.LittleEndian.AppendUint64(a, math.Float64bits(e.(float64)))
			case spDateTime:
				a = binary.LittleEndian.AppendUint64(a, uint64(e.(time.Time).UnixMilli()))
			}
		}
	}
	b = protowire.AppendTag(b, spMetricBytes, protowire.BytesType)
	return protowire.AppendBytes(b, a)
}

// appendSpSample appends the value field of s for datatype dt, which
// spType gave s; an unboxed scalar without boxing it.
func appendSpSample(b []byte, dt uint32, s *collectors.Sample) []byte {
	if !s.Unboxed {
		return appendSpValue(b, dt, s.Value)
	}
	switch dt {
	case spInt8, spInt16, spInt32:
		b = protowire.AppendTag(b, spMetricInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(uint32(int32(s.Int()))))
	case spUInt8, spUInt16, spUInt32:
		b = protowire.AppendTag(b, spMetricInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(uint32(s.Uint())))
	case spInt64, spUInt64:
		b = protowire.AppendTag(b, spMetricLong, protowire.VarintType)
		return protowire.AppendVarint(b, s.Bits)
	case spFloat:
		b = protowire.AppendTag(b, spMetricFloat, protowire.Fixed32Type)
		return protowire.AppendFixed32(b, uint32(s.Bits))
	case spDouble:
		b = protowire.AppendTag(b, spMetricDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, s.Bits)
	case spBoolean:
		return appendSpBool(b, spMetricBool, s.Bool())
	case spDateTime:
		b = protowire.AppendTag(b, spMetricLong, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(s.DateTime().UnixMilli()))
	}
	return appendSpValue(b, dt, s.Any())
}

// appendSpValue appends the value field for datatype dt, which spType gave v.
func appendSpValue(b []byte, dt uint32, v any) []byte {
	if dt > spArray {
		return appendSpArray(b, dt, v.([]any))
	}
	switch dt {
	case spInt8, spInt16, spInt32:
		// Sign-extended to 32 bits, as the specification's uint32 holds it.
		b = protowire.AppendTag(b, spMetricInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(uint32(int32(toInt64(v)))))
	case spUInt8, spUInt16, spUInt32:
		b = protowire.AppendTag(b, spMetricInt, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(uint32(toUint64(v))))
	case spInt64:
		b = protowire.AppendTag(b, spMetricLong, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(toInt64(v)))
	case spUInt64:
		b = protowire.AppendTag(b, spMetricLong, protowire.VarintType)
		return protowire.AppendVarint(b, toUint64(v))
	case spFloat:
		b = protowire.AppendTag(b, spMetricFloat, protowire.Fixed32Type)
		return protowire.AppendFixed32(b, math.Float32bits(v.(float32)))
	case spDouble:
		b = protowire.AppendTag(b, spMetricDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v.(float64)))
	case spBoolean:
		return appendSpBool(b, spMetricBool, v.(bool))
	case spDateTime:
		b = protowire.AppendTag(b, spMetricLong, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(v.(time.Time).UnixMilli()))
	case spBytes:
		b = protowire.AppendTag(b, spMetricBytes, protowire.BytesType)
		return protowire.AppendBytes(b, v.([]byte))
	}
	b = protowire.AppendTag(b, spMetricString, protowire.BytesType)
	switch x := v.(type) {
	case string:
		return protowire.AppendString(b, x)
	case collectors.LocalizedText:
		return protowire.AppendString(b, x.Text)
	case collectors.StatusCode:
		return protowire.AppendString(b, x.String())
	}
	return protowire.AppendBytes(b, payload.AppendValue(nil, v))
}

func toInt64(v any) int64 {
	switch x := v.(type) {
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case int64:
		return x
	}
	return 0
}

func toUint64(v any) uint64 {
	switch x := v.(type) {
	case uint8:
		return uint64(x)
	case uint16:
		return uint64(x)
	case uint32:
		return uint64(x)
	case uint:
		return uint64(x)
	case uint64:
		return x
	}
	return 0
}

// Quality property values: the three Sparkplug 3.0 names (Ignition's codes).
const (
	spQualityBad   = 0
	spQualityGood  = 192
	spQualityStale = 500
)

// appendSpQuality appends, for a value whose status is not Good, the
// metric property "Quality" (Int32): 0 (Bad) for Bad, 500 (Stale) for
// Uncertain, which OPC UA uses for last usable, substituted and sensor-
// doubtful values. A Good value carries none, which hosts read as 192.
func appendSpQuality(b []byte, status collectors.StatusCode) []byte {
	var q uint64
	switch {
	case status.IsGood():
		return b
	case status.IsUncertain():
		q = spQualityStale
	default:
		q = spQualityBad
	}
	var pv []byte // PropertyValue{type: Int32, int_value: q}
	pv = protowire.AppendTag(pv, 1, protowire.VarintType)
	pv = protowire.AppendVarint(pv, spInt32)
	pv = protowire.AppendTag(pv, 3, protowire.VarintType)
	pv = protowire.AppendVarint(pv, q)
	var ps []byte // PropertySet{keys: ["Quality"], values: [pv]}
	ps = protowire.AppendTag(ps, 1, protowire.BytesType)
	ps = protowire.AppendString(ps, "Quality")
	ps = protowire.AppendTag(ps, 2, protowire.BytesType)
	ps = protowire.AppendBytes(ps, pv)
	b = protowire.AppendTag(b, spMetricProperties, protowire.BytesType)
	return protowire.AppendBytes(b, ps)
}

func appendSpBool(b []byte, num protowire.Number, v bool) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, protowire.EncodeBool(v))
}

func appendSpTimestamp(b []byte, num protowire.Number, t time.Time) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(t.UnixMilli()))
}

// appendSpSeq appends Payload.seq. Appending works on an encoded payload
// too: the fields of a protobuf message may come in any order.
func appendSpSeq(b []byte, seq uint64) []byte {
	b = protowire.AppendTag(b, spPayloadSeq, protowire.VarintType)
	return protowire.AppendVarint(b, seq)
}
