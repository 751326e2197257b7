package typedef

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
)

// ErrRange marks an Encode error for a number outside its field's type.
var ErrRange = errors.New("out of range")

// Encode is Decode's inverse: it encodes value, a structure of the learned
// DataType dataType, into an extension object's binary body. value is a
// JSON object (map[string]any, numbers as json.Number or Go numbers) whose
// keys are the definition's field names, or a collectors.Structure as
// Decode returns it. Every field must be there but optional ones; a field
// the definition lacks is an error, and so is a value of the wrong kind or
// shape. A union is an object with one field (or none: the null union).
// Errors name the field at fault; a number outside its type wraps ErrRange.
func (r *Registry) Encode(dataType *ua.NodeID, value any) ([]byte, error) {
	t := r.Type(dataType)
	if t == nil {
		return nil, fmt.Errorf("encode %s: %w", idString(dataType), ErrUnknown)
	}
	e := &encoder{r: r}
	e.structure(t, value, "", 0)
	if e.err != nil {
		return nil, e.err
	}
	return e.b, nil
}

// EncodingOf returns the binary encoding id of a learned structure
// DataType (the one an extension object of it carries), or nil; Decode
// takes bodies of that encoding from then on (a type learned by
// LearnTypes, not through Learn, is not known by its encoding before).
func (r *Registry) EncodingOf(dataType *ua.NodeID) *ua.NodeID {
	key := idString(dataType)
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.types[key]; t != nil && t.Encoding != nil {
		r.encodings[idString(t.Encoding)] = key
		return t.Encoding
	}
	for enc, dt := range r.encodings {
		if dt == key {
			if n, err := ua.ParseNodeID(enc); err == nil {
				return n
			}
		}
	}
	return nil
}

// Body is an extension object body already encoded; gopcua writes it as
// it is (ua.BinaryEncoder).
type Body []byte

func (b Body) Encode() ([]byte, error) { return b, nil }

type encoder struct {
	r   *Registry
	b   []byte
	err error
}

func (e *encoder) fail(path, format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf("%s"+format, append([]any{fieldPrefix(path)}, args...)...)
	}
}

func (e *encoder) failRange(path, format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf("%s%s: %w", fieldPrefix(path), fmt.Sprintf(format, args...), ErrRange)
	}
}

func fieldPrefix(path string) string {
	if path == "" {
		return ""
	}
	return "field " + strconv.Quote(path) + ": "
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (e *encoder) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }

// value encodes one value of DataType dt.
func (e *encoder) value(dt *ua.NodeID, v any, path string, depth int) {
	if e.err != nil {
		return
	}
	if b, ok := builtinOf(dt); ok {
		e.builtin(b, v, path)
		return
	}
	if _, ok := abstractOf(dt); ok {
		e.fail(path, "a field of the abstract type %s is not writable", idString(dt))
		return
	}
	t := e.r.Type(dt)
	if t == nil {
		e.fail(path, "type %s not known", idString(dt))
		return
	}
	switch t.Kind {
	case KindBuiltin:
		e.builtin(t.Builtin, v, path)
	case KindEnum:
		e.enum(t, v, path)
	default:
		e.structure(t, v, path, depth)
	}
}

// enum takes an enumeration's number or its name.
func (e *encoder) enum(t *Type, v any, path string) {
	switch x := v.(type) {
	case collectors.Enum:
		v = int64(x.Value)
	case string:
		for n, name := range t.Names {
			if name == x {
				e.u32(uint32(int32(n)))
				return
			}
		}
		e.fail(path, "%q is not a value of %s", x, idString(t.ID))
		return
	}
	n, ok := e.integer(v, path, "Int32", math.MinInt32, math.MaxInt32)
	if !ok {
		return
	}
	if _, named := t.Names[n]; !named && len(t.Names) > 0 {
		e.failRange(path, "%d is not a value of %s", n, idString(t.ID))
		return
	}
	e.u32(uint32(int32(n)))
}

