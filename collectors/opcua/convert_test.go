package opcua

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
)

var (
	ts1 = time.Date(2024, time.May, 6, 7, 8, 9, 123456700, time.UTC) // DateTime has 100 ns resolution
	ts2 = time.Date(2025, time.December, 31, 23, 59, 59, 0, time.UTC)
)

const guidText = "72962B91-FA75-4AE6-8D28-B404DC7DAF63"

// rawTypeID is registered as a rawBody type for the whole test binary.
var rawTypeID = ua.NewStringNodeID(2, "tagbridge.test.RawBody")

func TestMain(m *testing.M) {
	if err := registerRawExtensionObject(rawTypeID); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

type variantCase struct {
	name     string
	in       any // *ua.Variant to encode, or []byte as on the wire
	wantType string
	want     any
}

// variantCases cover every built-in type as scalar and array. The inputs are
// what gopcua encodes; the tests decode them again so that convertValue sees
// what the wire gives.
func variantCases(tb testing.TB) []variantCase {
	tb.Helper()
	v := func(x any) *ua.Variant {
		tb.Helper()
		va, err := ua.NewVariant(x)
		if err != nil {
			tb.Fatalf("NewVariant(%#v): %v", x, err)
		}
		return va
	}
	dv := func(d *ua.DataValue) *ua.DataValue { d.UpdateMask(); return d }
	xml := ua.XMLElement("<T>1</T>")

	return []variantCase{
		{"Null", v(nil), "Null", nil},

		{"Boolean", v(true), "Boolean", true},
		{"Boolean array", v([]bool{true, false}), "Boolean", []any{true, false}},
		{"SByte", v(int8(-128)), "SByte", int8(-128)},
		{"SByte array", v([]int8{-1, 127}), "SByte", []any{int8(-1), int8(127)}},
		{"Byte", v(uint8(255)), "Byte", uint8(255)},
		{"Byte array is numbers", v(ua.ByteArray{0, 1, 255}), "Byte", []any{uint8(0), uint8(1), uint8(255)}},
		{"Int16", v(int16(math.MinInt16)), "Int16", int16(math.MinInt16)},
		{"Int16 array", v([]int16{1, -2}), "Int16", []any{int16(1), int16(-2)}},
		{"UInt16", v(uint16(math.MaxUint16)), "UInt16", uint16(math.MaxUint16)},
		{"UInt16 array", v([]uint16{1, 2}), "UInt16", []any{uint16(1), uint16(2)}},
		{"Int32", v(int32(-7)), "Int32", int32(-7)},
		{"Int32 array", v([]int32{1, 2, 3}), "Int32", []any{int32(1), int32(2), int32(3)}},
		{"Int32 empty array", v([]int32{}), "Int32", []any{}},
		{"Int32 null array", v([]int32(nil)), "Int32", nil},
		{"UInt32", v(uint32(math.MaxUint32)), "UInt32", uint32(math.MaxUint32)},
		{"UInt32 array", v([]uint32{0, math.MaxUint32}), "UInt32", []any{uint32(0), uint32(math.MaxUint32)}},
		{"Int64", v(int64(math.MinInt64)), "Int64", int64(math.MinInt64)},
		{"Int64 array", v([]int64{math.MaxInt64}), "Int64", []any{int64(math.MaxInt64)}},
		{"UInt64", v(uint64(math.MaxUint64)), "UInt64", uint64(math.MaxUint64)},
		{"UInt64 array", v([]uint64{math.MaxUint64}), "UInt64", []any{uint64(math.MaxUint64)}},
		{"Float", v(float32(1.5)), "Float", float32(1.5)},
		{"Float array", v([]float32{-0.25, 3}), "Float", []any{float32(-0.25), float32(3)}},
		{"Double", v(2.25), "Double", 2.25},
		{"Double NaN passes through", v(math.NaN()), "Double", math.NaN()},
		{"Double +Inf passes through", v(math.Inf(1)), "Double", math.Inf(1)},
		{"Double array", v([]float64{1e300, -1}), "Double", []any{1e300, -1.0}},
		{"String", v("Grüße; \"x\""), "String", "Grüße; \"x\""},
		{"String empty", v(""), "String", ""},
		{"String array", v([]string{"a", ""}), "String", []any{"a", ""}},
		{"DateTime", v(ts1), "DateTime", ts1},
		{"DateTime non-UTC comes back UTC", v(ts2.In(time.FixedZone("CET", 3600))), "DateTime", ts2},
		{"DateTime null", v(time.Time{}), "DateTime", nil},
		{"DateTime array", v([]time.Time{ts1, {}}), "DateTime", []any{ts1, nil}},
		{"Guid", v(ua.NewGUID(guidText)), "Guid", guidText},
		{"Guid array", v([]*ua.GUID{ua.NewGUID(guidText)}), "Guid", []any{guidText}},
		{"ByteString", v([]byte{0, 1, 0xFF}), "ByteString", []byte{0, 1, 0xFF}},
		{"ByteString empty decodes as null", v([]byte{}), "ByteString", nil},
		// gopcua v0.9.1 cannot encode ByteString arrays (it writes no elements),
		// so these two come as bytes.
		{"ByteString array", []byte{0x8F, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF}, "ByteString", []any{[]byte{1}, nil}},
		{"XmlElement", v(xml), "XmlElement", "<T>1</T>"},
		{"XmlElement array", v([]ua.XMLElement{xml, ""}), "XmlElement", []any{"<T>1</T>", ""}},
		{"NodeId numeric", v(ua.NewNumericNodeID(0, 2258)), "NodeId", "i=2258"},
		{"NodeId four byte", v(ua.NewFourByteNodeID(3, 1001)), "NodeId", "ns=3;i=1001"},
		{"NodeId string", v(ua.NewStringNodeID(2, "Line1.Temp")), "NodeId", "ns=2;s=Line1.Temp"},
		{"NodeId guid", v(ua.NewGUIDNodeID(1, guidText)), "NodeId", "ns=1;g=" + guidText},
		{"NodeId opaque", v(ua.NewByteStringNodeID(4, []byte{1, 2, 0xFF})), "NodeId", "ns=4;b=AQL/"},
		{"NodeId array", v([]*ua.NodeID{ua.NewStringNodeID(0, "a"), ua.NewNumericNodeID(5, 7)}), "NodeId", []any{"s=a", "ns=5;i=7"}},
		{"ExpandedNodeId", v(ua.NewStringExpandedNodeID(2, "Temp")), "ExpandedNodeId", "ns=2;s=Temp"},
		{"ExpandedNodeId with URI", v(ua.NewExpandedNodeID(ua.NewStringNodeID(0, "Temp"), "urn:acme;plc", 0)),
			"ExpandedNodeId", "nsu=urn:acme%3Bplc;s=Temp"},
		{"ExpandedNodeId with server", v(ua.NewExpandedNodeID(ua.NewNumericNodeID(2, 5), "", 3)), "ExpandedNodeId", "svr=3;ns=2;i=5"},
		{"ExpandedNodeId array", v([]*ua.ExpandedNodeID{ua.NewNumericExpandedNodeID(0, 85)}), "ExpandedNodeId", []any{"i=85"}},
		{"StatusCode", v(ua.StatusBadNodeIDUnknown), "StatusCode", collectors.StatusCode(ua.StatusBadNodeIDUnknown)},
		{"StatusCode array", v([]ua.StatusCode{ua.StatusOK, ua.StatusUncertainLastUsableValue}), "StatusCode",
			[]any{collectors.StatusCode(0), collectors.StatusCode(ua.StatusUncertainLastUsableValue)}},
		{"QualifiedName", v(&ua.QualifiedName{NamespaceIndex: 2, Name: "Temp"}), "QualifiedName", "2:Temp"},
		{"QualifiedName ns 0", v(&ua.QualifiedName{Name: "Temp"}), "QualifiedName", "Temp"},
		{"QualifiedName array", v([]*ua.QualifiedName{{NamespaceIndex: 1, Name: "a"}}), "QualifiedName", []any{"1:a"}},
		{"LocalizedText", v(ua.NewLocalizedTextWithLocale("Hallo", "de-DE")), "LocalizedText", collectors.LocalizedText{Locale: "de-DE", Text: "Hallo"}},
		{"LocalizedText array", v([]*ua.LocalizedText{ua.NewLocalizedText("a"), ua.NewLocalizedText("")}), "LocalizedText", []any{collectors.LocalizedText{Text: "a"}, collectors.LocalizedText{}}},

		{"ExtensionObject known nested", v(ua.NewExtensionObject(&ua.ServerStatusDataType{
			StartTime:   ts1,
			CurrentTime: ts2,
			State:       ua.ServerStateShutdown,
			BuildInfo: &ua.BuildInfo{
				ProductURI: "urn:acme:plc", ManufacturerName: "ACME", ProductName: "PLC",
				SoftwareVersion: "1.2.3", BuildNumber: "42", BuildDate: ts1,
			},
			SecondsTillShutdown: 30,
			ShutdownReason:      ua.NewLocalizedText("maintenance"),
		})), "ExtensionObject", map[string]any{
			"StartTime":   ts1,
			"CurrentTime": ts2,
			"State":       uint32(ua.ServerStateShutdown),
			"BuildInfo": map[string]any{
				"ProductURI": "urn:acme:plc", "ManufacturerName": "ACME", "ProductName": "PLC",
				"SoftwareVersion": "1.2.3", "BuildNumber": "42", "BuildDate": ts1,
			},
			"SecondsTillShutdown": uint32(30),
			"ShutdownReason":      collectors.LocalizedText{Text: "maintenance"},
		}},
		{"ExtensionObject known with node id and name", v(ua.NewExtensionObject(&ua.ReadValueID{
			NodeID: ua.NewStringNodeID(2, "Temp"), AttributeID: ua.AttributeIDValue,
			DataEncoding: &ua.QualifiedName{Name: "Default Binary"},
		})), "ExtensionObject", map[string]any{
			"NodeID": "ns=2;s=Temp", "AttributeID": uint32(ua.AttributeIDValue), "IndexRange": "", "DataEncoding": "Default Binary",
		}},
		{"ExtensionObject known with variant inside", v(ua.NewExtensionObject(&ua.KeyValuePair{
			Key: &ua.QualifiedName{NamespaceIndex: 1, Name: "limit"}, Value: ua.MustVariant([]float64{1, 2}),
		})), "ExtensionObject", map[string]any{"Key": "1:limit", "Value": []any{1.0, 2.0}}},
		{"ExtensionObject array", v([]*ua.ExtensionObject{
			ua.NewExtensionObject(&ua.Range{Low: -10, High: 10}),
			ua.NewExtensionObject(&ua.EUInformation{UnitID: 4408652, DisplayName: ua.NewLocalizedText("°C"), Description: ua.NewLocalizedText("")}),
		}), "ExtensionObject", []any{
			map[string]any{"Low": -10.0, "High": 10.0},
			map[string]any{"NamespaceURI": "", "UnitID": int32(4408652), "DisplayName": collectors.LocalizedText{Text: "°C"}, "Description": collectors.LocalizedText{}},
		}},
		{"ExtensionObject unknown type: gopcua drops the body", v(&ua.ExtensionObject{
			EncodingMask: ua.ExtensionObjectBinary,
			TypeID:       ua.NewNumericExpandedNodeID(2, 5001),
			Value:        &rawBody{1, 2, 3},
		}), "ExtensionObject", map[string]any{"type_id": "ns=2;i=5001", "encoding": "binary", "body": nil}},
		{"ExtensionObject raw body of a registered id", v(&ua.ExtensionObject{
			EncodingMask: ua.ExtensionObjectBinary,
			TypeID:       &ua.ExpandedNodeID{NodeID: rawTypeID},
			Value:        &rawBody{1, 2, 3},
		}), "ExtensionObject", map[string]any{"type_id": "ns=2;s=tagbridge.test.RawBody", "encoding": "binary", "body": []byte{1, 2, 3}}},
		{"ExtensionObject XML body", v(&ua.ExtensionObject{
			EncodingMask: ua.ExtensionObjectXML,
			TypeID:       ua.NewStringExpandedNodeID(2, "XmlType"),
			Value:        &xml,
		}), "ExtensionObject", map[string]any{"type_id": "ns=2;s=XmlType", "encoding": "xml", "body": "<T>1</T>"}},
		{"ExtensionObject empty", v(&ua.ExtensionObject{TypeID: ua.NewTwoByteExpandedNodeID(0)}),
			"ExtensionObject", map[string]any{"type_id": "i=0", "encoding": "none", "body": nil}},

		{"DataValue", v(dv(&ua.DataValue{
			Value: ua.MustVariant(int32(5)), Status: ua.StatusUncertainLastUsableValue,
			SourceTimestamp: ts1, ServerTimestamp: ts2, ServerPicoseconds: 250,
		})), "DataValue", map[string]any{
			"value": int32(5), "type": collectors.TypeInt32, "status": "UncertainLastUsableValue", "status_code": uint32(0x40900000),
			"source_time": ts1, "server_time": ts2.Add(2 * time.Nanosecond),
		}},
		{"DataValue value only", v(dv(&ua.DataValue{Value: ua.MustVariant("x")})), "DataValue",
			map[string]any{"value": "x", "type": collectors.TypeString, "status": "Good", "status_code": uint32(0)}},
		{"DataValue array", v([]*ua.DataValue{dv(&ua.DataValue{Status: ua.StatusBadCommunicationError})}), "DataValue", []any{
			map[string]any{"value": nil, "type": collectors.TypeNull, "status": "BadCommunicationError", "status_code": uint32(0x80050000)},
		}},
		{"Variant", v(ua.MustVariant(1.5)), "Variant", 1.5},
		{"Variant of array", v(ua.MustVariant([]string{"a"})), "Variant", []any{"a"}},
		{"Variant array", v([]*ua.Variant{ua.MustVariant(int32(1)), ua.MustVariant("x"), ua.MustVariant(nil)}), "Variant",
			[]any{int32(1), "x", nil}},
		{"Variant array of string-formed types", v([]*ua.Variant{ua.MustVariant(ua.NewStringNodeID(2, "T")), ua.MustVariant(&ua.QualifiedName{NamespaceIndex: 1, Name: "Q"}),
			ua.MustVariant(ua.StatusBadTimeout), ua.MustVariant(time.Time{}), ua.MustVariant(ua.NewLocalizedTextWithLocale("x", "en"))}), "Variant",
			[]any{collectors.Typed{Type: collectors.TypeNodeID, Value: "ns=2;s=T"}, collectors.Typed{Type: collectors.TypeQualifiedName, Value: "1:Q"},
				collectors.StatusCode(ua.StatusBadTimeout), collectors.Typed{Type: collectors.TypeDateTime}, collectors.LocalizedText{Locale: "en", Text: "x"}}},
		{"DiagnosticInfo", v(&ua.DiagnosticInfo{
			EncodingMask: ua.DiagnosticInfoSymbolicID | ua.DiagnosticInfoAdditionalInfo |
				ua.DiagnosticInfoInnerStatusCode | ua.DiagnosticInfoInnerDiagnosticInfo,
			SymbolicID: 3, AdditionalInfo: "sensor open", InnerStatusCode: ua.StatusBadTimeout,
			InnerDiagnosticInfo: &ua.DiagnosticInfo{EncodingMask: ua.DiagnosticInfoLocale, Locale: 1},
		}), "DiagnosticInfo", map[string]any{
			"symbolic_id": int32(3), "additional_info": "sensor open",
			"inner_status": "BadTimeout", "inner_status_code": uint32(0x800A0000),
			"inner_diagnostic_info": map[string]any{"locale": int32(1)},
		}},
		{"DiagnosticInfo array", v([]*ua.DiagnosticInfo{{EncodingMask: ua.DiagnosticInfoNamespaceURI, NamespaceURI: 2}}), "DiagnosticInfo",
			[]any{map[string]any{"namespace_uri": int32(2)}}},

		{"Int32 matrix 2x3", v([][]int32{{1, 2, 3}, {4, 5, 6}}), "Int32", []any{
			[]any{int32(1), int32(2), int32(3)},
			[]any{int32(4), int32(5), int32(6)},
		}},
		{"Double matrix 2x1x2", v([][][]float64{{{1, 2}}, {{3, 4}}}), "Double", []any{
			[]any{[]any{1.0, 2.0}},
			[]any{[]any{3.0, 4.0}},
		}},
		{"ByteString matrix 1x2", []byte{0xCF, 2, 0, 0, 0, 1, 0, 0, 0, 1, 2, 0, 0, 0, 2, 3, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0},
			"ByteString", []any{[]any{[]byte{1}, []byte{2, 3}}}},
		{"Byte matrix 2x2 is numbers", v([]ua.ByteArray{{1, 2}, {3, 4}}), "Byte", []any{
			[]any{uint8(1), uint8(2)},
			[]any{uint8(3), uint8(4)},
		}},
		{"NodeId matrix 2x1", v([][]*ua.NodeID{{ua.NewNumericNodeID(1, 1)}, {ua.NewNumericNodeID(1, 2)}}), "NodeId", []any{
			[]any{"ns=1;i=1"}, []any{"ns=1;i=2"},
		}},
	}
}

// encoded returns the wire bytes of a case input.
func encoded(t testing.TB, in any) []byte {
	t.Helper()
	if b, ok := in.([]byte); ok {
		return b
	}
	b, err := in.(*ua.Variant).Encode()
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b
}

// wire encodes in as gopcua does, unless it is bytes already, and decodes it.
func wire(t testing.TB, in any) *ua.Variant {
	t.Helper()
	b := encoded(t, in)
	out := new(ua.Variant)
	n, err := out.Decode(b)
	if err != nil {
		t.Fatalf("decode % x: %v", b, err)
	}
	if n != len(b) {
		t.Fatalf("decode read %d of %d bytes", n, len(b))
	}
	return out
}

func TestConvertValue(t *testing.T) {
	for _, tc := range variantCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			got, typ := convertValue(wire(t, tc.in))
			if typ.String() != tc.wantType {
				t.Errorf("type = %q, want %q", typ, tc.wantType)
			}
			if !sameValue(got, tc.want) {
				t.Errorf("value = %#v\nwant    %#v", got, tc.want)
			}
			checkJSONFriendly(t, "value", got)
		})
	}
}

