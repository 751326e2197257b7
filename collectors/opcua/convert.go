package opcua

import (
	"bytes"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/uastatus"
)

// maxDepth bounds the nesting of Variants, DataValues, DiagnosticInfos,
// structures and matrix dimensions that convertValue follows. OPC UA decoders
// are expected to cope with 100 levels; deeper values come out as tooDeep.
const maxDepth = 100

// tooDeep replaces a value nested deeper than maxDepth.
const tooDeep = "<nested deeper than 100 levels>"

// convertValue turns a decoded OPC UA Variant into a JSON-friendly Go value
// (see collectors.Sample) and returns it with the Variant's built-in type
// (collectors.TypeDouble, ...; TypeNull for a nil or empty Variant).
//
// Scalars keep their exact Go type (int8 ... uint64, float32, float64), so
// the common path allocates nothing. ByteString is a copy (gopcua's slice
// aliases the whole received message); Guid, NodeId, ExpandedNodeId,
// QualifiedName and XmlElement become strings (inside a nested Variant
// wrapped in collectors.Typed with their type), a StatusCode a
// collectors.StatusCode, LocalizedText a collectors.LocalizedText;
// DateTime becomes a UTC time.Time, or nil for the null DateTime. Arrays are
// []any (nil for a null array), matrices nested []any, outer dimension first.
// A DataValue is a map with value, type (a collectors.Type), status (its
// name), status_code and the
// timestamps that were sent; a DiagnosticInfo a map of the fields that were
// sent; a nested Variant its converted value. An ExtensionObject that gopcua
// decoded into a Go struct is a map of its exported fields, converted by the
// same rules; any other one is a map with type_id, encoding and body.
// NaN and ±Inf floats are passed through: encoders must cope with them.
//
// convertValue does not panic: values it does not know come out as
// fmt.Sprint strings.
func convertValue(v *ua.Variant) (value any, typ collectors.Type) {
	return convertVariant(v, 0)
}

func convertVariant(v *ua.Variant, depth int) (any, collectors.Type) {
	if v == nil || v.Type() == ua.TypeIDNull {
		return nil, collectors.TypeNull
	}
	return convert(v.Value(), depth), collectors.Type(v.Type())
}

// convert is the scalar fast path: a plain type switch that hands the
// interface back unchanged where it can. Anything that may nest goes to
// convertSlow, which checks the depth.
func convert(val any, depth int) any {
	switch x := val.(type) {
	case nil:
		return nil
	case bool, int8, uint8, int16, uint16, int32, uint32, int64, uint64, float32, float64, string:
		return val
	case time.Time:
		if isNullTime(x) {
			return nil
		}
		if x.Location() == time.UTC {
			return val
		}
		return x.UTC()
	case ua.StatusCode:
		return collectors.StatusCode(x)
	case []byte:
		if x == nil {
			return nil
		}
		return bytes.Clone(x)
	case ua.XMLElement:
		return string(x)
	case *ua.LocalizedText:
		if x == nil {
			return nil
		}
		return collectors.LocalizedText{Locale: x.Locale, Text: x.Text}
	case *ua.QualifiedName:
		if x == nil {
			return nil
		}
		return qualifiedNameString(x)
	case *ua.NodeID:
		if x == nil {
			return nil
		}
		return nodeIDString(x)

	// One-dimensional arrays as gopcua decodes them.
	case []bool:
		return convertSlice(x, depth)
	case []int8:
		return convertSlice(x, depth)
	case ua.ByteArray: // an array of Byte: numbers, unlike a ByteString
		return convertSlice(x, depth)
	case []int16:
		return convertSlice(x, depth)
	case []uint16:
		return convertSlice(x, depth)
	case []int32:
		return convertSlice(x, depth)
	case []uint32:
		return convertSlice(x, depth)
	case []int64:
		return convertSlice(x, depth)
	case []uint64:
		return convertSlice(x, depth)
	case []float32:
		return convertSlice(x, depth)
	case []float64:
		return convertSlice(x, depth)
	case []string:
		return convertSlice(x, depth)
	case []time.Time:
		return convertSlice(x, depth)
	case [][]byte:
		return convertSlice(x, depth)
	case []ua.StatusCode:
		return convertSlice(x, depth)
	case []ua.XMLElement:
		return convertSlice(x, depth)
	case []*ua.LocalizedText:
		return convertSlice(x, depth)
	case []*ua.QualifiedName:
		return convertSlice(x, depth)
	case []*ua.NodeID:
		return convertSlice(x, depth)
	}
	return convertSlow(val, depth)
}