// builtin encodes a simple built-in type; LocalizedText also. Other
// built-in types inside a structure are not writable from JSON.
func (e *encoder) builtin(t ua.TypeID, v any, path string) {
	le := binary.LittleEndian
	switch t {
	case ua.TypeIDBoolean:
		b, ok := v.(bool)
		if !ok {
			e.fail(path, "%s for a Boolean", kindOf(v))
			return
		}
		if b {
			e.b = append(e.b, 1)
		} else {
			e.b = append(e.b, 0)
		}
	case ua.TypeIDSByte:
		if n, ok := e.integer(v, path, "SByte", math.MinInt8, math.MaxInt8); ok {
			e.b = append(e.b, byte(int8(n)))
		}
	case ua.TypeIDByte:
		if n, ok := e.unsigned(v, path, "Byte", math.MaxUint8); ok {
			e.b = append(e.b, byte(n))
		}
	case ua.TypeIDInt16:
		if n, ok := e.integer(v, path, "Int16", math.MinInt16, math.MaxInt16); ok {
			e.b = le.AppendUint16(e.b, uint16(int16(n)))
		}
	case ua.TypeIDUint16:
		if n, ok := e.unsigned(v, path, "UInt16", math.MaxUint16); ok {
			e.b = le.AppendUint16(e.b, uint16(n))
		}
	case ua.TypeIDInt32:
		if n, ok := e.integer(v, path, "Int32", math.MinInt32, math.MaxInt32); ok {
			e.b = le.AppendUint32(e.b, uint32(int32(n)))
		}
	case ua.TypeIDUint32:
		if n, ok := e.unsigned(v, path, "UInt32", math.MaxUint32); ok {
			e.b = le.AppendUint32(e.b, uint32(n))
		}
	case ua.TypeIDInt64:
		if n, ok := e.integer(v, path, "Int64", math.MinInt64, math.MaxInt64); ok {
			e.b = le.AppendUint64(e.b, uint64(n))
		}
	case ua.TypeIDUint64:
		if n, ok := e.unsigned(v, path, "UInt64", math.MaxUint64); ok {
			e.b = le.AppendUint64(e.b, n)
		}
	case ua.TypeIDFloat:
		if f, ok := e.float(v, path, "Float"); ok {
			if math.Abs(f) > math.MaxFloat32 && !math.IsInf(f, 0) {
				e.failRange(path, "%g does not fit a Float", f)
				return
			}
			e.b = le.AppendUint32(e.b, math.Float32bits(float32(f)))
		}
	case ua.TypeIDDouble:
		if f, ok := e.float(v, path, "Double"); ok {
			e.b = le.AppendUint64(e.b, math.Float64bits(f))
		}
	case ua.TypeIDString:
		s, ok := v.(string)
		if !ok {
			e.fail(path, "%s for a String", kindOf(v))
			return
		}
		e.bytes([]byte(s))
	case ua.TypeIDByteString:
		switch x := v.(type) {
		case nil:
			e.u32(math.MaxUint32)
		case []byte:
			e.bytes(x)
		case string:
			b, err := base64.StdEncoding.DecodeString(x)
			if err != nil {
				e.fail(path, "a ByteString is written as base64")
				return
			}
			e.bytes(b)
		default:
			e.fail(path, "%s for a ByteString", kindOf(v))
		}
	case ua.TypeIDDateTime:
		e.dateTime(v, path)
	case ua.TypeIDLocalizedText:
		e.localizedText(v, path)
	default:
		e.fail(path, "built-in type %d is not writable in a structure", t)
	}
}

func (e *encoder) bytes(b []byte) {
	e.u32(uint32(len(b)))
	e.b = append(e.b, b...)
}

func (e *encoder) dateTime(v any, path string) {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case collectors.Typed:
		if x.Type != collectors.TypeDateTime || x.Value != nil {
			e.fail(path, "a %s for a DateTime", x.Type)
			return
		}
		e.b = binary.LittleEndian.AppendUint64(e.b, 0) // the null DateTime
		return
	case string:
		p, err := time.Parse(time.RFC3339Nano, x)
		if err != nil {
			e.fail(path, "%q is not an RFC 3339 time", x)
			return
		}
		t = p
	default:
		e.fail(path, "%s for a DateTime", kindOf(v))
		return
	}
	if t.Before(time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC)) || t.Year() > 9999 {
		e.failRange(path, "%s is outside what a DateTime holds", t.Format(time.RFC3339))
		return
	}
	ticks := t.Unix()*10_000_000 + int64(t.Nanosecond()/100) + ticksTo1970
	e.b = binary.LittleEndian.AppendUint64(e.b, uint64(ticks))
}