func TestConvertValueMatrixDimensions(t *testing.T) {
	in := wire(t, ua.MustVariant([][]int32{{1, 2, 3}, {4, 5, 6}}))
	if got, want := in.ArrayDimensions(), []int32{2, 3}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ArrayDimensions = %v, want %v", got, want)
	}
	got, _ := convertValue(in)
	rows, ok := got.([]any)
	if !ok || len(rows) != 2 || len(rows[0].([]any)) != 3 {
		t.Fatalf("value = %#v, want 2 rows of 3", got)
	}
}

// TestConvertValueByteStringIsCopied: gopcua's ByteString aliases the
// received message; the sample must not keep that alive or see it change.
func TestConvertValueByteStringIsCopied(t *testing.T) {
	b, err := ua.MustVariant([]byte{1, 2, 3}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	v := new(ua.Variant)
	if _, err := v.Decode(b); err != nil {
		t.Fatal(err)
	}
	got, _ := convertValue(v)
	clear(b)
	if want := []byte{1, 2, 3}; !sameValue(got, want) {
		t.Fatalf("value = %v after the message buffer changed, want %v", got, want)
	}
}

// TestConvertValueAfterDecodeError feeds what gopcua leaves in a Variant when
// decoding fails half-way: calling String on these would panic.
func TestConvertValueAfterDecodeError(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		wantType string
		want     any
	}{
		{"NodeId with invalid type", []byte{byte(ua.TypeIDNodeID), 0x0F}, "NodeId", "<invalid node id type 15>"},
		{"Guid cut short", []byte{byte(ua.TypeIDGUID), 1, 2, 3, 4}, "Guid", "<invalid guid 04030201-0000-0000->"},
		{"NodeId with Guid cut short", []byte{byte(ua.TypeIDNodeID), 0x04, 1, 0, 9, 9}, "NodeId", "ns=1;g=<invalid guid>"},
		{"ExtensionObject body cut short", []byte{byte(ua.TypeIDExtensionObject), 0x01, 0x00, 0x2E, 0x01, ua.ExtensionObjectBinary, 9, 0, 0, 0, 1}, "ExtensionObject",
			map[string]any{"type_id": "i=302", "encoding": "binary", "body": nil}},
		{"unknown type id", []byte{30}, "TypeId(30)", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := new(ua.Variant)
			if _, err := v.Decode(tc.in); err == nil {
				t.Fatalf("decode % x: no error", tc.in)
			}
			got, typ := convertValue(v)
			if typ.String() != tc.wantType || !sameValue(got, tc.want) {
				t.Errorf("got %#v, %q; want %#v, %q", got, typ, tc.want, tc.wantType)
			}
			checkJSONFriendly(t, "value", got)
		})
	}
}

