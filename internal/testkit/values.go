package testkit

import (
	"bytes"
	"flag"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
)

// update, with go test -update, rewrites the golden files.
var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// ValueCase is a sample, the DataValue Part 6 JSON tagbridge writes for it (in
// testdata/uajson/datavalues.golden) and what node-opcua-json 2.182.2
// decodes from that: built-in type, status code and value in decode.js's
// canonical form (64-bit integers and non-finite numbers as strings,
// ByteStrings as "b64:…", dates in ISO form).
type ValueCase struct {
	Name   string
	Sample collectors.Sample
	Type   int    // decoded Variant's built-in type
	Status uint32 // decoded status code
	Value  string // decoded value, canonical JSON
}

// ValueCases are samples of every value type the collectors produce.
func ValueCases() []ValueCase {
	ts := time.Date(2026, 11, 22, 10, 15, 30, 123456000, time.UTC)
	smp := func(typ collectors.Type, v any) collectors.Sample {
		return collectors.Sample{Type: typ, Value: v}
	}
	bad := collectors.Sample{Type: collectors.TypeNull, StatusCode: 0x80050000, SourceTime: ts}
	uncertain := collectors.Sample{Type: collectors.TypeDouble, Value: 1.25, StatusCode: 0x40900000, SourceTime: ts, ServerTime: ts.Add(time.Millisecond)}
	unknown := collectors.Sample{Type: collectors.TypeDouble, Value: 1.0, StatusCode: 0x80FF0000}
	return []ValueCase{
		{"boolean", smp(collectors.TypeBoolean, true), 1, 0, `true`},
		{"boolean false", smp(collectors.TypeBoolean, false), 1, 0, `false`},
		{"boolean array", smp(collectors.TypeBoolean, []any{true, false, nil}), 1, 0, `[true,false,null]`},
		{"sbyte", smp(collectors.TypeSByte, int8(-128)), 2, 0, `-128`},
		{"byte", smp(collectors.TypeByte, uint8(255)), 3, 0, `255`},
		{"byte array", smp(collectors.TypeByte, []any{uint8(0), uint8(7)}), 3, 0, `[0,7]`},
		{"int16", smp(collectors.TypeInt16, int16(-32768)), 4, 0, `-32768`},
		{"uint16", smp(collectors.TypeUInt16, uint16(65535)), 5, 0, `65535`},
		{"int32 zero", smp(collectors.TypeInt32, int32(0)), 6, 0, `0`},
		{"int32 array", smp(collectors.TypeInt32, []any{int32(math.MinInt32), int32(math.MaxInt32)}), 6, 0, `[-2147483648,2147483647]`},
		{"uint32", smp(collectors.TypeUInt32, uint32(math.MaxUint32)), 7, 0, `4294967295`},
		{"int64 past 2^53", smp(collectors.TypeInt64, int64(1<<53+1)), 8, 0, `"9007199254740993"`},
		{"int64 min", smp(collectors.TypeInt64, int64(math.MinInt64)), 8, 0, `"-9223372036854775808"`},
		{"int64 array", smp(collectors.TypeInt64, []any{int64(-(1<<53 + 1)), int64(math.MaxInt64)}), 8, 0, `["-9007199254740993","9223372036854775807"]`},
		{"uint64 max", smp(collectors.TypeUInt64, uint64(math.MaxUint64)), 9, 0, `"18446744073709551615"`},
		{"uint64 array", smp(collectors.TypeUInt64, []any{uint64(1<<53 + 1), uint64(0)}), 9, 0, `["9007199254740993","0"]`},
		{"float", smp(collectors.TypeFloat, float32(1.5)), 10, 0, `1.5`},
		{"float -inf", smp(collectors.TypeFloat, float32(math.Inf(-1))), 10, 0, `"-Infinity"`},
		{"double", smp(collectors.TypeDouble, 21.5), 11, 0, `21.5`},
		{"double nan", smp(collectors.TypeDouble, math.NaN()), 11, 0, `"NaN"`},
		{"double +inf", smp(collectors.TypeDouble, math.Inf(1)), 11, 0, `"Infinity"`},
		{"double array with nan", smp(collectors.TypeDouble, []any{1.5, math.NaN(), math.Inf(-1)}), 11, 0, `[1.5,"NaN","-Infinity"]`},
		{"string", smp(collectors.TypeString, "a\"b\nü"), 12, 0, `"a\"b\nü"`},
		{"string array", smp(collectors.TypeString, []any{"x", ""}), 12, 0, `["x",""]`},
		{"datetime", smp(collectors.TypeDateTime, ts), 13, 0, `"2026-11-22T10:15:30.123Z"`},
		{"datetime min", smp(collectors.TypeDateTime, nil), 13, 0, `"0001-01-01T00:00:00.000Z"`},
		{"datetime array", smp(collectors.TypeDateTime, []any{ts, nil}), 13, 0, `["2026-11-22T10:15:30.123Z","0001-01-01T00:00:00.000Z"]`},
		{"guid", smp(collectors.TypeGUID, "72962B91-FA75-4AE6-8D28-B404DC7DAF63"), 14, 0, `"72962B91-FA75-4AE6-8D28-B404DC7DAF63"`},
		{"bytestring", smp(collectors.TypeByteString, []byte{1, 2, 3}), 15, 0, `"b64:AQID"`},
		{"bytestring empty", smp(collectors.TypeByteString, []byte{}), 15, 0, `null`},
		{"bytestring null", smp(collectors.TypeByteString, nil), 15, 0, `null`},
		{"nodeid", smp(collectors.TypeNodeID, "ns=2;s=Line1.Temp"), 17, 0, `"ns=2;s=Line1.Temp"`},
		{"expandednodeid", smp(collectors.TypeExpandedNodeID, "ns=2;i=5"), 18, 0, `"ns=2;i=5"`},
		{"statuscode", smp(collectors.TypeStatusCode, collectors.StatusCode(0x800A0000)), 19, 0, `2148139008`},
		{"statuscode good", smp(collectors.TypeStatusCode, collectors.StatusCode(0)), 19, 0, `0`},
		// node-opcua-json keeps only the severity of a code it does not know.
		{"statuscode unknown", smp(collectors.TypeStatusCode, collectors.StatusCode(0x80FF0000)), 19, 0, `2147483648`},
		{"qualifiedname", smp(collectors.TypeQualifiedName, "2:Foo"), 20, 0, `"2:Foo"`},
		{"qualifiedname ns0", smp(collectors.TypeQualifiedName, "Bar"), 20, 0, `"0:Bar"`},
		{"localizedtext", smp(collectors.TypeLocalizedText, "Hallo"), 21, 0, `{"text":"Hallo","locale":null}`},
		{"localizedtext array", smp(collectors.TypeLocalizedText, []any{"a", "b"}), 21, 0, `[{"text":"a","locale":null},{"text":"b","locale":null}]`},
		{"localizedtext with locale", smp(collectors.TypeLocalizedText, collectors.LocalizedText{Locale: "de-DE", Text: "Brot"}), 21, 0, `{"text":"Brot","locale":"de-DE"}`},
		{"localizedtext array with locales", smp(collectors.TypeLocalizedText, []any{collectors.LocalizedText{Locale: "en", Text: "a"}, collectors.LocalizedText{Text: "b"}}), 21, 0,
			`[{"text":"a","locale":"en"},{"text":"b","locale":null}]`},
		// Nested Variants keep their types (issue 13, point 10).
		{"variant qualifiedname", smp(collectors.TypeVariant, collectors.Typed{Type: collectors.TypeQualifiedName, Value: "2:Foo"}), 24, 0, `{"type":20,"value":"2:Foo"}`},
		{"variant statuscode", smp(collectors.TypeVariant, collectors.StatusCode(0x800A0000)), 24, 0, `{"type":19,"value":2148139008}`},
		{"variant localizedtext", smp(collectors.TypeVariant, collectors.LocalizedText{Locale: "en", Text: "x"}), 24, 0, `{"type":21,"value":{"text":"x","locale":"en"}}`},
		{"variant nodeid", smp(collectors.TypeVariant, collectors.Typed{Type: collectors.TypeNodeID, Value: "ns=2;s=T"}), 24, 0, `{"type":17,"value":"ns=2;s=T"}`},
		{"variant datetime min", smp(collectors.TypeVariant, collectors.Typed{Type: collectors.TypeDateTime}), 24, 0, `{"type":13,"value":"0001-01-01T00:00:00.000Z"}`},
		{"variant bytestring empty", smp(collectors.TypeVariant, []byte{}), 24, 0, `{"type":15,"value":null}`},
		{"variant array mixed", smp(collectors.TypeVariant, []any{collectors.Typed{Type: collectors.TypeQualifiedName, Value: "1:Q"}, int32(1), collectors.LocalizedText{Text: "t"}}), 24, 0,
			`[{"type":20,"value":"1:Q"},{"type":6,"value":1},{"type":21,"value":{"text":"t","locale":null}}]`},
		{"structure with localizedtext", smp(collectors.TypeExtensionObject, collectors.Structure{TypeID: "i=887", Fields: []collectors.Field{
			{Name: "NamespaceUri", Value: "http://www.opcfoundation.org/UA/units/un/cefact"}, {Name: "UnitId", Value: int32(4408652)},
			{Name: "DisplayName", Value: collectors.LocalizedText{Locale: "en", Text: "°C"}}, {Name: "Description", Value: collectors.LocalizedText{Locale: "en", Text: "degree Celsius"}}}}), 22, 0,
			`{"namespaceUri":"http://www.opcfoundation.org/UA/units/un/cefact","unitId":4408652,"displayName":{"text":"°C","locale":"en"},"description":{"text":"degree Celsius","locale":"en"}}`},
		{"structure with enumeration, datetime min, nested structure", smp(collectors.TypeExtensionObject, collectors.Structure{TypeID: "i=862", Fields: []collectors.Field{
			{Name: "StartTime", Value: ts}, {Name: "CurrentTime", Value: collectors.Typed{Type: collectors.TypeDateTime}}, {Name: "State", Value: collectors.Enum{Value: 0, Name: "Running"}},
			{Name: "BuildInfo", Value: collectors.Structure{TypeID: "i=338", Fields: []collectors.Field{{Name: "ProductUri", Value: "urn:p"}, {Name: "ManufacturerName", Value: "m"},
				{Name: "ProductName", Value: "p"}, {Name: "SoftwareVersion", Value: "1"}, {Name: "BuildNumber", Value: "2"}, {Name: "BuildDate", Value: ts}}}},
			{Name: "SecondsTillShutdown", Value: uint32(0)}, {Name: "ShutdownReason", Value: collectors.LocalizedText{Text: "none"}}}}), 22, 0,
			`{"startTime":"2026-11-22T10:15:30.123Z","currentTime":"0001-01-01T00:00:00.000Z","state":"Running","buildInfo":{"productUri":"urn:p","manufacturerName":"m","productName":"p","softwareVersion":"1","buildNumber":"2","buildDate":"2026-11-22T10:15:30.123Z"},"secondsTillShutdown":0,"shutdownReason":{"text":"none"}}`},
		{"structure", smp(collectors.TypeExtensionObject, collectors.Structure{TypeID: "i=884", Fields: []collectors.Field{{Name: "Low", Value: -1.5}, {Name: "High", Value: 99.0}}}), 22, 0, `{"low":-1.5,"high":99}`},
		{"variant", smp(collectors.TypeVariant, int32(5)), 24, 0, `{"type":6,"value":5}`},
		{"matrix", smp(collectors.TypeInt16, []any{[]any{int16(1), int16(2), int16(3)}, []any{int16(4), int16(5), int16(6)}}), 4, 0, `[1,2,3,4,5,6]`},
		{"bad, no value", bad, 0, 0x80050000, `null`},
		{"uncertain with value", uncertain, 11, 0x40900000, `1.25`},
		{"bad, unknown code", unknown, 11, 0x80000000, `1`},
	}
}

// ExtraValueCases have no decoder expectation: node-opcua-json 2.182.2 does
// not decode XmlElement ("Unsupported yet"), nor an ExtensionObject of a
// type it has no schema for.
func ExtraValueCases() []ValueCase {
	return []ValueCase{
		{Name: "xmlelement", Sample: collectors.Sample{Type: collectors.TypeXMLElement, Value: "<a/>"}},
		{Name: "structure undecoded", Sample: collectors.Sample{Type: collectors.TypeExtensionObject, Value: map[string]any{"type_id": "ns=2;i=5001", "encoding": "binary", "body": []byte{1, 2}}}},
		{Name: "structure without type", Sample: collectors.Sample{Type: collectors.TypeExtensionObject, Value: map[string]any{"b": int32(2), "a": "x"}}},
		{Name: "datavalue", Sample: collectors.Sample{Type: collectors.TypeDataValue, Value: map[string]any{"value": int64(7), "type": collectors.TypeInt64, "status": "BadTimeout", "status_code": uint32(0x800A0000)}}},
	}
}

// Golden compares got with the file, or rewrites it with -update.
func Golden(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			g, w := "", ""
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Errorf("%s line %d:\n got  %s\n want %s", path, i+1, g, w)
			}
		}
	}
}
