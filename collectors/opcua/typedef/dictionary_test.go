package typedef

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
)

func readPlant(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/plant.bsd")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dictionaryRegistry learns Recipe and Reading from testdata/plant.bsd as
// learnDictionaries would: the server names Setpoint's DataType; Mode, an
// enumeration without an encoding, gets a made-up id.
func dictionaryRegistry(t *testing.T) *Registry {
	t.Helper()
	d, err := parseDictionary(readPlant(t))
	if err != nil {
		t.Fatalf("parseDictionary: %v", err)
	}
	r := NewRegistry(nil)
	ids := map[string]*ua.NodeID{"Setpoint": setpointType, "Recipe": recipeType, "Reading": readingType}
	for _, c := range []struct {
		dt   *ua.NodeID
		name string
	}{{recipeType, "Recipe"}, {readingType, "Reading"}} {
		types, needs, err := d.localTypes(c.dt, c.name, ids)
		if err != nil {
			t.Fatalf("localTypes %s: %v", c.name, err)
		}
		if len(needs) != 0 {
			t.Errorf("%s needs %v, want nothing from the server", c.name, needs)
		}
		for _, ty := range types {
			r.setType(ty)
		}
	}
	r.encodings[idString(recipeEnc)] = idString(recipeType)
	r.encodings[idString(readingEnc)] = idString(readingType)
	return r
}

// The dictionary's types come out as the definitions of the same types
// (decode_test.go's testRegistry, the peer's DataTypeDefinitions) would.
func TestDictionaryTypes(t *testing.T) {
	r := dictionaryRegistry(t)
	want := testRegistry()
	for _, dt := range []*ua.NodeID{recipeType, readingType, setpointType} {
		got, w := r.Type(dt), want.Type(dt)
		if got == nil || got.Kind != w.Kind || len(got.Fields) != len(w.Fields) {
			t.Fatalf("%s: %#v, want %#v", idString(dt), got, w)
		}
		for i, f := range got.Fields {
			wf := w.Fields[i]
			if f.Name != wf.Name || f.ValueRank != wf.ValueRank || f.Optional != wf.Optional {
				t.Errorf("%s field %d: %+v, want %+v", idString(dt), i, f, wf)
			}
		}
	}
	mode := r.Type(r.Type(recipeType).Fields[1].DataType)
	if mode == nil || mode.Kind != KindEnum || !reflect.DeepEqual(mode.Names, map[int64]string{0: "Off", 1: "Auto", 5: "Manual"}) {
		t.Errorf("Mode %#v", mode)
	}
}

// Hand-built bodies decode by the dictionary's layout.
func TestDictionaryDecode(t *testing.T) {
	r := dictionaryRegistry(t)
	lt := &ua.LocalizedText{EncodingMask: ua.LocalizedTextLocale | ua.LocalizedTextText, Locale: "de-DE", Text: "Brot"}
	title := enc(t, lt)
	sp := func(b body, name string, v float64, limits ...float64) body {
		b = b.str(name).f64(v).i32(int32(len(limits)))
		for _, l := range limits {
			b = b.f64(l)
		}
		return b
	}
	tests := []decodeCase{
		{
			name: "Comment present, Target absent; array of nested structures; enumeration",
			enc:  recipeEnc,
			body: sp(sp(body{}.u32(1).u32(42).i32(5).i32(2), "feed", 1.5, 0, 3), "heat", 180.25).str("batch 1").raw(title),
			want: collectors.Structure{TypeID: "ns=2;i=3003", Fields: []collectors.Field{
				{Name: "RecipeId", Value: uint32(42)},
				{Name: "Mode", Value: collectors.Enum{Value: 5, Name: "Manual"}},
				{Name: "Setpoints", Value: []any{setpoint("feed", 1.5, 0.0, 3.0), setpoint("heat", 180.25)}},
				{Name: "Comment", Value: "batch 1"},
				{Name: "Title", Value: lt},
			}},
		},
		{
			name: "only Target, a nested structure",
			enc:  recipeEnc,
			body: sp(body{}.u32(2).u32(7).i32(1).i32(0), "t", 2, 4).raw(title),
			want: collectors.Structure{TypeID: "ns=2;i=3003", Fields: []collectors.Field{
				{Name: "RecipeId", Value: uint32(7)},
				{Name: "Mode", Value: collectors.Enum{Value: 1, Name: "Auto"}},
				{Name: "Setpoints", Value: []any{}},
				{Name: "Target", Value: setpoint("t", 2, 4.0)},
				{Name: "Title", Value: lt},
			}},
		},
		{
			name: "union",
			enc:  readingEnc,
			body: body{}.u32(2).str("t3"),
			want: collectors.Structure{TypeID: "ns=2;i=3004", Fields: []collectors.Field{{Name: "Text", Value: "t3"}}},
		},
	}
	checkDecodes(t, r, tests)
}

// A field of a namespace 0 type is left for Learn to fetch.
func TestDictionaryNeeds(t *testing.T) {
	d, err := parseDictionary(readPlant(t))
	if err != nil {
		t.Fatal(err)
	}
	dt := ua.NewNumericNodeID(2, 3010)
	types, needs, err := d.localTypes(dt, "Scaled", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(needs) != 1 || idString(needs[0]) != "i=884" {
		t.Errorf("needs %v, want Range i=884", needs)
	}
	if len(types) != 1 || idString(types[0].Fields[2].DataType) != "i=19" {
		t.Errorf("types %#v, want Scaled with a StatusCode", types)
	}
}

func TestDictionaryErrors(t *testing.T) {
	const head = `<opc:TypeDictionary xmlns:opc="http://opcfoundation.org/BinarySchema/" xmlns:ua="http://opcfoundation.org/UA/" xmlns:tns="urn:t" TargetNamespace="urn:t">`
	tests := []struct {
		name, doc, want string
	}{
		{"not a dictionary", `<TypeDictionary/>`, "want opc:TypeDictionary"},
		{"not XML", `{"a": 1}`, "type dictionary: EOF"},
		{"a mask of 8 bits", head + `<opc:StructuredType Name="S"><opc:Field Name="ASpecified" TypeName="opc:Bit"/><opc:Field Name="R" TypeName="opc:Bit" Length="7"/><opc:Field Name="A" TypeName="opc:Int32" SwitchField="ASpecified"/></opc:StructuredType></opc:TypeDictionary>`, "a mask of 8 bits"},
		{"optional fields out of bit order", head + `<opc:StructuredType Name="S"><opc:Field Name="ASpecified" TypeName="opc:Bit"/><opc:Field Name="BSpecified" TypeName="opc:Bit"/><opc:Field Name="R" TypeName="opc:Bit" Length="30"/><opc:Field Name="B" TypeName="opc:Int32" SwitchField="BSpecified"/><opc:Field Name="A" TypeName="opc:Int32" SwitchField="ASpecified"/></opc:StructuredType></opc:TypeDictionary>`, "optional field B on bit 1, want bit 0"},
		{"length not an Int32", head + `<opc:StructuredType Name="S"><opc:Field Name="N" TypeName="opc:UInt16"/><opc:Field Name="A" TypeName="opc:Int32" LengthField="N"/></opc:StructuredType></opc:TypeDictionary>`, "length field N of A is not an Int32"},
		{"length elsewhere", head + `<opc:StructuredType Name="S"><opc:Field Name="N" TypeName="opc:Int32"/><opc:Field Name="X" TypeName="opc:Int32"/><opc:Field Name="A" TypeName="opc:Int32" LengthField="N"/></opc:StructuredType></opc:TypeDictionary>`, "length field N not just before it"},
		{"unknown type", head + `<opc:StructuredType Name="S"><opc:Field Name="A" TypeName="tns:Nowhere"/></opc:StructuredType></opc:TypeDictionary>`, "tns:Nowhere (urn:t): type not known"},
		{"16-bit enumeration", head + `<opc:EnumeratedType Name="E" LengthInBits="16"/><opc:StructuredType Name="S"><opc:Field Name="A" TypeName="tns:E"/></opc:StructuredType></opc:TypeDictionary>`, "enumeration E of 16 bits"},
		{"union out of order", head + `<opc:StructuredType Name="S"><opc:Field Name="SwitchField" TypeName="opc:UInt32"/><opc:Field Name="A" TypeName="opc:Int32" SwitchField="SwitchField" SwitchValue="2"/></opc:StructuredType></opc:TypeDictionary>`, "field A does not switch on SwitchField = 1"},
		{"no such type", head + `</opc:TypeDictionary>`, `no structured type "S"`},
		{"too large", head + strings.Repeat(" ", maxDictionary) + `</opc:TypeDictionary>`, "more than 8388608"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := parseDictionary([]byte(tc.doc))
			if err == nil {
				_, _, err = d.localTypes(ua.NewNumericNodeID(2, 1), "S", nil)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// Any document parses or fails without panicking, and every type it
// yields decodes (or refuses) a body within the decoder's bounds.
func FuzzParseDictionary(f *testing.F) {
	f.Add(readPlant(f))
	f.Add([]byte(`<opc:TypeDictionary xmlns:opc="http://opcfoundation.org/BinarySchema/" TargetNamespace="u"><opc:StructuredType Name="S"><opc:Field Name="S" TypeName="S"/></opc:StructuredType></opc:TypeDictionary>`))
	f.Add([]byte(`<opc:TypeDictionary xmlns:opc="http://opcfoundation.org/BinarySchema/" xmlns="u" TargetNamespace="u"><opc:StructuredType Name="S"><opc:Field Name="N" TypeName="opc:Int32"/><opc:Field Name="A" TypeName="S" LengthField="N"/></opc:StructuredType></opc:TypeDictionary>`))
	dt, encoding := ua.NewNumericNodeID(2, 1), ua.NewNumericNodeID(2, 2)
	f.Fuzz(func(t *testing.T, doc []byte) {
		d, err := parseDictionary(doc)
		if err != nil {
			return
		}
		for name := range d.structs {
			types, _, err := d.localTypes(dt, name, nil)
			if err != nil {
				continue
			}
			r := NewRegistry(nil)
			for _, ty := range types {
				r.setType(ty)
			}
			r.encodings[idString(encoding)] = idString(dt)
			_, _ = r.Decode(encoding, body{}.u32(1).i32(1).str("x"))
		}
	})
}
