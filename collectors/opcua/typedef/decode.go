package typedef

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/uadecode"
)

// maxDepth bounds nested structures (a type may contain itself through an
// optional field or an array); OPC UA decoders are expected to cope with 100.
const maxDepth = 100

// maxElements bounds the elements of one array field before any is decoded:
// each takes at least one byte of the body, so this only stops what the
// body's length cannot (an n-dimensional array whose product wraps).
const maxElements = 1 << 24

// Decode decodes the binary body of an extension object whose encoding id
// is encoding into the fields of its DataType, in the definition's order.
// An absent optional field is left out; a union is its one chosen field (no
// field for the null union). The body must be used up exactly.
//
// Field values are the collectors' neutral values: Go numbers of the field's
// width, string, []byte, time.Time (collectors.Typed{Type: TypeDateTime} for
// the null DateTime), nested
// Structure, []any for arrays (nested for more dimensions), an enumeration
// as a collectors.Enum (its Int32 and the definition's name for it), and
// Convert's result for the other built-in types.
func (r *Registry) Decode(encoding *ua.NodeID, body []byte) (collectors.Structure, error) {
	t, err := r.lookup(encoding)
	if err != nil {
		return collectors.Structure{}, err
	}
	d := &decoder{r: r, b: body}
	st := d.structure(t, 0)
	if d.err == nil && d.pos != len(d.b) {
		d.fail("%d bytes left after %s", len(d.b)-d.pos, idString(t.ID))
	}
	if d.err != nil {
		return collectors.Structure{}, fmt.Errorf("decode %s: %w", idString(t.ID), d.err)
	}
	return st, nil
}

type decoder struct {
	r   *Registry
	b   []byte
	pos int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.pos {
		d.fail("%d bytes needed at offset %d, %d left", n, d.pos, len(d.b)-d.pos)
		return nil
	}
	b := d.b[d.pos : d.pos+n]
	d.pos += n
	return b
}

func (d *decoder) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

// structure decodes a value of a structured or enumerated DataType.
func (d *decoder) structure(t *Type, depth int) collectors.Structure {
	st := collectors.Structure{TypeID: idString(t.ID)}
	if depth >= maxDepth {
		d.fail("structures nested deeper than %d", maxDepth)
		return st
	}
	switch t.Kind {
	case KindStructure:
		st.Fields = make([]collectors.Field, 0, len(t.Fields))
		for _, f := range t.Fields {
			st.Fields = append(st.Fields, collectors.Field{Name: f.Name, Value: d.field(f, depth)})
		}
	case KindOptional:
		mask := d.u32()
		st.Fields = make([]collectors.Field, 0, len(t.Fields))
		bit := 0
		for _, f := range t.Fields {
			if f.Optional {
				present := bit < 32 && mask&(1<<bit) != 0
				bit++
				if !present {
					continue
				}
			}
			st.Fields = append(st.Fields, collectors.Field{Name: f.Name, Value: d.field(f, depth)})
		}
	case KindUnion:
		sw := d.u32()
		if d.err != nil || sw == 0 {
			return st
		}
		if int(sw) > len(t.Fields) {
			d.fail("union %s: switch %d, %d fields", idString(t.ID), sw, len(t.Fields))
			return st
		}
		f := t.Fields[sw-1]
		st.Fields = []collectors.Field{{Name: f.Name, Value: d.field(f, depth)}}
	default:
		d.fail("%s is not a structure", idString(t.ID))
	}
	return st
}

// field decodes one field: a scalar, or an array of ValueRank dimensions.
func (d *decoder) field(f Field, depth int) any {
	switch {
	case f.ValueRank == -1:
		return d.value(f.DataType, depth+1)
	case f.ValueRank == 1:
		n := int32(d.u32())
		if d.err != nil || n == -1 {
			return nil
		}
		return d.array(f.DataType, int(n), depth)
	case f.ValueRank > 1:
		return d.matrix(f, depth)
	}
	d.fail("field %s: value rank %d", f.Name, f.ValueRank)
	return nil
}

