package uajson

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/payload"
)

// appendStatusCode writes a StatusCode as Part 6 (v1.05.04) 5.4.2.12 does
// in the VerboseEncoding: {"Code":n,"Symbol":"BadXxx"}, the Symbol left
// out when it is not known.
func appendStatusCode(dst []byte, code collectors.StatusCode) []byte {
	dst = append(dst, `{"Code":`...)
	dst = strconv.AppendUint(dst, uint64(code), 10)
	if symbol, ok := code.Symbol(); ok {
		dst = append(dst, `,"Symbol":`...)
		dst = payload.AppendString(dst, symbol)
	}
	return append(dst, '}')
}

// uaType is the built-in type id of a sample's or Typed's type, and
// whether it is one (Null, arrays and events are not).
func uaType(t collectors.Type) (int, bool) { return int(t), t.Builtin() }

// uaMinDateTime is DateTime.MinValue in Part 6 JSON (5.4.2.6); the
// collectors pass a null DateTime on as nil.
const uaMinDateTime = `"0001-01-01T00:00:00Z"`

// appendUADataValue writes a sample as a DataValue in the Part 6 (v1.05.04)
// JSON encoding, 5.4.2.18, as a Part 14 DataSet field with RawData false
// (7.2.5.4.3): the Variant's fields, then the status and timestamps:
//
//	{"UaType":11,"Value":21.5,
//	 "Status":{"Code":2147811328,"Symbol":"BadCommunicationError"},
//	 "StatusCode":{"Code":2147811328,"Symbol":"BadCommunicationError"},
//	 "SourceTimestamp":"…","ServerTimestamp":"…"}
//
// The status goes under both keys: Part 6 names it Status, while
// node-opcua-json and OPC Publisher read StatusCode, and a decoder that
// finds neither takes the value as Good. Both are left out for Good (0),
// a timestamp the server did not send is left out. See appendUAVariant for
// the value.
func appendUADataValue(dst []byte, s *collectors.Sample) []byte {
	dst = append(dst, '{')
	n := len(dst)
	if s.Unboxed {
		dst = appendUABits(dst, s)
	} else {
		dst = appendUAVariant(dst, s.Type, s.Value)
	}
	sep := func() {
		if len(dst) > n {
			dst = append(dst, ',')
		}
	}
	if s.StatusCode != 0 {
		sep()
		dst = append(dst, `"Status":`...)
		dst = appendStatusCode(dst, s.StatusCode)
		dst = append(dst, `,"StatusCode":`...)
		dst = appendStatusCode(dst, s.StatusCode)
	}
	if !s.SourceTime.IsZero() {
		sep()
		dst = append(dst, `"SourceTimestamp":`...)
		dst = payload.AppendTime(dst, s.SourceTime)
	}
	if !s.ServerTime.IsZero() {
		sep()
		dst = append(dst, `"ServerTimestamp":`...)
		dst = payload.AppendTime(dst, s.ServerTime)
	}
	return append(dst, '}')
}

// appendUAVariant writes the fields of a Variant (Part 6, 5.4.2.17) of
// type typ, without braces: "UaType":t,"Value":…, and for a
// matrix, flattened, its dimensions under both Dimensions (Part 6) and
// UaDimensions (node-opcua-json). A Null Variant writes nothing; a null
// value of a known type writes only UaType, except DateTime, whose null is
// DateTime.MinValue. A value that does not fit typ (which the collectors
// never send) gets the type its Go value has.
func appendUAVariant(dst []byte, typ collectors.Type, v any) []byte {
	t, ok := uaType(typ)
	if !ok && v == nil {
		return dst
	}
	var dims []int
	if arr, isArr := v.([]any); isArr {
		if d, flat, matrix := flatten(arr); matrix {
			v, dims = flat, d
		}
	}
	if !ok || !typeFits(t, v) {
		if t = goUAType(v); t == 0 {
			return dst
		}
	}
	dst = append(dst, `"UaType":`...)
	dst = strconv.AppendInt(dst, int64(t), 10)
	if v == nil {
		if t == uaDateTime {
			dst = append(dst, `,"Value":`...)
			dst = append(dst, uaMinDateTime...)
		}
		return dst
	}
	dst = append(dst, `,"Value":`...)
	dst = appendUAValue(dst, v, t)
	if dims != nil {
		for _, key := range []string{`,"Dimensions":[`, `,"UaDimensions":[`} {
			dst = append(dst, key...)
			for i, d := range dims {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = strconv.AppendInt(dst, int64(d), 10)
			}
			dst = append(dst, ']')
		}
	}
	return dst
}