type cyclic struct {
	Name string
	Next *cyclic
}

type opaque struct{ secret int }

// TestConvertValueHandBuilt covers values that no decoder produces but a
// caller might build: nil pointers, cycles, Go types JSON cannot carry.
func TestConvertValueHandBuilt(t *testing.T) {
	loop := &cyclic{Name: "a"}
	loop.Next = loop
	deep := ua.MustVariant(int32(1))
	for range 2 * maxDepth {
		deep = ua.MustVariant(deep)
	}
	eo := func(v any) *ua.Variant {
		return ua.MustVariant(&ua.ExtensionObject{EncodingMask: ua.ExtensionObjectBinary, TypeID: ua.NewNumericExpandedNodeID(2, 1), Value: v})
	}

	tests := []struct {
		name     string
		in       *ua.Variant
		wantType string
		want     any // compared when not nil
	}{
		{"nil variant", nil, "Null", nil},
		{"zero variant", &ua.Variant{}, "Null", nil},
		{"nil NodeId", ua.MustVariant((*ua.NodeID)(nil)), "NodeId", nil},
		{"nil ExpandedNodeId", ua.MustVariant((*ua.ExpandedNodeID)(nil)), "ExpandedNodeId", nil},
		{"ExpandedNodeId without NodeId", ua.MustVariant(&ua.ExpandedNodeID{}), "ExpandedNodeId", nil},
		{"nil Guid", ua.MustVariant((*ua.GUID)(nil)), "Guid", nil},
		{"nil LocalizedText", ua.MustVariant((*ua.LocalizedText)(nil)), "LocalizedText", nil},
		{"nil QualifiedName", ua.MustVariant((*ua.QualifiedName)(nil)), "QualifiedName", nil},
		{"nil DataValue", ua.MustVariant((*ua.DataValue)(nil)), "DataValue", nil},
		{"nil DiagnosticInfo", ua.MustVariant((*ua.DiagnosticInfo)(nil)), "DiagnosticInfo", nil},
		{"nil ExtensionObject", ua.MustVariant((*ua.ExtensionObject)(nil)), "ExtensionObject", nil},
		{"nil inner Variant", ua.MustVariant((*ua.Variant)(nil)), "Variant", nil},
		{"DataValue with value bit but nil value", ua.MustVariant(&ua.DataValue{EncodingMask: ua.DataValueValue}), "DataValue",
			map[string]any{"value": nil, "type": collectors.TypeNull, "status": "Good", "status_code": uint32(0)}},
		{"ExtensionObject without type id", ua.MustVariant(&ua.ExtensionObject{}), "ExtensionObject",
			map[string]any{"type_id": nil, "encoding": "none", "body": nil}},
		{"ExtensionObject with raw []byte", eo([]byte{7}), "ExtensionObject",
			map[string]any{"type_id": "ns=2;i=1", "encoding": "binary", "body": []byte{7}}},
		{"ExtensionObject with nil struct pointer", eo((*ua.Range)(nil)), "ExtensionObject", nil},
		{"ExtensionObject with odd Go types", eo(&struct {
			C complex128
			M map[int]string
			A [2]uint8
			I any
			P *int
			u int
		}{C: 1 + 2i, M: map[int]string{1: "x"}, A: [2]uint8{1, 2}, I: ua.StatusBadTimeout}), "ExtensionObject",
			map[string]any{"C": "(1+2i)", "M": map[string]any{"1": "x"}, "A": []byte{1, 2}, "I": collectors.StatusCode(ua.StatusBadTimeout), "P": nil}},
		{"ExtensionObject with nothing exported", eo(&opaque{secret: 1}), "ExtensionObject", "{1}"},
		{"ExtensionObject cycle", eo(loop), "ExtensionObject", nil},
		{"Variant nesting beyond maxDepth", deep, "Variant", tooDeep},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, typ := convertValue(tc.in)
			if typ.String() != tc.wantType {
				t.Errorf("type = %q, want %q", typ, tc.wantType)
			}
			if tc.want != nil && !sameValue(got, tc.want) {
				t.Errorf("value = %#v\nwant    %#v", got, tc.want)
			}
			checkJSONFriendly(t, "value", got)
			if _, err := json.Marshal(got); err != nil {
				t.Errorf("json: %v", err)
			}
		})
	}

}