func (d *decoder) array(dt *ua.NodeID, n, depth int) []any {
	if n < 0 || n > len(d.b)-d.pos || n > maxElements {
		d.fail("array of %d elements, %d bytes left", n, len(d.b)-d.pos)
		return nil
	}
	out := make([]any, n)
	for i := range out {
		out[i] = d.value(dt, depth+1)
		if d.err != nil {
			return nil
		}
	}
	return out
}

// maxEmptyRows bounds the rows of a matrix with a zero dimension, which
// take no bytes of the body.
const maxEmptyRows = 1024

// matrix decodes a multi-dimensional array field (Part 6, 5.2.2.16): its
// dimensions as an Int32 array, then the elements, last index fastest. It
// comes out as nested []any, outer dimension first.
func (d *decoder) matrix(f Field, depth int) any {
	n := int32(d.u32())
	if d.err != nil || n == -1 {
		return nil
	}
	if n != f.ValueRank {
		d.fail("field %s: %d dimensions, value rank %d", f.Name, n, f.ValueRank)
		return nil
	}
	dims := make([]int, n)
	total, nonZero := 1, 1
	for i := range dims {
		dims[i] = int(int32(d.u32()))
		// nonZero bounds the rows nest makes even when a later dimension
		// is 0 (no element, so no byte, stands for them).
		if dims[i] < 0 || dims[i] > maxElements || nonZero*max(dims[i], 1) > len(d.b)-d.pos+maxEmptyRows {
			d.fail("field %s: dimension %d", f.Name, dims[i])
			return nil
		}
		total *= dims[i]
		nonZero *= max(dims[i], 1)
	}
	flat := d.array(f.DataType, total, depth)
	if d.err != nil {
		return nil
	}
	return nest(flat, dims)
}

func nest(flat []any, dims []int) []any {
	if len(dims) == 1 {
		return flat
	}
	out := make([]any, dims[0])
	step := 0
	if dims[0] > 0 {
		step = len(flat) / dims[0]
	}
	for i := range out {
		out[i] = nest(flat[i*step:(i+1)*step], dims[1:])
	}
	return out
}

// value decodes one value of DataType dt.
func (d *decoder) value(dt *ua.NodeID, depth int) any {
	if d.err != nil {
		return nil
	}
	if b, ok := builtinOf(dt); ok {
		return d.builtin(b)
	}
	if b, ok := abstractOf(dt); ok {
		return d.builtin(b)
	}
	t := d.r.Type(dt)
	if t == nil {
		d.fail("field type %s not known", idString(dt))
		return nil
	}
	switch t.Kind {
	case KindBuiltin:
		return d.builtin(t.Builtin)
	case KindEnum:
		v := int32(d.u32())
		return collectors.Enum{Value: v, Name: t.Names[int64(v)]}
	}
	return d.structure(t, depth)
}