// appendUABits writes an unboxed scalar's Variant fields as
// appendUAVariant writes it boxed, without boxing it.
func appendUABits(dst []byte, s *collectors.Sample) []byte {
	dst = append(dst, `"UaType":`...)
	dst = strconv.AppendInt(dst, int64(s.Type), 10)
	dst = append(dst, `,"Value":`...)
	switch s.Type {
	case collectors.TypeInt64:
		return payload.AppendQuotedInt(dst, s.Int())
	case collectors.TypeUInt64:
		return payload.AppendQuotedUint(dst, s.Uint())
	case collectors.TypeStatusCode:
		if s.Bits == 0 {
			return append(dst, "{}"...)
		}
		return appendStatusCode(dst, collectors.StatusCode(s.Bits))
	}
	return payload.AppendBits(dst, s)
}

// goUAType is the built-in type that a Go value from the collectors is in,
// for a nested Variant, whose type they do not pass on; 0 for nil.
func goUAType(v any) int {
	switch v := v.(type) {
	case bool:
		return 1
	case int8:
		return 2
	case uint8:
		return 3
	case int16:
		return 4
	case uint16:
		return 5
	case int32:
		return 6
	case uint32:
		return 7
	case int64, int:
		return uaInt64
	case uint64, uint:
		return uaUInt64
	case float32:
		return uaFloat
	case float64:
		return uaDouble
	case string:
		return uaString
	case time.Time:
		return uaDateTime
	case []byte:
		return uaByteString
	case map[string]any, collectors.Structure:
		return uaExtensionObject
	case collectors.LocalizedText:
		return uaLocalizedText
	case collectors.StatusCode:
		return uaStatusCode
	case collectors.Typed:
		if t, ok := uaType(v.Type); ok {
			return t
		}
		return 0
	case collectors.Enum:
		return uaInt32
	case []any:
		t := 0
		for _, e := range v {
			if et := goUAType(e); et != 0 {
				if t != 0 && et != t {
					return uaVariant // mixed elements: an array of Variants
				}
				t = et
			}
		}
		return cmp.Or(t, uaVariant)
	}
	return 0
}

// typeFits reports whether v (a scalar or a one-dimensional array) holds
// what the built-in type t says, so that UaType never lies.
func typeFits(t int, v any) bool {
	if arr, ok := v.([]any); ok {
		for _, e := range arr {
			if e != nil && !scalarFits(t, e) {
				return false
			}
		}
		return true
	}
	return v == nil || scalarFits(t, v)
}

func scalarFits(t int, v any) bool {
	switch t {
	case uaVariant:
		return true
	case uaDataValue, uaDiagnosticInfo:
		_, ok := v.(map[string]any)
		return ok
	case uaExtensionObject:
		switch v.(type) {
		case map[string]any, collectors.Structure:
			return true
		}
		return false
	}
	switch v := v.(type) {
	case bool:
		return t == uaBoolean
	case int8, uint8, int16, uint16, int32, uint32:
		return t >= 2 && t <= 7
	case int64, uint64, int, uint:
		return t == uaInt64 || t == uaUInt64
	case float32, float64:
		return t == uaFloat || t == uaDouble
	case string:
		return t == uaString || t == 14 || t >= 16 && t <= 18 || t == uaQualifiedName || t == uaLocalizedText
	case time.Time:
		return t == uaDateTime
	case []byte:
		return t == uaByteString
	case collectors.LocalizedText:
		return t == uaLocalizedText
	case collectors.StatusCode:
		return t == uaStatusCode
	case collectors.Typed:
		tt, ok := uaType(v.Type)
		return ok && tt == t
	case collectors.Enum:
		return t == uaInt32
	}
	return false
}