// TestConvertValueScalarAllocs guards the hot path: a scalar that gopcua
// already boxed comes back without a new allocation.
func TestConvertValueScalarAllocs(t *testing.T) {
	for _, x := range []any{3.5, float32(1), int32(100000), uint64(1 << 40), true, "text", ts1} {
		v := wire(t, ua.MustVariant(x))
		if n := testing.AllocsPerRun(100, func() { convertValue(v) }); n != 0 {
			t.Errorf("%T: %v allocations per conversion, want 0", x, n)
		}
	}
}

func BenchmarkConvertValue(b *testing.B) {
	for _, x := range []any{3.5, int32(100000), "text", ts1, []float64{1, 2, 3, 4}} {
		v := wire(b, ua.MustVariant(x))
		b.Run(reflect.TypeOf(x).String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				convertValue(v)
			}
		})
	}
}

// BenchmarkSampleFrom is the collector's share of the steady-state path:
// one notification item (a DataValue as gopcua decodes it) to a Sample.
func BenchmarkSampleFrom(b *testing.B) {
	dv := &ua.DataValue{
		EncodingMask:    ua.DataValueValue | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
		Value:           wire(b, ua.MustVariant(int32(100000))),
		SourceTimestamp: ts1,
		ServerTimestamp: ts1,
	}
	b.ReportAllocs()
	for b.Loop() {
		sampleFrom("plc00", "int32_0001", "ns=1;s=Int32.0001", dv)
	}
}