// typed wraps a nested Variant's value in collectors.Typed when its Go
// form does not say its built-in type (see stringTyped), so that encoders
// that carry types keep it.
func typed(v any, typ collectors.Type) any {
	switch typ {
	case collectors.TypeGUID, collectors.TypeXMLElement, collectors.TypeNodeID, collectors.TypeExpandedNodeID, collectors.TypeQualifiedName:
		return collectors.Typed{Type: typ, Value: v} // convert writes them as strings
	case collectors.TypeDateTime:
		if v == nil {
			return collectors.Typed{Type: typ}
		}
	}
	return v
}

// convertSlice converts a one-dimensional array element by element; a nil
// slice is OPC UA's null array and stays nil.
func convertSlice[T any](s []T, depth int) any {
	if s == nil {
		return nil
	}
	if depth >= maxDepth {
		return tooDeep
	}
	out := make([]any, len(s))
	for i := range s {
		out[i] = convert(s[i], depth+1)
	}
	return out
}

// convertSlow handles everything that can nest, and unknown types by
// reflection. It recovers from panics in foreign String methods and the like,
// so that one odd value cannot take the session down.
func convertSlow(val any, depth int) (out any) {
	if depth >= maxDepth {
		return tooDeep
	}
	defer func() {
		if r := recover(); r != nil {
			out = fmt.Sprintf("<%T: %v>", val, r)
		}
	}()

	switch x := val.(type) {
	case *ua.Variant:
		return typed(convertVariant(x, depth+1))
	case ua.Variant:
		return typed(convertVariant(&x, depth+1))
	case *ua.DataValue:
		if x == nil {
			return nil
		}
		return dataValueMap(x, depth+1)
	case ua.DataValue:
		return dataValueMap(&x, depth+1)
	case *ua.ExtensionObject:
		if x == nil {
			return nil
		}
		return convertExtensionObject(x, depth+1)
	case ua.ExtensionObject:
		return convertExtensionObject(&x, depth+1)
	case *ua.DiagnosticInfo:
		if x == nil {
			return nil
		}
		return diagnosticInfoMap(x, depth+1)
	case ua.DiagnosticInfo:
		return diagnosticInfoMap(&x, depth+1)
	case *ua.GUID:
		if x == nil {
			return nil
		}
		return guidString(x)
	case ua.GUID:
		return guidString(&x)
	case *ua.ExpandedNodeID:
		if x == nil || x.NodeID == nil {
			return nil
		}
		return expandedNodeIDString(x)
	case ua.ExpandedNodeID:
		if x.NodeID == nil {
			return nil
		}
		return expandedNodeIDString(&x)
	case ua.NodeID:
		return nodeIDString(&x)
	case ua.QualifiedName:
		return qualifiedNameString(&x)
	case ua.LocalizedText:
		return collectors.LocalizedText{Locale: x.Locale, Text: x.Text}
	case *ua.XMLElement:
		if x == nil {
			return nil
		}
		return string(*x)
	case *rawBody:
		if x == nil || *x == nil {
			return nil
		}
		return bytes.Clone(*x)
	}
	return convertReflect(reflect.ValueOf(val), depth)
}

var (
	byteArrayType = reflect.TypeFor[ua.ByteArray]()
	timeType      = reflect.TypeFor[time.Time]()
)