// appendUAValue writes v, a scalar or an array of scalars of built-in
// type t, in Part 6 (v1.05.04) JSON: Int64 and UInt64 as strings; NaN and
// ±Infinity as "NaN", "Infinity", "-Infinity"; ByteString base64; StatusCode
// {"Code","Symbol"}; QualifiedName "<ns index>:<name>"; LocalizedText
// {"Locale","Text"}; an enumeration field its Int32; a collectors.Typed in
// the form of its type; an ExtensionObject {"UaTypeId","UaBody"} (UaEncoding 1 or 2 for
// a body the agent could not decode); a nested DataValue or Variant with its
// own UaType. A null array element is null, a null DateTime element
// DateTime.MinValue.
func appendUAValue(dst []byte, v any, t int) []byte {
	switch v := v.(type) {
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			if e == nil && t == uaDateTime {
				dst = append(dst, uaMinDateTime...)
				continue
			}
			dst = appendUAValue(dst, e, t)
		}
		return append(dst, ']')
	case nil:
		return append(dst, "null"...)
	case int64:
		return payload.AppendQuotedInt(dst, v)
	case uint64:
		return payload.AppendQuotedUint(dst, v)
	case int:
		return payload.AppendQuotedInt(dst, int64(v))
	case uint:
		return payload.AppendQuotedUint(dst, uint64(v))
	case string:
		if t == uaLocalizedText {
			dst = append(dst, `{"Text":`...)
			dst = payload.AppendString(dst, v)
			return append(dst, '}')
		}
	case collectors.StatusCode:
		if t != uaVariant {
			if v == 0 {
				return append(dst, "{}"...)
			}
			return appendStatusCode(dst, v)
		}
	case collectors.Structure:
		return appendUAStructure(dst, v)
	case collectors.LocalizedText:
		if t != uaVariant {
			return appendUALocalizedText(dst, v)
		}
	case collectors.Typed:
		if t != uaVariant {
			if tt, ok := uaType(v.Type); ok {
				t = tt
			}
			if v.Value == nil && t == uaDateTime {
				return append(dst, uaMinDateTime...)
			}
			return appendUAValue(dst, v.Value, t)
		}
	case collectors.Enum:
		if t != uaVariant {
			return strconv.AppendInt(dst, int64(v.Value), 10)
		}
	case map[string]any:
		switch t {
		case uaExtensionObject:
			return appendUAExtensionObject(dst, v)
		case uaDataValue:
			return appendUANestedDataValue(dst, v)
		}
	}
	if t == uaVariant {
		dst = append(dst, '{')
		dst = appendUAVariant(dst, collectors.TypeNull, v)
		return append(dst, '}')
	}
	return payload.AppendValue(dst, v)
}

// appendUALocalizedText writes {"Locale":…,"Text":…} (Part 6, 5.4.2.14),
// without a Locale the server did not send.
func appendUALocalizedText(dst []byte, lt collectors.LocalizedText) []byte {
	dst = append(dst, '{')
	if lt.Locale != "" {
		dst = append(dst, `"Locale":`...)
		dst = payload.AppendString(dst, lt.Locale)
		dst = append(dst, ',')
	}
	dst = append(dst, `"Text":`...)
	dst = payload.AppendString(dst, lt.Text)
	return append(dst, '}')
}

// appendUAStructure writes a structure whose DataType the collector knows
// as an ExtensionObject (a Variant's value, an array element, a field of an
// abstract type): {"UaTypeId":"<DataType node id>","UaBody":{fields}}.
func appendUAStructure(dst []byte, st collectors.Structure) []byte {
	dst = append(dst, '{')
	if st.TypeID != "" {
		dst = append(dst, `"UaTypeId":`...)
		dst = payload.AppendString(dst, st.TypeID)
		dst = append(dst, ',')
	}
	dst = append(dst, `"UaBody":`...)
	dst = appendUAStructureBody(dst, st)
	return append(dst, '}')
}

// appendUAStructureBody writes a structure's fields in the DataType's
// order (Part 6, 5.4.6): {"Name":value,…}. A field of a structured
// DataType is its own body, not an ExtensionObject.
func appendUAStructureBody(dst []byte, st collectors.Structure) []byte {
	dst = append(dst, '{')
	for i, f := range st.Fields {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = payload.AppendString(dst, f.Name)
		dst = append(dst, ':')
		dst = appendUAFieldValue(dst, f.Value)
	}
	return append(dst, '}')
}

