package payload

import (
	"encoding/base64"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tagbridge/tagbridge/collectors"
)

// AppendJSON appends s as one JSON object to dst and returns the extended
// slice. The keys and their order are fixed:
//
//	{"plc":…,"tag":…,"node":…,"value":…,"type":…,"status":…,"status_code":…,"time":…,"source_time":…,"server_time":…}
//
// The JSON type of value depends only on the tag's data type, never on the
// value, and a standard JSON parser reads every value exactly:
//   - Int64 and UInt64 (and 64-bit integers inside arrays and structures)
//     are decimal strings, "9007199254740993": a JSON number past 2^53 is
//     rounded by JSON.parse and by float64 parsers;
//   - Float and Double are numbers; NaN and ±Inf, which JSON numbers
//     cannot hold, are null, and a scalar one is named in "nonfinite"
//     ("NaN", "Infinity", "-Infinity"), after value.
//
// type and status are the names of the sample's Type and StatusCode.
// time is always present: the source timestamp, else the server's, else
// the time the agent took the value, so a consumer can always key on it. A
// zero source_time or server_time is left out; "heartbeat":true ends a
// value sent again because it did not change (or, Bad, because the PLC is
// away). A LocalizedText is its text, an enumeration field the name of its
// value. Scalar values are written without allocating when dst has room.
func AppendJSON(dst []byte, s *collectors.Sample) []byte {
	return appendJSON(dst, s, nil)
}

