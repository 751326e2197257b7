package typedef

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
)

// jsonValue decodes a command's JSON value as the command package does.
func jsonValue(t *testing.T, s string) any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return v
}

// matrixType is a structure with a matrix field and a UtcTime.
var matrixType = ua.NewNumericNodeID(2, 3007)

func encodeRegistry() *Registry {
	r := testRegistry()
	r.setType(&Type{ID: matrixType, Kind: KindStructure, Fields: []Field{
		{Name: "Cells", DataType: ua.NewNumericNodeID(0, 3), ValueRank: 2}, // Byte
		{Name: "When", DataType: ua.NewNumericNodeID(0, 294), ValueRank: -1},
	}})
	return r
}

// JSON objects encode to bodies the decoder reads back as the same values,
// and the decoder's structures encode to the same bytes again.
func TestEncodeRoundTrip(t *testing.T) {
	r := encodeRegistry()
	when := time.Date(2026, 12, 3, 10, 0, 0, 500_000_000, time.UTC)
	for _, c := range []struct {
		name string
		typ  *ua.NodeID
		json string
		want collectors.Structure
	}{
		{"structure with optional fields, nested array, enum by name", recipeType,
			`{"RecipeId": 4000000000, "Mode": "Manual", "Setpoints": [{"Name": "feed", "Value": 1.5, "Limits": [0, 3]}, {"Name": "heat", "Value": -2, "Limits": null}], "Target": {"Name": "t", "Value": 7, "Limits": []}, "Title": {"text": "Brot", "locale": "de-DE"}}`,
			collectors.Structure{TypeID: "ns=2;i=3003", Fields: []collectors.Field{
				{Name: "RecipeId", Value: uint32(4000000000)},
				{Name: "Mode", Value: collectors.Enum{Value: 5, Name: "Manual"}},
				{Name: "Setpoints", Value: []any{
					collectors.Structure{TypeID: "ns=2;i=3002", Fields: []collectors.Field{{Name: "Name", Value: "feed"}, {Name: "Value", Value: 1.5}, {Name: "Limits", Value: []any{0.0, 3.0}}}},
					collectors.Structure{TypeID: "ns=2;i=3002", Fields: []collectors.Field{{Name: "Name", Value: "heat"}, {Name: "Value", Value: -2.0}, {Name: "Limits", Value: nil}}},
				}},
				{Name: "Target", Value: collectors.Structure{TypeID: "ns=2;i=3002", Fields: []collectors.Field{{Name: "Name", Value: "t"}, {Name: "Value", Value: 7.0}, {Name: "Limits", Value: []any{}}}}},
				{Name: "Title", Value: &ua.LocalizedText{EncodingMask: ua.LocalizedTextLocale | ua.LocalizedTextText, Locale: "de-DE", Text: "Brot"}},
			}}},
		{"union", readingType, `{"Text": "t9"}`,
			collectors.Structure{TypeID: "ns=2;i=3004", Fields: []collectors.Field{{Name: "Text", Value: "t9"}}}},
		{"null union", readingType, `{}`, collectors.Structure{TypeID: "ns=2;i=3004"}},
		{"matrix and UtcTime", matrixType, `{"Cells": [[1, 2, 3], [4, 5, 255]], "When": "2026-12-03T10:00:00.5Z"}`,
			collectors.Structure{TypeID: "ns=2;i=3007", Fields: []collectors.Field{
				{Name: "Cells", Value: []any{[]any{uint8(1), uint8(2), uint8(3)}, []any{uint8(4), uint8(5), uint8(255)}}},
				{Name: "When", Value: when},
			}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := r.Encode(c.typ, jsonValue(t, c.json))
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			enc := encodingOfType(r, c.typ)
			got, err := r.Decode(enc, b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("decoded %#v\nwant %#v", got, c.want)
			}
			again, err := r.Encode(c.typ, got)
			if err != nil || !bytes.Equal(again, b) {
				t.Errorf("the decoded structure encodes to %x (%v), want %x", again, err, b)
			}
		})
	}
}

// encodingOfType is the test registry's encoding id of typ (one is made
// for a type without).
func encodingOfType(r *Registry, typ *ua.NodeID) *ua.NodeID {
	if e := r.EncodingOf(typ); e != nil {
		return e
	}
	enc := ua.NewNumericNodeID(2, typ.IntID()+2000)
	r.encodings[idString(enc)] = idString(typ)
	return enc
}

// Values that do not fit their type are refused with the field named.
func TestEncodeRefusals(t *testing.T) {
	r := encodeRegistry()
	setpoint := func(extra string) string { return `{"Name": "a", "Value": 1` + extra + `}` }
	for _, c := range []struct {
		name, json string
		typ        *ua.NodeID
		want       string
		isRange    bool
	}{
		{"missing field", setpoint(""), setpointType, `field "Limits": missing`, false},
		{"extra field", setpoint(`, "Limits": [], "Colour": 1`), setpointType, `ns=2;i=3002 has no field "Colour" (fields: Name, Value, Limits)`, false},
		{"not an object", `[1]`, setpointType, `an array for a structure (an object with the fields Name, Value, Limits)`, false},
		{"wrong kind in nested array", `{"RecipeId": 1, "Mode": 0, "Setpoints": [{"Name": 5, "Value": 1, "Limits": []}], "Title": "x"}`, recipeType, `field "Setpoints[0].Name": a number for a String`, false},
		{"out of range", `{"RecipeId": -1, "Mode": 0, "Setpoints": [], "Title": "x"}`, recipeType, `field "RecipeId": -1 does not fit UInt32 (0..4294967295): out of range`, true},
		{"enum value not defined", `{"RecipeId": 1, "Mode": 2, "Setpoints": [], "Title": "x"}`, recipeType, `field "Mode": 2 is not a value of ns=2;i=3001: out of range`, true},
		{"enum name unknown", `{"RecipeId": 1, "Mode": "Fast", "Setpoints": [], "Title": "x"}`, recipeType, `field "Mode": "Fast" is not a value of ns=2;i=3001`, false},
		{"union of two", `{"Count": 1, "Text": "a"}`, readingType, `a union takes one field, got Count, Text`, false},
		{"ragged matrix", `{"Cells": [[1, 2], [3]], "When": "2026-01-01T00:00:00Z"}`, matrixType, `field "Cells": rows of 2 and 1 elements at depth 2: a matrix is rectangular`, false},
		{"flat array for a matrix", `{"Cells": [1, 2], "When": "2026-01-01T00:00:00Z"}`, matrixType, `field "Cells": a number at depth 2 of a matrix of 2 dimensions`, false},
		{"fraction for an integer", `{"Cells": [[1.5]], "When": "2026-01-01T00:00:00Z"}`, matrixType, `field "Cells[0]": 1.5 is not a whole number, as Byte needs`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := r.Encode(c.typ, jsonValue(t, c.json))
			if err == nil || err.Error() != c.want {
				t.Fatalf("error %v\nwant %s", err, c.want)
			}
			if errors.Is(err, ErrRange) != c.isRange {
				t.Errorf("errors.Is(err, ErrRange) = %v", !c.isRange)
			}
		})
	}
}