// appendUAFieldValue writes a structure field: its value in the form of
// the built-in type its Go value has (a field is not a Variant). A nested
// structure is its body; a field of an abstract type comes as
// collectors.Typed: "ExtensionObject" with UaTypeId, "Variant" with UaType.
func appendUAFieldValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case collectors.Structure:
		return appendUAStructureBody(dst, x)
	case collectors.Typed:
		switch x.Type {
		case collectors.TypeExtensionObject:
			if st, ok := x.Value.(collectors.Structure); ok {
				return appendUAStructure(dst, st)
			}
			if x.Value == nil {
				return append(dst, "null"...)
			}
			return appendUAValue(dst, x.Value, uaExtensionObject)
		case collectors.TypeVariant:
			dst = append(dst, '{')
			dst = appendUAVariant(dst, collectors.TypeNull, x.Value)
			return append(dst, '}')
		}
	case []any:
		if slices.ContainsFunc(x, func(e any) bool { _, ok := e.(collectors.Structure); return ok }) {
			dst = append(dst, '[')
			for i, e := range x {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = appendUAFieldValue(dst, e)
			}
			return append(dst, ']')
		}
	}
	t := goUAType(v)
	if t == 0 {
		return append(dst, "null"...)
	}
	return appendUAValue(dst, v, t)
}

// appendUAExtensionObject writes an ExtensionObject from the collectors'
// map: one whose body they could not decode ({"type_id","encoding","body"})
// keeps its type id and body (UaEncoding 1 for binary, base64; 2 for XML);
// a decoded one, whose DataType they do not pass on, has its fields as
// UaBody without UaTypeId.
func appendUAExtensionObject(dst []byte, m map[string]any) []byte {
	typeID, hasID := m["type_id"].(string)
	enc, hasEnc := m["encoding"].(string)
	if hasID && hasEnc && len(m) == 3 {
		dst = append(dst, `{"UaTypeId":`...)
		dst = payload.AppendString(dst, typeID)
		switch enc {
		case "binary":
			dst = append(dst, `,"UaEncoding":1`...)
		case "xml":
			dst = append(dst, `,"UaEncoding":2`...)
		}
		if body := m["body"]; body != nil {
			dst = append(dst, `,"UaBody":`...)
			dst = payload.AppendValue(dst, body)
		}
		return append(dst, '}')
	}
	dst = append(dst, `{"UaBody":{`...)
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = payload.AppendString(dst, k)
		dst = append(dst, ':')
		dst = appendUAFieldValue(dst, m[k])
	}
	return append(dst, "}}"...)
}

// appendUANestedDataValue writes a DataValue inside a Variant, from the
// collectors' map {"value","type","status","status_code","source_time","server_time"}
// (its status's name is derived from status_code).
func appendUANestedDataValue(dst []byte, m map[string]any) []byte {
	var s collectors.Sample
	s.Value = m["value"]
	s.Type, _ = m["type"].(collectors.Type)
	code, _ := m["status_code"].(uint32)
	s.StatusCode = collectors.StatusCode(code)
	s.SourceTime, _ = m["source_time"].(time.Time)
	s.ServerTime, _ = m["server_time"].(time.Time)
	return appendUADataValue(dst, &s)
}

// flatten turns a matrix (nested []any, outer dimension first, every row of
// a level the same length) into its elements in row-major order and its
// dimensions, as Part 6 (5.2.2.16, 5.4.2.17) wants. matrix is false for a
// one-dimensional array or a ragged one.
func flatten(arr []any) (dims []int, flat []any, matrix bool) {
	if len(arr) == 0 {
		return nil, nil, false
	}
	if _, ok := arr[0].([]any); !ok {
		return nil, nil, false
	}
	dims = []int{len(arr)}
	level := arr
	for {
		first, ok := level[0].([]any)
		if !ok {
			break
		}
		n := len(first)
		var next []any
		for _, e := range level {
			row, ok := e.([]any)
			if !ok || len(row) != n {
				return nil, nil, false
			}
			next = append(next, row...)
		}
		dims = append(dims, n)
		level = next
		if n == 0 {
			break
		}
	}
	for _, e := range level {
		if _, nested := e.([]any); nested {
			return nil, nil, false
		}
	}
	return dims, level, true
}

// Built-in type ids (Part 6, Table 1) that the encoder treats apart.
const (
	uaBoolean         = 1
	uaInt32           = 6
	uaInt64           = 8
	uaUInt64          = 9
	uaFloat           = 10
	uaDouble          = 11
	uaString          = 12
	uaDateTime        = 13
	uaByteString      = 15
	uaStatusCode      = 19
	uaQualifiedName   = 20
	uaLocalizedText   = 21
	uaExtensionObject = 22
	uaDataValue       = 23
	uaVariant         = 24
	uaDiagnosticInfo  = 25
)