// localizedText takes a text, {"text": ..., "locale": ...} or a
// collectors.LocalizedText.
func (e *encoder) localizedText(v any, path string) {
	var lt collectors.LocalizedText
	switch x := v.(type) {
	case string:
		lt.Text = x
	case collectors.LocalizedText:
		lt = x
	case *ua.LocalizedText: // Decode's, without a Convert
		if x != nil {
			lt = collectors.LocalizedText{Locale: x.Locale, Text: x.Text}
		}
	case map[string]any:
		for k, val := range x {
			s, ok := val.(string)
			switch {
			case !ok:
				e.fail(path, "%s for a LocalizedText's %s", kindOf(val), k)
				return
			case k == "text":
				lt.Text = s
			case k == "locale":
				lt.Locale = s
			default:
				e.fail(path, "a LocalizedText has text and locale, not %q", k)
				return
			}
		}
	default:
		e.fail(path, "%s for a LocalizedText", kindOf(v))
		return
	}
	var mask byte
	if lt.Locale != "" {
		mask |= 1
	}
	if lt.Text != "" {
		mask |= 2
	}
	e.b = append(e.b, mask)
	if lt.Locale != "" {
		e.bytes([]byte(lt.Locale))
	}
	if lt.Text != "" {
		e.bytes([]byte(lt.Text))
	}
}

// integer takes a whole number within lo..hi.
func (e *encoder) integer(v any, path, typ string, lo, hi int64) (int64, bool) {
	var n int64
	switch x := v.(type) {
	case json.Number:
		i, err := strconv.ParseInt(string(x), 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(string(x), 64)
			if ferr != nil || f != math.Trunc(f) {
				e.fail(path, "%s is not a whole number, as %s needs", x, typ)
				return 0, false
			}
			e.failRange(path, "%s does not fit %s (%d..%d)", x, typ, lo, hi)
			return 0, false
		}
		n = i
	case float64:
		if x != math.Trunc(x) || math.Abs(x) >= 1<<63 {
			e.fail(path, "%g is not a whole number within %s", x, typ)
			return 0, false
		}
		n = int64(x)
	default:
		rv := reflect.ValueOf(v)
		switch {
		case rv.CanInt():
			n = rv.Int()
		case rv.CanUint() && rv.Uint() <= math.MaxInt64:
			n = int64(rv.Uint())
		case rv.CanUint():
			e.failRange(path, "%d does not fit %s (%d..%d)", rv.Uint(), typ, lo, hi)
			return 0, false
		default:
			e.fail(path, "%s for a %s", kindOf(v), typ)
			return 0, false
		}
	}
	if n < lo || n > hi {
		e.failRange(path, "%d does not fit %s (%d..%d)", n, typ, lo, hi)
		return 0, false
	}
	return n, true
}

// unsigned takes a whole number within 0..hi.
func (e *encoder) unsigned(v any, path, typ string, hi uint64) (uint64, bool) {
	if x, ok := v.(json.Number); ok {
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			v = u
		}
	}
	var u uint64
	rv := reflect.ValueOf(v)
	switch {
	case v != nil && rv.CanUint():
		u = rv.Uint()
	default:
		n, ok := e.integer(v, path, typ, math.MinInt64, math.MaxInt64)
		if !ok {
			return 0, false
		}
		if n < 0 {
			e.failRange(path, "%d does not fit %s (0..%d)", n, typ, hi)
			return 0, false
		}
		u = uint64(n)
	}
	if u > hi {
		e.failRange(path, "%d does not fit %s (0..%d)", u, typ, hi)
		return 0, false
	}
	return u, true
}

func (e *encoder) float(v any, path, typ string) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			e.failRange(path, "%s does not fit a %s", x, typ)
			return 0, false
		}
		return f, true
	case float64:
		return x, true
	case float32:
		return float64(x), true
	}
	rv := reflect.ValueOf(v)
	switch {
	case v != nil && rv.CanInt():
		return float64(rv.Int()), true
	case v != nil && rv.CanUint():
		return float64(rv.Uint()), true
	}
	e.fail(path, "%s for a %s", kindOf(v), typ)
	return 0, false
}

// kindOf names a value's JSON kind for a message.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64, float32, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return "a number"
	case map[string]any, collectors.Structure:
		return "an object"
	}
	if _, ok := collectors.Elements(v); ok {
		return "an array"
	}
	return fmt.Sprintf("a %T", v)
}