// builtin decodes a built-in type; the simple ones here, the others with
// uadecode's bounded decoder into gopcua's types, then Convert.
func (d *decoder) builtin(t ua.TypeID) any {
	switch t {
	case ua.TypeIDBoolean:
		if b := d.take(1); b != nil {
			return b[0] != 0
		}
	case ua.TypeIDSByte:
		if b := d.take(1); b != nil {
			return int8(b[0])
		}
	case ua.TypeIDByte:
		if b := d.take(1); b != nil {
			return b[0]
		}
	case ua.TypeIDInt16:
		if b := d.take(2); b != nil {
			return int16(binary.LittleEndian.Uint16(b))
		}
	case ua.TypeIDUint16:
		if b := d.take(2); b != nil {
			return binary.LittleEndian.Uint16(b)
		}
	case ua.TypeIDInt32:
		if b := d.take(4); b != nil {
			return int32(binary.LittleEndian.Uint32(b))
		}
	case ua.TypeIDUint32:
		if b := d.take(4); b != nil {
			return binary.LittleEndian.Uint32(b)
		}
	case ua.TypeIDInt64:
		if b := d.take(8); b != nil {
			return int64(binary.LittleEndian.Uint64(b))
		}
	case ua.TypeIDUint64:
		if b := d.take(8); b != nil {
			return binary.LittleEndian.Uint64(b)
		}
	case ua.TypeIDFloat:
		if b := d.take(4); b != nil {
			return math.Float32frombits(binary.LittleEndian.Uint32(b))
		}
	case ua.TypeIDDouble:
		if b := d.take(8); b != nil {
			return math.Float64frombits(binary.LittleEndian.Uint64(b))
		}
	case ua.TypeIDString:
		if b := d.bytes(); b != nil {
			return string(b)
		}
		if d.err == nil {
			return ""
		}
	case ua.TypeIDByteString:
		if b := d.bytes(); b != nil {
			return append([]byte{}, b...)
		}
	case ua.TypeIDDateTime:
		if b := d.take(8); b != nil {
			return dateTime(int64(binary.LittleEndian.Uint64(b)))
		}
	default:
		return d.complex(t)
	}
	return nil
}

// bytes reads a String or ByteString's bytes; nil for the null one (-1).
func (d *decoder) bytes() []byte {
	n := int32(d.u32())
	if d.err != nil || n == -1 {
		return nil
	}
	return d.take(int(n))
}

// ticksTo1970 is the number of 100 ns ticks from 1601 to 1970.
const ticksTo1970 = 116444736000000000

// dateTime converts a DateTime; the null DateTime (0 or less) keeps its
// type, as collectors.Typed{Type: TypeDateTime} with a nil value.
func dateTime(ticks int64) any {
	if ticks <= 0 {
		return collectors.Typed{Type: collectors.TypeDateTime}
	}
	return time.Unix(0, 0).UTC().Add(time.Duration(ticks-ticksTo1970) * 100)
}

// complexTypes are the Go types gopcua decodes the other built-ins into.
var complexTypes = map[ua.TypeID]reflect.Type{
	ua.TypeIDGUID:            reflect.TypeFor[*ua.GUID](),
	ua.TypeIDXMLElement:      reflect.TypeFor[ua.XMLElement](),
	ua.TypeIDNodeID:          reflect.TypeFor[*ua.NodeID](),
	ua.TypeIDExpandedNodeID:  reflect.TypeFor[*ua.ExpandedNodeID](),
	ua.TypeIDStatusCode:      reflect.TypeFor[ua.StatusCode](),
	ua.TypeIDQualifiedName:   reflect.TypeFor[*ua.QualifiedName](),
	ua.TypeIDLocalizedText:   reflect.TypeFor[*ua.LocalizedText](),
	ua.TypeIDExtensionObject: reflect.TypeFor[*ua.ExtensionObject](),
	ua.TypeIDDataValue:       reflect.TypeFor[*ua.DataValue](),
	ua.TypeIDVariant:         reflect.TypeFor[*ua.Variant](),
	ua.TypeIDDiagnosticInfo:  reflect.TypeFor[*ua.DiagnosticInfo](),
}

func (d *decoder) complex(t ua.TypeID) any {
	gt, ok := complexTypes[t]
	if !ok {
		d.fail("built-in type %d", t)
		return nil
	}
	if d.err != nil {
		return nil
	}
	v := reflect.New(gt)
	n, err := uadecode.DefaultLimits().Decode(d.b[d.pos:], v.Interface())
	if err != nil {
		d.fail("%s at offset %d: %w", gt, d.pos, err)
		return nil
	}
	d.pos += n
	out := v.Elem().Interface()
	if d.r.Convert != nil {
		return d.r.Convert(out)
	}
	return out
}
