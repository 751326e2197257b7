package typedef

import (
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
)

// body builds a binary body field by field.
type body []byte

func (b body) u32(v uint32) body  { return binary.LittleEndian.AppendUint32(b, v) }
func (b body) i32(v int32) body   { return b.u32(uint32(v)) }
func (b body) f64(v float64) body { return binary.LittleEndian.AppendUint64(b, math.Float64bits(v)) }
func (b body) str(s string) body  { return append(b.i32(int32(len(s))), s...) }
func (b body) raw(p []byte) body  { return append(b, p...) }

func enc(t *testing.T, v any) []byte {
	t.Helper()
	b, err := ua.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	modeType     = ua.NewNumericNodeID(2, 3001)
	setpointType = ua.NewNumericNodeID(2, 3002)
	recipeType   = ua.NewNumericNodeID(2, 3003)
	readingType  = ua.NewNumericNodeID(2, 3004)
	gridType     = ua.NewNumericNodeID(2, 3005)
	tempType     = ua.NewNumericNodeID(2, 3006) // a simple subtype of Double
	recipeEnc    = ua.NewNumericNodeID(2, 5003)
	readingEnc   = ua.NewNumericNodeID(2, 5004)
	gridEnc      = ua.NewNumericNodeID(2, 5005)
)

// testRegistry holds the types the peer's structures.xml defines, and a
// matrix type, as Learn would leave them.
func testRegistry() *Registry {
	r := NewRegistry(nil)
	double, str := ua.NewNumericNodeID(0, 11), ua.NewNumericNodeID(0, 12)
	r.setType(&Type{ID: modeType, Kind: KindEnum, Names: map[int64]string{0: "Off", 1: "Auto", 5: "Manual"}})
	r.setType(&Type{ID: tempType, Kind: KindBuiltin, Builtin: ua.TypeIDDouble})
	r.setType(&Type{ID: setpointType, Kind: KindStructure, Fields: []Field{
		{Name: "Name", DataType: str, ValueRank: -1},
		{Name: "Value", DataType: tempType, ValueRank: -1},
		{Name: "Limits", DataType: double, ValueRank: 1},
	}})
	r.setType(&Type{ID: recipeType, Kind: KindOptional, Fields: []Field{
		{Name: "RecipeId", DataType: ua.NewNumericNodeID(0, 7), ValueRank: -1},
		{Name: "Mode", DataType: modeType, ValueRank: -1},
		{Name: "Setpoints", DataType: setpointType, ValueRank: 1},
		{Name: "Comment", DataType: str, ValueRank: -1, Optional: true},
		{Name: "Target", DataType: setpointType, ValueRank: -1, Optional: true},
		{Name: "Title", DataType: ua.NewNumericNodeID(0, 21), ValueRank: -1},
	}})
	r.setType(&Type{ID: readingType, Kind: KindUnion, Fields: []Field{
		{Name: "Count", DataType: ua.NewNumericNodeID(0, 6), ValueRank: -1},
		{Name: "Text", DataType: str, ValueRank: -1},
	}})
	r.setType(&Type{ID: gridType, Kind: KindStructure, Fields: []Field{
		{Name: "Cells", DataType: ua.NewNumericNodeID(0, 3), ValueRank: 2},
		{Name: "When", DataType: ua.NewNumericNodeID(0, 294), ValueRank: -1},
		{Name: "Any", DataType: ua.NewNumericNodeID(0, 24), ValueRank: -1},
	}})
	r.encodings[idString(recipeEnc)] = idString(recipeType)
	r.encodings[idString(readingEnc)] = idString(readingType)
	r.encodings[idString(gridEnc)] = idString(gridType)
	return r
}

func setpoint(name string, v float64, limits ...any) collectors.Structure {
	if limits == nil {
		limits = []any{}
	}
	return collectors.Structure{TypeID: "ns=2;i=3002", Fields: []collectors.Field{
		{Name: "Name", Value: name}, {Name: "Value", Value: v}, {Name: "Limits", Value: limits},
	}}
}

