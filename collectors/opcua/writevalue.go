package opcua

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/command"
)

// toVariant converts a command's value to what the node holds, refusing a
// value of the wrong type or shape, or out of the type's range.
func toVariant(value any, nt nodeType) (*ua.Variant, error) {
	if _, ok := writableTypes[nt.builtin]; !ok {
		what := nt.builtin
		if what == "" {
			what = "a structure or a type of the PLC's own"
		}
		return nil, command.Refuse(command.WrongType, "the node holds %s, which is not writable from MQTT", what)
	}
	elems, isArray := collectors.Elements(value)
	switch {
	case nt.rank >= 2:
		return nil, command.Refuse(command.WrongType, "the node holds a matrix of %s, which is not writable from MQTT", nt.builtin)
	case isArray && nt.rank == -1:
		return nil, command.Refuse(command.WrongType, "an array for a scalar %s node", nt.builtin)
	case !isArray && nt.rank == 1:
		return nil, command.Refuse(command.WrongType, "a scalar for an array of %s", nt.builtin)
	case isArray && nt.length > 0 && uint32(len(elems)) != nt.length:
		return nil, command.Refuse(command.WrongType, "an array of %d elements; the node holds %d", len(elems), nt.length)
	}
	if !isArray {
		x, err := toScalar(value, nt.builtin)
		if err != nil {
			return nil, err
		}
		return ua.NewVariant(x)
	}
	slice := reflect.MakeSlice(reflect.SliceOf(writableTypes[nt.builtin]), len(elems), len(elems))
	for i, e := range elems {
		x, err := toScalar(e, nt.builtin)
		if err != nil {
			r := err.(*command.Refusal)
			return nil, command.Refuse(r.Status, "element %d: %s", i, r.Reason)
		}
		slice.Index(i).Set(reflect.ValueOf(x))
	}
	return ua.NewVariant(slice.Interface())
}

// writableTypes are the built-in types a command can write, with the Go
// type gopcua encodes each from.
var writableTypes = map[string]reflect.Type{
	"Boolean": reflect.TypeFor[bool](), "SByte": reflect.TypeFor[int8](), "Byte": reflect.TypeFor[uint8](),
	"Int16": reflect.TypeFor[int16](), "UInt16": reflect.TypeFor[uint16](), "Int32": reflect.TypeFor[int32](),
	"UInt32": reflect.TypeFor[uint32](), "Int64": reflect.TypeFor[int64](), "UInt64": reflect.TypeFor[uint64](),
	"Float": reflect.TypeFor[float32](), "Double": reflect.TypeFor[float64](), "String": reflect.TypeFor[string](),
	"DateTime": reflect.TypeFor[time.Time](), "ByteString": reflect.TypeFor[[]byte](),
	"LocalizedText": reflect.TypeFor[*ua.LocalizedText](),
}

// numericBits are the integer types with their width and signedness.
var numericBits = map[string]struct {
	bits   int
	signed bool
}{"SByte": {8, true}, "Byte": {8, false}, "Int16": {16, true}, "UInt16": {16, false}, "Int32": {32, true},
	"UInt32": {32, false}, "Int64": {64, true}, "UInt64": {64, false}, "Float": {0, true}, "Double": {0, true}}

// toScalar converts one value to the Go type of a built-in type.
func toScalar(v any, typ string) (any, error) {
	switch typ {
	case "Boolean":
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case "String":
		if s, ok := v.(string); ok {
			return s, nil
		}
	case "LocalizedText":
		// A plain string is the text without a locale (an alarm's comment).
		if s, ok := v.(string); ok {
			return &ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: s}, nil
		}
	case "DateTime":
		switch x := v.(type) {
		case time.Time:
			return x, nil
		case string:
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return nil, command.Refuse(command.WrongType, "%s is not an RFC 3339 time", strconv.Quote(short(x)))
			}
			return t, nil
		}
	case "ByteString":
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			b, err := base64.StdEncoding.DecodeString(x)
			if err != nil {
				return nil, command.Refuse(command.WrongType, "a ByteString is written as base64")
			}
			return b, nil
		}
	case "Float", "Double":
		f, ok, err := floatOf(v)
		if err != nil {
			return nil, err
		}
		if ok {
			if typ == "Double" {
				return f, nil
			}
			if math.Abs(f) > math.MaxFloat32 && !math.IsInf(f, 0) {
				return nil, command.Refuse(command.OutOfRange, "%g does not fit a Float", f)
			}
			return float32(f), nil
		}
	default:
		return toInteger(v, typ)
	}
	return nil, command.Refuse(command.WrongType, "%s for a %s node", describe(v), typ)
}