// appendJSON is AppendJSON, taking the timestamps' text from times when
// it holds them (nil: none kept).
func appendJSON(dst []byte, s *collectors.Sample, times *timeMemo) []byte {
	dst = append(dst, `{"plc":`...)
	dst = AppendString(dst, s.PLC)
	dst = append(dst, `,"tag":`...)
	dst = AppendString(dst, s.Tag)
	dst = append(dst, `,"node":`...)
	dst = AppendString(dst, s.Node)
	dst = append(dst, `,"value":`...)
	var nonfinite string
	if s.Unboxed {
		dst, nonfinite = appendPlainBits(dst, s)
	} else {
		dst, nonfinite = appendPlainValue(dst, s.Value), nonFiniteName(s.Value)
	}
	if nonfinite != "" {
		dst = append(dst, `,"nonfinite":"`...)
		dst = append(dst, nonfinite...)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"type":`...)
	dst = AppendString(dst, s.Type.String())
	dst = append(dst, `,"status":`...)
	dst = AppendString(dst, s.StatusCode.String())
	dst = append(dst, `,"status_code":`...)
	dst = strconv.AppendUint(dst, uint64(s.StatusCode), 10)
	dst = append(dst, `,"time":`...)
	if s.SourceTime.IsZero() && s.ServerTime.IsZero() {
		dst = AppendTime(dst, time.Now())
	} else {
		dst = times.appendTime(dst, SampleTime(s, time.Time{}))
	}
	if !s.SourceTime.IsZero() {
		dst = append(dst, `,"source_time":`...)
		dst = times.appendTime(dst, s.SourceTime)
	}
	if !s.ServerTime.IsZero() {
		dst = append(dst, `,"server_time":`...)
		dst = times.appendTime(dst, s.ServerTime)
	}
	if s.Historical {
		dst = append(dst, `,"historical":true`...) // read back from the PLC's history
	}
	if s.Heartbeat {
		dst = append(dst, `,"heartbeat":true`...) // unchanged, sent again (or Bad: the PLC is away)
	}
	return append(dst, '}')
}

// appendPlainBits writes an unboxed scalar as appendPlainValue writes it
// boxed, without boxing it, and names a non-finite float.
func appendPlainBits(dst []byte, s *collectors.Sample) ([]byte, string) {
	switch s.Type {
	case collectors.TypeInt64:
		return AppendQuotedInt(dst, s.Int()), ""
	case collectors.TypeUInt64:
		return AppendQuotedUint(dst, s.Uint()), ""
	case collectors.TypeFloat, collectors.TypeDouble:
		f := s.Float64()
		if s.Type == collectors.TypeFloat {
			f = float64(s.Float32())
		}
		if name := floatName(f); name != "" {
			return append(dst, "null"...), name
		}
	}
	return AppendBits(dst, s), ""
}

// AppendBits writes an unboxed scalar as AppendValue writes it boxed,
// without boxing it: 64-bit integers as numbers, NaN and ±Inf as strings.
func AppendBits(dst []byte, s *collectors.Sample) []byte {
	switch s.Type {
	case collectors.TypeBoolean:
		return strconv.AppendBool(dst, s.Bool())
	case collectors.TypeSByte, collectors.TypeInt16, collectors.TypeInt32, collectors.TypeInt64:
		return strconv.AppendInt(dst, s.Int(), 10)
	case collectors.TypeByte, collectors.TypeUInt16, collectors.TypeUInt32, collectors.TypeUInt64:
		return strconv.AppendUint(dst, s.Uint(), 10)
	case collectors.TypeFloat:
		return appendFloat(dst, float64(s.Float32()), 32)
	case collectors.TypeDouble:
		return appendFloat(dst, s.Float64(), 64)
	case collectors.TypeStatusCode:
		return AppendString(dst, collectors.StatusCode(s.Bits).String())
	case collectors.TypeDateTime:
		return AppendTime(dst, s.DateTime())
	}
	return AppendValue(dst, s.Any())
}

// nonFiniteName names a scalar float value that JSON numbers cannot hold, or
// returns "".
func nonFiniteName(v any) string {
	var f float64
	switch v := v.(type) {
	case float64:
		f = v
	case float32:
		f = float64(v)
	default:
		return ""
	}
	return floatName(f)
}

// floatName names a float that JSON numbers cannot hold, or returns "".
func floatName(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return ""
}

// appendPlainValue writes v in the default JSON's forms (see AppendJSON):
// 64-bit integers as strings, non-finite floats as null.
func appendPlainValue(dst []byte, v any) []byte {
	switch v := v.(type) {
	case int:
		return AppendQuotedInt(dst, int64(v))
	case int64:
		return AppendQuotedInt(dst, v)
	case uint:
		return AppendQuotedUint(dst, uint64(v))
	case uint64:
		return AppendQuotedUint(dst, v)
	case float32:
		if nonFiniteName(v) != "" {
			return append(dst, "null"...)
		}
	case float64:
		if nonFiniteName(v) != "" {
			return append(dst, "null"...)
		}
	case []any:
		return appendArray(dst, v, appendPlainValue)
	case map[string]any:
		return appendObject(dst, v, appendPlainValue)
	case collectors.Structure:
		return appendStructure(dst, v, appendPlainValue)
	case collectors.Typed:
		return appendPlainValue(dst, v.Value)
	}
	return AppendValue(dst, v)
}

// appendStructure writes a structure as an object with the DataType's
// field names in its order (a map's keys are sorted instead).
func appendStructure(dst []byte, st collectors.Structure, value func([]byte, any) []byte) []byte {
	dst = append(dst, '{')
	for i, f := range st.Fields {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, f.Name)
		dst = append(dst, ':')
		dst = value(dst, f.Value)
	}
	return append(dst, '}')
}

// appendArray writes an array, each element with value.
func appendArray(dst []byte, a []any, value func([]byte, any) []byte) []byte {
	dst = append(dst, '[')
	for i, e := range a {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = value(dst, e)
	}
	return append(dst, ']')
}

// appendObject writes a map as an object with sorted keys, each value with
// value.
func appendObject(dst []byte, m map[string]any, value func([]byte, any) []byte) []byte {
	dst = append(dst, '{')
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, k)
		dst = append(dst, ':')
		dst = value(dst, m[k])
	}
	return append(dst, '}')
}

func AppendQuotedInt(dst []byte, v int64) []byte {
	dst = append(dst, '"')
	dst = strconv.AppendInt(dst, v, 10)
	return append(dst, '"')
}

func AppendQuotedUint(dst []byte, v uint64) []byte {
	dst = append(dst, '"')
	dst = strconv.AppendUint(dst, v, 10)
	return append(dst, '"')
}

// AppendValue writes v as Sparkplug's string metrics and the agent's
// older JSON forms did: 64-bit integers as numbers, NaN and ±Inf as strings.
func AppendValue(dst []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...)
	case bool:
		return strconv.AppendBool(dst, v)
	case int:
		return strconv.AppendInt(dst, int64(v), 10)
	case int8:
		return strconv.AppendInt(dst, int64(v), 10)
	case int16:
		return strconv.AppendInt(dst, int64(v), 10)
	case int32:
		return strconv.AppendInt(dst, int64(v), 10)
	case int64:
		return strconv.AppendInt(dst, v, 10)
	case uint:
		return strconv.AppendUint(dst, uint64(v), 10)
	case uint8:
		return strconv.AppendUint(dst, uint64(v), 10)
	case uint16:
		return strconv.AppendUint(dst, uint64(v), 10)
	case uint32:
		return strconv.AppendUint(dst, uint64(v), 10)
	case uint64:
		return strconv.AppendUint(dst, v, 10)
	case float32:
		return appendFloat(dst, float64(v), 32)
	case float64:
		return appendFloat(dst, v, 64)
	case string:
		return AppendString(dst, v)
	case []byte:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, v)
		return append(dst, '"')
	case time.Time:
		return AppendTime(dst, v)
	case []any:
		// By hand rather than encoding/json, so that NaN and ±Inf inside
		// arrays and structures are written as in scalars instead of failing.
		return appendArray(dst, v, AppendValue)
	case map[string]any:
		return appendObject(dst, v, AppendValue)
	case collectors.Structure:
		return appendStructure(dst, v, AppendValue)
	case collectors.LocalizedText:
		return AppendString(dst, v.Text)
	case collectors.StatusCode:
		return AppendString(dst, v.String()) // its name
	case collectors.Type: // a nested DataValue's type
		return AppendString(dst, v.String())
	case collectors.Typed:
		return AppendValue(dst, v.Value)
	case collectors.Enum:
		if v.Name != "" {
			return AppendString(dst, v.Name)
		}
		dst = append(dst, '"')
		dst = strconv.AppendInt(dst, int64(v.Value), 10)
		return append(dst, '"')
	}
	b, err := json.Marshal(v)
	if err != nil {
		// Keep the message valid JSON; the value cannot be represented.
		return append(dst, "null"...)
	}
	return append(dst, b...)
}

// appendFloat writes f like encoding/json (shortest round-trip form,
// exponent only for very small or large magnitudes), and NaN and ±Inf as
// strings, as OPC UA Part 6 JSON does.
func appendFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// timeMemo keeps the text of the last two timestamps written: the values
// of one notification mostly share their source and their server
// timestamp, and "time" repeats one of them, so most timestamps of a batch
// are copied rather than formatted again.
type timeMemo struct {
	at   [2]time.Time
	text [2][maxTimeText]byte
	n    [2]uint8 // 0: empty
	next int
}

// maxTimeText bounds the text kept: a timestamp AppendTime writes for the
// years 0 to 9999, quotes included, is at most 32 bytes.
const maxTimeText = 32

// appendTime appends t as AppendTime does; m may be nil.
func (m *timeMemo) appendTime(dst []byte, t time.Time) []byte {
	if m == nil {
		return AppendTime(dst, t)
	}
	for i := range m.at {
		if m.n[i] > 0 && m.at[i].Equal(t) {
			return append(dst, m.text[i][:m.n[i]]...)
		}
	}
	start := len(dst)
	dst = AppendTime(dst, t)
	if len(dst)-start <= maxTimeText {
		i := m.next
		m.next ^= 1
		m.at[i], m.n[i] = t, uint8(copy(m.text[i][:], dst[start:]))
	}
	return dst
}

// AppendTime writes t in UTC as RFC 3339 with the fractional seconds it
// has, exactly as AppendFormat(time.RFC3339Nano) does, in a third of its
// time: two timestamps per value made it the largest cost of encoding.
func AppendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		dst = append(dst, '"')
		dst = t.AppendFormat(dst, time.RFC3339Nano)
		return append(dst, '"')
	}
	hour, minute, sec := t.Clock()
	dst = append(dst, '"',
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+month/10), byte('0'+month%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+sec/10), byte('0'+sec%10))
	if ns := t.Nanosecond(); ns != 0 {
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i >= 1; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		dst = append(dst, frac[:n]...)
	}
	return append(dst, 'Z', '"')
}

const hex = "0123456789abcdef"

// AppendString writes s as a JSON string, escaped as encoding/json does
// without HTML escaping: invalid UTF-8 becomes U+FFFD, and U+2028 and U+2029
// are escaped so the output is also safe inside JavaScript.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// SampleTime is when a value was taken: source time, else server time, else now.
func SampleTime(s *collectors.Sample, now time.Time) time.Time {
	switch {
	case !s.SourceTime.IsZero():
		return s.SourceTime
	case !s.ServerTime.IsZero():
		return s.ServerTime
	}
	return now
}