// convertReflect converts what the type switches do not know: structures
// decoded from extension objects, matrices ([][]T from gopcua), enums (named
// integers keep their number) and whatever else a caller builds by hand.
func convertReflect(rv reflect.Value, depth int) any {
	switch rv.Kind() {
	case reflect.Invalid:
		return nil
	case reflect.Pointer:
		if rv.IsNil() {
			return nil
		}
		return convert(rv.Elem().Interface(), depth+1)
	case reflect.Struct:
		if rv.Type().ConvertibleTo(timeType) { // a named time type
			return convert(rv.Convert(timeType).Interface(), depth)
		}
		t := rv.Type()
		m := make(map[string]any, t.NumField())
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() {
				m[f.Name] = convert(rv.Field(i).Interface(), depth+1)
			}
		}
		if len(m) == 0 && t.NumField() > 0 {
			return fmt.Sprint(rv.Interface()) // nothing exported: do not drop it
		}
		return m
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return nil
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 && rv.Type() != byteArrayType {
			b := make([]byte, rv.Len())
			reflect.Copy(reflect.ValueOf(b), rv)
			return b
		}
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = convert(rv.Index(i).Interface(), depth+1)
		}
		return out
	case reflect.Map:
		if rv.IsNil() {
			return nil
		}
		m := make(map[string]any, rv.Len())
		iter := rv.MapRange()
		for iter.Next() {
			var key string
			if k := iter.Key(); k.Kind() == reflect.String {
				key = k.String()
			} else {
				key = fmt.Sprint(k.Interface())
			}
			m[key] = convert(iter.Value().Interface(), depth+1)
		}
		return m
	case reflect.Bool:
		return rv.Bool()
	case reflect.Int8:
		return int8(rv.Int())
	case reflect.Int16:
		return int16(rv.Int())
	case reflect.Int32:
		return int32(rv.Int())
	case reflect.Int, reflect.Int64:
		return rv.Int()
	case reflect.Uint8:
		return uint8(rv.Uint())
	case reflect.Uint16:
		return uint16(rv.Uint())
	case reflect.Uint32:
		return uint32(rv.Uint())
	case reflect.Uint, reflect.Uint64:
		return rv.Uint()
	case reflect.Float32:
		return float32(rv.Float())
	case reflect.Float64:
		return rv.Float()
	case reflect.String:
		return rv.String()
	}
	// complex numbers, channels, functions, unsafe pointers
	return fmt.Sprint(rv.Interface())
}

// minDate is OPC UA's DateTime origin. gopcua decodes the encoded 0 (the null
// DateTime) as time.Time{}; both mean "no time".
var minDate = time.Date(1601, time.January, 1, 0, 0, 0, 0, time.UTC)

func isNullTime(t time.Time) bool {
	return t.IsZero() || !t.After(minDate)
}

// dataValueMap converts a nested DataValue. Its EncodingMask decides which
// fields were sent, as on the wire.
func dataValueMap(d *ua.DataValue, depth int) map[string]any {
	value, typ, status, src, srv := dataValueParts(d, depth)
	m := map[string]any{
		"value":       value,
		"type":        typ,
		"status":      statusName(status),
		"status_code": uint32(status),
	}
	if !src.IsZero() {
		m["source_time"] = src
	}
	if !srv.IsZero() {
		m["server_time"] = srv
	}
	return m
}

// dataValueParts reads a DataValue as its EncodingMask says it was sent: a
// missing value is Null, a missing status Good (Part 4, 7.7.1), a missing or
// null timestamp zero. Picoseconds refine the timestamps to the nanosecond.
func dataValueParts(d *ua.DataValue, depth int) (value any, typ collectors.Type, status ua.StatusCode, src, srv time.Time) {
	if d.Has(ua.DataValueValue) {
		value, typ = convertVariant(d.Value, depth)
	}
	if d.Has(ua.DataValueStatusCode) {
		status = d.Status
	}
	if d.Has(ua.DataValueSourceTimestamp) && !isNullTime(d.SourceTimestamp) {
		src = d.SourceTimestamp.UTC()
		if d.Has(ua.DataValueSourcePicoseconds) {
			src = src.Add(time.Duration(d.SourcePicoseconds / 100))
		}
	}
	if d.Has(ua.DataValueServerTimestamp) && !isNullTime(d.ServerTimestamp) {
		srv = d.ServerTimestamp.UTC()
		if d.Has(ua.DataValueServerPicoseconds) {
			srv = srv.Add(time.Duration(d.ServerPicoseconds / 100))
		}
	}
	return value, typ, status, src, srv
}

// diagnosticInfoMap converts the fields of a DiagnosticInfo that its
// EncodingMask says were sent. The int32 fields are indexes into the string
// table of the response, which a notification does not carry along.
func diagnosticInfoMap(d *ua.DiagnosticInfo, depth int) map[string]any {
	m := make(map[string]any)
	if d.Has(ua.DiagnosticInfoSymbolicID) {
		m["symbolic_id"] = d.SymbolicID
	}
	if d.Has(ua.DiagnosticInfoNamespaceURI) {
		m["namespace_uri"] = d.NamespaceURI
	}
	if d.Has(ua.DiagnosticInfoLocale) {
		m["locale"] = d.Locale
	}
	if d.Has(ua.DiagnosticInfoLocalizedText) {
		m["localized_text"] = d.LocalizedText
	}
	if d.Has(ua.DiagnosticInfoAdditionalInfo) {
		m["additional_info"] = d.AdditionalInfo
	}
	if d.Has(ua.DiagnosticInfoInnerStatusCode) {
		m["inner_status"] = statusName(d.InnerStatusCode)
		m["inner_status_code"] = uint32(d.InnerStatusCode)
	}
	if d.Has(ua.DiagnosticInfoInnerDiagnosticInfo) {
		m["inner_diagnostic_info"] = convert(d.InnerDiagnosticInfo, depth)
	}
	return m
}