func TestDecode(t *testing.T) {
	r := testRegistry()
	title := enc(t, &ua.LocalizedText{EncodingMask: ua.LocalizedTextLocale | ua.LocalizedTextText, Locale: "de-DE", Text: "Brot"})
	sp := func(b body, name string, v float64, limits ...float64) body {
		b = b.str(name).f64(v).i32(int32(len(limits)))
		for _, l := range limits {
			b = b.f64(l)
		}
		return b
	}
	when := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	tests := []decodeCase{
		{
			name: "optional fields: Comment present, Target absent; nested array of structures; enumeration; LocalizedText",
			enc:  recipeEnc,
			body: sp(sp(body{}.u32(1).u32(42).i32(5).i32(2), "feed", 1.5, 0, 3), "heat", 180.25).str("batch 1").raw(title),
			want: collectors.Structure{TypeID: "ns=2;i=3003", Fields: []collectors.Field{
				{Name: "RecipeId", Value: uint32(42)},
				{Name: "Mode", Value: collectors.Enum{Value: 5, Name: "Manual"}},
				{Name: "Setpoints", Value: []any{setpoint("feed", 1.5, 0.0, 3.0), setpoint("heat", 180.25)}},
				{Name: "Comment", Value: "batch 1"},
				{Name: "Title", Value: &ua.LocalizedText{EncodingMask: ua.LocalizedTextLocale | ua.LocalizedTextText, Locale: "de-DE", Text: "Brot"}},
			}},
		},
		{
			name: "optional fields: only Target; unknown enumeration value; null array",
			enc:  recipeEnc,
			body: sp(body{}.u32(2).u32(7).i32(9).i32(-1), "t", 2).raw(title),
			want: collectors.Structure{TypeID: "ns=2;i=3003", Fields: []collectors.Field{
				{Name: "RecipeId", Value: uint32(7)},
				{Name: "Mode", Value: collectors.Enum{Value: 9}},
				{Name: "Setpoints", Value: nil},
				{Name: "Target", Value: setpoint("t", 2)},
				{Name: "Title", Value: &ua.LocalizedText{EncodingMask: ua.LocalizedTextLocale | ua.LocalizedTextText, Locale: "de-DE", Text: "Brot"}},
			}},
		},
		{
			name: "union second field",
			enc:  readingEnc,
			body: body{}.u32(2).str("t3"),
			want: collectors.Structure{TypeID: "ns=2;i=3004", Fields: []collectors.Field{{Name: "Text", Value: "t3"}}},
		},
		{
			name: "union first field",
			enc:  readingEnc,
			body: body{}.u32(1).i32(-4),
			want: collectors.Structure{TypeID: "ns=2;i=3004", Fields: []collectors.Field{{Name: "Count", Value: int32(-4)}}},
		},
		{
			name: "null union",
			enc:  readingEnc,
			body: body{}.u32(0),
			want: collectors.Structure{TypeID: "ns=2;i=3004"},
		},
		{
			name: "matrix field, UtcTime, Variant of an abstract type",
			enc:  gridEnc,
			body: body{}.i32(2).i32(2).i32(3).raw([]byte{1, 2, 3, 4, 5, 6}).
				raw(enc(t, when)).raw(enc(t, ua.MustVariant(int16(-3)))),
			want: collectors.Structure{TypeID: "ns=2;i=3005", Fields: []collectors.Field{
				{Name: "Cells", Value: []any{[]any{uint8(1), uint8(2), uint8(3)}, []any{uint8(4), uint8(5), uint8(6)}}},
				{Name: "When", Value: when},
				{Name: "Any", Value: ua.MustVariant(int16(-3))},
			}},
		},
	}
	checkDecodes(t, r, tests)
}

func TestDecodeConvert(t *testing.T) {
	r := testRegistry()
	r.Convert = func(v any) any {
		if lt, ok := v.(*ua.LocalizedText); ok {
			return lt.Locale + "|" + lt.Text
		}
		return v
	}
	title := enc(t, &ua.LocalizedText{EncodingMask: ua.LocalizedTextLocale | ua.LocalizedTextText, Locale: "en", Text: "Bread"})
	got, err := r.Decode(recipeEnc, body{}.u32(0).u32(1).i32(0).i32(0).raw(title))
	if err != nil {
		t.Fatal(err)
	}
	if v := got.Fields[len(got.Fields)-1].Value; v != "en|Bread" {
		t.Errorf("Title %#v, want Convert's result", v)
	}
}

func TestDecodeErrors(t *testing.T) {
	r := testRegistry()
	tests := []struct {
		name string
		enc  *ua.NodeID
		body []byte
		want string
	}{
		{"unknown encoding", ua.NewNumericNodeID(2, 9999), nil, "structure type not known"},
		{"short body", recipeEnc, body{}.u32(0).u32(1), "4 bytes needed"},
		{"bytes left over", readingEnc, body{}.u32(1).i32(1).u32(0), "4 bytes left after ns=2;i=3004"},
		{"union switch past the fields", readingEnc, body{}.u32(3), "switch 3, 2 fields"},
		{"array longer than the body", recipeEnc, body{}.u32(0).u32(1).i32(0).i32(1 << 30), "array of 1073741824 elements"},
		{"matrix dimensions wrap", gridEnc, body{}.i32(2).i32(1 << 16).i32(1 << 16), "dimension 65536"},
		{"matrix of the wrong rank", gridEnc, body{}.i32(3), "3 dimensions, value rank 2"},
		{"matrix of empty rows past the body", gridEnc, body{}.i32(2).i32(1 << 24).i32(0), "dimension 16777216"},
		{"bad variant", gridEnc, body{}.i32(2).i32(0).i32(0).raw(make([]byte, 8)).raw([]byte{0x86, 0xfe, 0xff, 0xff, 0xff}), "Variant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Decode(tc.enc, tc.body)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// A type that contains itself through an optional field cannot take the
// decoder deeper than maxDepth.
func TestDecodeDepth(t *testing.T) {
	r := NewRegistry(nil)
	self := ua.NewNumericNodeID(2, 1)
	r.setType(&Type{ID: self, Kind: KindOptional, Fields: []Field{{Name: "Next", DataType: self, ValueRank: -1, Optional: true}}})
	r.encodings[idString(ua.NewNumericNodeID(2, 2))] = idString(self)
	var b body
	for range 200 {
		b = b.u32(1)
	}
	b = b.u32(0)
	_, err := r.Decode(ua.NewNumericNodeID(2, 2), b)
	if err == nil || !strings.Contains(err.Error(), "nested deeper than 100") {
		t.Fatalf("Decode error %v, want the depth limit", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 42, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{2, 0, 0, 0, 1, 0, 0, 0, 'x'})
	r := testRegistry()
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, e := range []*ua.NodeID{recipeEnc, readingEnc, gridEnc} {
			_, _ = r.Decode(e, b)
		}
	})
}

// decodeCase is one body of an encoding, and the structure it decodes to.
type decodeCase struct {
	name string
	enc  *ua.NodeID
	body []byte
	want collectors.Structure
}

// checkDecodes decodes each case's body with r, a subtest each.
func checkDecodes(t *testing.T, r *Registry, tests []decodeCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Decode(tc.enc, tc.body)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Decode:\n got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}