func TestStatusName(t *testing.T) {
	tests := []struct {
		name string
		code ua.StatusCode
		want string
	}{
		{"Good", ua.StatusOK, "Good"},
		{"Uncertain", ua.StatusUncertain, "Uncertain"},
		{"Bad", ua.StatusBad, "Bad"},
		{"UncertainLastUsableValue", ua.StatusUncertainLastUsableValue, "UncertainLastUsableValue"},
		{"BadCommunicationError", ua.StatusBadCommunicationError, "BadCommunicationError"},
		{"BadNodeIdUnknown spelled as in the spec", ua.StatusBadNodeIDUnknown, "BadNodeIdUnknown"},
		{"Uri spelled as in the spec", ua.StatusBadCertificateURIInvalid, "BadCertificateUriInvalid"},
		{"Url spelled as in the spec", ua.StatusBadDiscoveryURLMissing, "BadDiscoveryUrlMissing"},
		{"Tcp spelled as in the spec", ua.StatusBadTCPServerTooBusy, "BadTcpServerTooBusy"},
		{"GoodOverload", ua.StatusGoodOverload, "GoodOverload"},
		{"Good with overflow info bits", 0x00000480, "Good"},
		{"Bad with structure changed bit", ua.StatusBadCommunicationError | 0x8000, "BadCommunicationError"},
		{"Uncertain with info bits", ua.StatusUncertainLastUsableValue | 0x0400, "UncertainLastUsableValue"},
		{"unknown Bad", 0x80FF0000, "Bad (0x80FF0000)"},
		{"unknown Bad with info bits", 0x80FF0480, "Bad (0x80FF0480)"},
		{"unknown Uncertain", 0x40FF0000, "Uncertain (0x40FF0000)"},
		{"unknown Good", 0x00FF0000, "Good (0x00FF0000)"},
		{"reserved severity counts as Bad", 0xC0000000, "Bad (0xC0000000)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := statusName(tc.code); got != tc.want {
				t.Errorf("statusName(0x%08X) = %q, want %q", uint32(tc.code), got, tc.want)
			}
		})
	}
}