func floatOf(v any) (float64, bool, error) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return 0, false, command.Refuse(command.OutOfRange, "%s does not fit a Double", short(string(x)))
		}
		return f, true, nil
	case float64:
		return x, true, nil
	case float32:
		return float64(x), true, nil
	case int64:
		return float64(x), true, nil
	case uint64:
		return float64(x), true, nil
	}
	return 0, false, nil
}

// toInteger converts to an integer type: whole numbers only, within range.
func toInteger(v any, typ string) (any, error) {
	nb, ok := numericBits[typ]
	if !ok {
		return nil, command.Refuse(command.WrongType, "%s is not writable", typ)
	}
	var i int64
	var u uint64
	neg := false
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			i, u, neg = n, uint64(n), n < 0
		} else if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			u = n
			i = math.MaxInt64 // beyond every signed type
		} else if f, err := strconv.ParseFloat(s, 64); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<63 {
			i, u, neg = int64(f), uint64(int64(f)), f < 0
		} else if err == nil && f == math.Trunc(f) || errors.Is(err, strconv.ErrRange) {
			return nil, command.Refuse(command.OutOfRange, "%s does not fit %s", short(s), typ)
		} else {
			return nil, command.Refuse(command.WrongType, "%s is not a whole number, as %s needs", short(s), typ)
		}
	case int64:
		i, u, neg = x, uint64(x), x < 0
	case uint64:
		u = x
		i = int64(min(x, math.MaxInt64))
	case float64, float32:
		f, _, _ := floatOf(x)
		if f != math.Trunc(f) {
			return nil, command.Refuse(command.WrongType, "%g is not a whole number, as %s needs", f, typ)
		}
		if math.Abs(f) >= 1<<63 {
			return nil, command.Refuse(command.OutOfRange, "%g does not fit %s", f, typ)
		}
		i, u, neg = int64(f), uint64(int64(f)), f < 0
	default:
		return nil, command.Refuse(command.WrongType, "%s for a %s node", describe(v), typ)
	}
	if nb.signed {
		lo, hi := int64(-1)<<(nb.bits-1), int64(1)<<(nb.bits-1)-1
		if nb.bits == 64 {
			lo, hi = math.MinInt64, math.MaxInt64
		}
		if !neg && u > uint64(hi) || i < lo {
			return nil, command.Refuse(command.OutOfRange, "%s does not fit %s (%d..%d)", numberText(v), typ, lo, hi)
		}
		switch nb.bits {
		case 8:
			return int8(i), nil
		case 16:
			return int16(i), nil
		case 32:
			return int32(i), nil
		}
		return i, nil
	}
	hi := uint64(1)<<nb.bits - 1
	if nb.bits == 64 {
		hi = math.MaxUint64
	}
	if neg || u > hi {
		return nil, command.Refuse(command.OutOfRange, "%s does not fit %s (0..%d)", numberText(v), typ, hi)
	}
	switch nb.bits {
	case 8:
		return uint8(u), nil
	case 16:
		return uint16(u), nil
	case 32:
		return uint32(u), nil
	}
	return u, nil
}

func numberText(v any) string {
	if n, ok := v.(json.Number); ok {
		return short(string(n))
	}
	return fmt.Sprint(v)
}

// describe names a value's JSON kind for a message.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64, float32, int64, uint64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	case time.Time:
		return "a time"
	case []byte:
		return "bytes"
	default:
		return fmt.Sprintf("a %T", x)
	}
}

// short bounds text quoted from a command.
func short(s string) string {
	if len(s) > 40 {
		return strings.ToValidUTF8(s[:40], "") + "..."
	}
	return s
}