// convertExtensionObject converts an ExtensionObject by what gopcua v0.9.1
// or the session's structure types left in its Value:
//   - a collectors.Structure, decoded by its DataType's definition: itself;
//   - a pointer to a registered Go struct (a type the server gave no
//     definition for): a map of its exported fields;
//   - *rawBody (a type id registered with registerRawExtensionObject): the body;
//   - *ua.XMLElement for an XML body: the XML text;
//   - nil for an empty object, a zero-length body and, since gopcua discards
//     the bytes, for every binary body of an unregistered type.
//
// All but the first come out as {"type_id", "encoding", "body"}; a body that
// gopcua threw away is "encoding": "binary" with a nil body.
func convertExtensionObject(e *ua.ExtensionObject, depth int) any {
	var body any
	switch x := e.Value.(type) {
	case nil:
	case collectors.Structure: // decoded by its DataType's definition (typedefs.go)
		return x
	case *rawBody, *ua.XMLElement, ua.XMLElement, []byte:
		body = convert(x, depth)
	default:
		return convert(x, depth)
	}
	return map[string]any{
		"type_id":  extensionObjectTypeID(e),
		"encoding": extensionObjectEncoding(e.EncodingMask),
		"body":     body,
	}
}

func extensionObjectTypeID(e *ua.ExtensionObject) any {
	if e.TypeID == nil || e.TypeID.NodeID == nil {
		return nil
	}
	return expandedNodeIDString(e.TypeID)
}

func extensionObjectEncoding(mask uint8) string {
	switch mask {
	case ua.ExtensionObjectEmpty:
		return "none"
	case ua.ExtensionObjectBinary:
		return "binary"
	case ua.ExtensionObjectXML:
		return "xml"
	}
	return "0x" + strconv.FormatUint(uint64(mask), 16)
}

// rawBody keeps the undecoded body of an extension object. gopcua v0.9.1
// drops the body of a type id it has no Go type for; a type id registered
// with registerRawExtensionObject decodes into a rawBody instead, which
// convertValue emits as {"type_id", "encoding": "binary", "body": bytes}.
type rawBody []byte

// Decode implements ua.BinaryDecoder; b is exactly the body.
func (r *rawBody) Decode(b []byte) (int, error) {
	*r = bytes.Clone(b)
	return len(b), nil
}

// Encode implements ua.BinaryEncoder.
func (r *rawBody) Encode() ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	return *r, nil
}

// registerRawExtensionObject makes gopcua keep the raw body of extension
// objects whose binary encoding id is id (e.g. a PLC's structure types that
// have no Go type). The registry is gopcua's and process-wide; registering an
// id that already has another Go type is an error.
func registerRawExtensionObject(id *ua.NodeID) (err error) {
	if id == nil {
		return fmt.Errorf("register raw extension object: missing node id")
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("register raw extension object %s: %v", nodeIDString(id), r)
		}
	}()
	ua.RegisterExtensionObject(id, new(rawBody))
	return nil
}

// statusName returns the symbolic name of a status code (see uastatus.Name).
func statusName(c ua.StatusCode) string { return uastatus.Name(c) }

// sampleFrom fills a Sample from a DataValue as the server sent it: value and
// type via convertValue, status Good when the status was not sent,
// timestamps only when sent and not null. A nil DataValue gives a Null value
// with status Good.
func sampleFrom(plc, tag, node string, dv *ua.DataValue) collectors.Sample {
	s := collectors.Sample{PLC: plc, Tag: tag, Node: node}
	if dv == nil {
		return s
	}
	var status ua.StatusCode
	s.Value, s.Type, status, s.SourceTime, s.ServerTime = dataValueParts(dv, 0)
	s.StatusCode = collectors.StatusCode(status)
	return s
}