// TestStatusNamesMatchSpec compares every name with StatusCode.csv, the
// OPC Foundation's list that gopcua ships in its schema directory.
func TestStatusNamesMatchSpec(t *testing.T) {
	out, err := exec.CommandContext(t.Context(), "go", "list", "-m", "-f", "{{.Dir}}", "github.com/gopcua/opcua").Output()
	if err != nil {
		t.Skipf("locate gopcua: %v", err)
	}
	f, err := os.Open(filepath.Join(strings.TrimSpace(string(out)), "schema", "StatusCode.csv"))
	if err != nil {
		t.Skipf("StatusCode.csv: %v", err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		code, err := strconv.ParseUint(strings.TrimPrefix(row[1], "0x"), 16, 32)
		if err != nil {
			t.Fatalf("row %v: %v", row, err)
		}
		if got := statusName(ua.StatusCode(code)); got != row[0] {
			t.Errorf("statusName(%s) = %q, want %q", row[1], got, row[0])
		}
	}
	if len(rows) < 200 {
		t.Errorf("only %d status codes in StatusCode.csv", len(rows))
	}
}

func TestSampleFrom(t *testing.T) {
	tests := []struct {
		name string
		in   *ua.DataValue
		raw  bool // pass as built, not through encode and decode
		want collectors.Sample
	}{
		{
			name: "nil DataValue",
			in:   nil, raw: true,
			want: collectors.Sample{Type: collectors.TypeNull},
		},
		{
			name: "everything sent",
			in: &ua.DataValue{
				EncodingMask: ua.DataValueValue | ua.DataValueStatusCode | ua.DataValueSourceTimestamp |
					ua.DataValueSourcePicoseconds | ua.DataValueServerTimestamp,
				Value: ua.MustVariant(21.5), Status: ua.StatusUncertainLastUsableValue,
				SourceTimestamp: ts1, SourcePicoseconds: 9999, ServerTimestamp: ts2,
			},
			want: collectors.Sample{
				Value: 21.5, Type: collectors.TypeDouble, StatusCode: 0x40900000,
				SourceTime: ts1.Add(99 * time.Nanosecond), ServerTime: ts2,
			},
		},
		{
			name: "value only: status Good, no times",
			in:   &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(7))},
			want: collectors.Sample{Value: int32(7), Type: collectors.TypeInt32},
		},
		{
			name: "bad status without value",
			in:   &ua.DataValue{EncodingMask: ua.DataValueStatusCode | ua.DataValueServerTimestamp, Status: ua.StatusBadCommunicationError, ServerTimestamp: ts2},
			want: collectors.Sample{Type: collectors.TypeNull, StatusCode: 0x80050000, ServerTime: ts2},
		},
		{
			name: "status with info bits keeps the code",
			in:   &ua.DataValue{EncodingMask: ua.DataValueValue | ua.DataValueStatusCode, Value: ua.MustVariant(true), Status: 0x00000480},
			want: collectors.Sample{Value: true, Type: collectors.TypeBoolean, StatusCode: 0x480},
		},
		{
			name: "timestamp flagged but null",
			in:   &ua.DataValue{EncodingMask: ua.DataValueValue | ua.DataValueSourceTimestamp, Value: ua.MustVariant("x")},
			want: collectors.Sample{Value: "x", Type: collectors.TypeString},
		},
		{
			name: "matrix value",
			in:   &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant([][]int32{{1}, {2}})},
			want: collectors.Sample{Value: []any{[]any{int32(1)}, []any{int32(2)}}, Type: collectors.TypeInt32},
		},
		{
			name: "the mask decides, not the fields",
			in: &ua.DataValue{
				EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(1)),
				Status: ua.StatusBadTimeout, SourceTimestamp: ts1, ServerTimestamp: ts2,
			},
			raw:  true,
			want: collectors.Sample{Value: int32(1), Type: collectors.TypeInt32},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dv := tc.in
			if !tc.raw {
				dv = wireDataValue(t, dv)
			}
			got := sampleFrom("plc1", "temp", "ns=2;s=Temp", dv)
			want := tc.want
			want.PLC, want.Tag, want.Node = "plc1", "temp", "ns=2;s=Temp"
			if !sameValue(got.Value, want.Value) {
				t.Errorf("Value = %#v, want %#v", got.Value, want.Value)
			}
			got.Value, want.Value = nil, nil
			if got.SourceTime.Location() != time.UTC || got.ServerTime.Location() != time.UTC {
				t.Errorf("times not in UTC: %v, %v", got.SourceTime, got.ServerTime)
			}
			if !got.SourceTime.Equal(want.SourceTime) || !got.ServerTime.Equal(want.ServerTime) {
				t.Errorf("times = %v, %v; want %v, %v", got.SourceTime, got.ServerTime, want.SourceTime, want.ServerTime)
			}
			got.SourceTime, got.ServerTime, want.SourceTime, want.ServerTime = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if got != want {
				t.Errorf("sample = %+v\nwant     %+v", got, want)
			}
		})
	}
}

func wireDataValue(t *testing.T, d *ua.DataValue) *ua.DataValue {
	t.Helper()
	b, err := d.Encode()
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	out := new(ua.DataValue)
	if n, err := out.Decode(b); err != nil || n != len(b) {
		t.Fatalf("decode % x: %d of %d bytes, %v", b, n, len(b), err)
	}
	return out
}

// FuzzConvertVariant decodes arbitrary bytes as gopcua would a Variant off
// the wire, converts the result and encodes it as JSON: none of it may panic,
// and the value must be of the types collectors.Sample promises.
//
// gopcua v0.9.1's decoder itself is not safe on hostile input:
//   - an array length below -1 panics in reflect.MakeSlice (recovered here,
//     around the decode only, and the half-decoded Variant still converted);
//   - matrix dimensions whose product overflows int32 but wraps to the array
//     length loop forever in ua.split, growing memory without bound;
//   - a dimension count of up to 2^31-1 is allocated before it is read (8 GB
//     for a 9-byte input); many dimensions build deeply nested slice types;
//   - nesting (Variant in Variant, DiagnosticInfo in DiagnosticInfo) has no
//     limit: 2 MB of nested Variant headers overflow the 1 GB goroutine
//     stack, which is fatal rather than a panic.
//
// Inputs that reach one of the last three, which no recover can contain, are
// skipped by gopcuaSurvives; see it for the exact rules.
func FuzzConvertVariant(f *testing.F) {
	for _, tc := range variantCases(f) {
		f.Add(encoded(f, tc.in))
	}
	f.Add([]byte{byte(ua.TypeIDNodeID), 0x0F})
	f.Add([]byte{0x86, 0xFB, 0xFF, 0xFF, 0xFF})

	f.Fuzz(func(t *testing.T, b []byte) {
		if !gopcuaSurvives(b) {
			return
		}
		v := new(ua.Variant)
		func() {
			defer func() { _ = recover() }()
			_, _ = v.Decode(b)
		}()
		got, typ := convertValue(v)
		if typ&collectors.TypeArray != 0 || typ == collectors.TypeEvent {
			t.Errorf("type %v: no type a Variant has", typ)
		}
		checkJSONFriendly(t, "value", got)
		if _, err := json.Marshal(got); err != nil {
			var unsupported *json.UnsupportedValueError
			if !errors.As(err, &unsupported) { // NaN and ±Inf are passed through on purpose
				t.Errorf("json: %v", err)
			}
		}
	})
}

func TestGopcuaSurvives(t *testing.T) {
	le := func(xs ...uint32) []byte {
		var b []byte
		for _, x := range xs {
			b = append(b, byte(x), byte(x>>8), byte(x>>16), byte(x>>24))
		}
		return b
	}
	manyDims := append([]byte{0xC6}, le(0, 32)...)
	for range 32 {
		manyDims = append(manyDims, le(2)...)
	}
	tests := []struct {
		name string
		in   []byte
		want bool
	}{
		// Int32 array of 2 with dimensions 3 x 1431655766: the int32 product wraps to 2.
		{"dimension product wraps to the length", append([]byte{0xC6}, le(2, 1, 2, 2, 3, 0x55555556)...), false},
		{"dimension product wraps to 0", manyDims, false},
		{"2^31-1 dimensions", append([]byte{0xC6}, le(0, 0x7FFFFFFF)...), false},
		{"nesting of 600 Variants", bytes.Repeat([]byte{byte(ua.TypeIDVariant)}, 600), false},
		{"negative array length (a recoverable panic)", append([]byte{0x86}, le(0xFFFFFFFB)...), true},
		{"garbage after a value", []byte{byte(ua.TypeIDBoolean), 1, 2, 3}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := gopcuaSurvives(tc.in); got != tc.want {
				t.Errorf("gopcuaSurvives(% x) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
	for _, tc := range variantCases(t) {
		// A KeyValuePair holds a Variant, decoded by reflection: not walked.
		if want := tc.name != "ExtensionObject known with variant inside"; gopcuaSurvives(encoded(t, tc.in)) != want {
			t.Errorf("%s: gopcuaSurvives = %v, want %v", tc.name, !want, want)
		}
	}
}

// gopcuaSurvives reports whether gopcua v0.9.1 can decode b as a Variant
// without hanging, exhausting memory or overflowing the stack. It walks the
// encoding the way gopcua's decoder does and rejects: more than 32 matrix
// dimensions, dimensions whose product exceeds int32, nesting deeper than
// 500, inputs over 64 KiB, and binary extension objects of a registered type
// whose Go struct holds Variants or other self-describing values (those are
// decoded by reflection, which this walk does not follow). Where gopcua
// stops with an error, the walk stops too: nothing after it is decoded.
func gopcuaSurvives(b []byte) bool {
	if len(b) > 64<<10 {
		return false
	}
	w := &wireWalk{b: b}
	w.variant(0)
	return !w.hazard
}

type wireWalk struct {
	b      []byte
	hazard bool
}

func (w *wireWalk) take(n int) bool {
	if n < 0 || n > len(w.b) {
		w.b = nil
		return false
	}
	w.b = w.b[n:]
	return true
}

func (w *wireWalk) u8() (byte, bool) {
	if len(w.b) < 1 {
		return 0, false
	}
	c := w.b[0]
	w.b = w.b[1:]
	return c, true
}

func (w *wireWalk) u32() (uint32, bool) {
	if len(w.b) < 4 {
		w.b = nil
		return 0, false
	}
	x := uint32(w.b[0]) | uint32(w.b[1])<<8 | uint32(w.b[2])<<16 | uint32(w.b[3])<<24
	w.b = w.b[4:]
	return x, true
}

func (w *wireWalk) bytes() bool {
	n, ok := w.u32()
	if !ok {
		return false
	}
	if n == 0 || n == math.MaxUint32 {
		return true
	}
	return w.take(int(n))
}

func (w *wireWalk) tooDeep(depth int) bool {
	if depth > 500 {
		w.hazard = true
		return true
	}
	return false
}

func (w *wireWalk) variant(depth int) bool {
	if w.tooDeep(depth) {
		return false
	}
	mask, ok := w.u8()
	if !ok {
		return false
	}
	typ := ua.TypeID(mask & 0x3F)
	switch {
	case typ == ua.TypeIDNull:
		return true
	case typ > ua.TypeIDDiagnosticInfo:
		return false
	case mask&ua.VariantArrayValues == 0:
		return w.value(typ, depth)
	}
	u, ok := w.u32()
	n := int32(u)
	if !ok || n > int32(ua.MaxVariantArrayLength) || n < -1 {
		return false // n < -1 panics, which the fuzz target recovers
	}
	for range max(n, 0) {
		if !w.value(typ, depth) {
			return false
		}
	}
	if mask&ua.VariantArrayDimensions == 0 {
		return true
	}
	u, ok = w.u32()
	dims := int32(u)
	if !ok || dims < 0 {
		return false
	}
	if dims > 32 {
		w.hazard = true
		return false
	}
	product := int64(1)
	for range dims {
		d, ok := w.u32()
		if !ok || int32(d) < 1 {
			return false
		}
		if product *= int64(d); product > math.MaxInt32 {
			w.hazard = true
			return false
		}
	}
	return dims == 0 || product == int64(n)
}

func (w *wireWalk) value(typ ua.TypeID, depth int) bool {
	switch typ {
	case ua.TypeIDBoolean, ua.TypeIDSByte, ua.TypeIDByte:
		return w.take(1)
	case ua.TypeIDInt16, ua.TypeIDUint16:
		return w.take(2)
	case ua.TypeIDInt32, ua.TypeIDUint32, ua.TypeIDFloat, ua.TypeIDStatusCode:
		return w.take(4)
	case ua.TypeIDInt64, ua.TypeIDUint64, ua.TypeIDDouble, ua.TypeIDDateTime:
		return w.take(8)
	case ua.TypeIDGUID:
		return w.take(16)
	case ua.TypeIDString, ua.TypeIDByteString, ua.TypeIDXMLElement:
		return w.bytes()
	case ua.TypeIDNodeID:
		_, ok := w.nodeID()
		return ok
	case ua.TypeIDExpandedNodeID:
		return w.expandedNodeID()
	case ua.TypeIDQualifiedName:
		return w.take(2) && w.bytes()
	case ua.TypeIDLocalizedText:
		m, ok := w.u8()
		return ok && (m&ua.LocalizedTextLocale == 0 || w.bytes()) && (m&ua.LocalizedTextText == 0 || w.bytes())
	case ua.TypeIDExtensionObject:
		return w.extensionObject(depth + 1)
	case ua.TypeIDDataValue:
		return w.dataValue(depth + 1)
	case ua.TypeIDVariant:
		return w.variant(depth + 1)
	case ua.TypeIDDiagnosticInfo:
		return w.diagnosticInfo(depth + 1)
	}
	return false
}

func (w *wireWalk) nodeID() (byte, bool) {
	m, ok := w.u8()
	if !ok {
		return 0, false
	}
	switch m & 0xF {
	case 0:
		return m, w.take(1)
	case 1:
		return m, w.take(3)
	case 2:
		return m, w.take(6)
	case 3, 5:
		return m, w.take(2) && w.bytes()
	case 4:
		return m, w.take(18)
	}
	return m, false
}

func (w *wireWalk) expandedNodeID() bool {
	m, ok := w.nodeID()
	return ok && (m&0x80 == 0 || w.bytes()) && (m&0x40 == 0 || w.take(4))
}

func (w *wireWalk) extensionObject(depth int) bool {
	if w.tooDeep(depth) {
		return false
	}
	start := w.b
	if !w.expandedNodeID() {
		return false
	}
	typeID := start[:len(start)-len(w.b)]
	mask, ok := w.u8()
	if !ok || mask == ua.ExtensionObjectEmpty {
		return ok
	}
	n, ok := w.u32()
	if !ok || n == 0 || n == math.MaxUint32 {
		return ok
	}
	if !w.take(int(n)) {
		return false
	}
	if mask != ua.ExtensionObjectXML {
		if typ := registeredType(typeID); typ != nil && holdsSelfDescribing(typ, map[reflect.Type]bool{}) {
			w.hazard = true
			return false
		}
	}
	return true
}

// registeredType asks gopcua which Go type it decodes an extension object
// with this encoded type id into, by decoding one with a one-byte body.
func registeredType(typeID []byte) reflect.Type {
	probe := append(append([]byte(nil), typeID...), ua.ExtensionObjectBinary, 1, 0, 0, 0, 0)
	var e ua.ExtensionObject
	_, _ = e.Decode(probe)
	if e.Value == nil {
		return nil
	}
	return reflect.TypeOf(e.Value)
}

func holdsSelfDescribing(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t {
	case reflect.TypeFor[ua.Variant](), reflect.TypeFor[ua.DataValue](),
		reflect.TypeFor[ua.DiagnosticInfo](), reflect.TypeFor[ua.ExtensionObject]():
		return true
	}
	switch t.Kind() {
	case reflect.Interface:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return holdsSelfDescribing(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if holdsSelfDescribing(t.Field(i).Type, seen) {
				return true
			}
		}
	}
	return false
}

func (w *wireWalk) dataValue(depth int) bool {
	if w.tooDeep(depth) {
		return false
	}
	m, ok := w.u8()
	return ok &&
		(m&ua.DataValueValue == 0 || w.variant(depth+1)) &&
		(m&ua.DataValueStatusCode == 0 || w.take(4)) &&
		(m&ua.DataValueSourceTimestamp == 0 || w.take(8)) &&
		(m&ua.DataValueSourcePicoseconds == 0 || w.take(2)) &&
		(m&ua.DataValueServerTimestamp == 0 || w.take(8)) &&
		(m&ua.DataValueServerPicoseconds == 0 || w.take(2))
}

func (w *wireWalk) diagnosticInfo(depth int) bool {
	if w.tooDeep(depth) {
		return false
	}
	m, ok := w.u8()
	return ok &&
		(m&ua.DiagnosticInfoSymbolicID == 0 || w.take(4)) &&
		(m&ua.DiagnosticInfoNamespaceURI == 0 || w.take(4)) &&
		(m&ua.DiagnosticInfoLocale == 0 || w.take(4)) &&
		(m&ua.DiagnosticInfoLocalizedText == 0 || w.take(4)) &&
		(m&ua.DiagnosticInfoAdditionalInfo == 0 || w.bytes()) &&
		(m&ua.DiagnosticInfoInnerStatusCode == 0 || w.take(4)) &&
		(m&ua.DiagnosticInfoInnerDiagnosticInfo == 0 || w.diagnosticInfo(depth+1))
}

// sameValue compares converted values: times by instant and UTC location,
// NaN equal to NaN, everything else exactly, Go types included.
func sameValue(got, want any) bool {
	switch w := want.(type) {
	case time.Time:
		g, ok := got.(time.Time)
		return ok && g.Equal(w) && g.Location() == time.UTC
	case float64:
		g, ok := got.(float64)
		return ok && (g == w || math.IsNaN(g) && math.IsNaN(w))
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) || (g == nil) != (w == nil) {
			return false
		}
		for i := range w {
			if !sameValue(g[i], w[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok || !sameValue(gv, wv) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(got, want)
}

// checkJSONFriendly fails unless v is made only of the types that
// collectors.Sample documents.
func checkJSONFriendly(t *testing.T, path string, v any) {
	t.Helper()
	switch x := v.(type) {
	case nil, bool, int8, uint8, int16, uint16, int32, uint32, int64, uint64, float32, float64, string, []byte:
	case time.Time:
		if x.Location() != time.UTC {
			t.Errorf("%s: time %v not in UTC", path, x)
		}
	case []any:
		for i, e := range x {
			checkJSONFriendly(t, path+"["+strconv.Itoa(i)+"]", e)
		}
	case map[string]any:
		for k, e := range x {
			checkJSONFriendly(t, path+"."+k, e)
		}
	case collectors.LocalizedText, collectors.Enum, collectors.StatusCode:
	case collectors.Type: // a nested DataValue's type
	case collectors.Typed:
		if x.Type == collectors.TypeNull {
			t.Errorf("%s: Typed without a type", path)
		}
		checkJSONFriendly(t, path+"("+x.Type.String()+")", x.Value)
	case collectors.Structure:
		for _, f := range x.Fields {
			checkJSONFriendly(t, path+"."+f.Name, f.Value)
		}
	default:
		t.Errorf("%s: %T is not a Sample value type", path, v)
	}
}
