package collectors

import (
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"
)

// TestUnboxRoundTrip: every scalar SetBits holds comes back from Any as
// the same Go value, bit for bit, and leaves Value nil.
func TestUnboxRoundTrip(t *testing.T) {
	ts := time.Date(2026, 11, 22, 10, 15, 30, 123456789, time.UTC)
	cases := []struct {
		typ Type
		v   any
	}{
		{TypeBoolean, true}, {TypeBoolean, false},
		{TypeSByte, int8(-128)}, {TypeSByte, int8(127)},
		{TypeByte, uint8(255)},
		{TypeInt16, int16(-32768)}, {TypeUInt16, uint16(65535)},
		{TypeInt32, int32(math.MinInt32)}, {TypeUInt32, uint32(math.MaxUint32)},
		{TypeInt64, int64(math.MinInt64)}, {TypeInt64, int64(-1)}, {TypeUInt64, uint64(math.MaxUint64)},
		{TypeFloat, float32(-1.5)}, {TypeFloat, float32(math.Inf(-1))}, {TypeFloat, math.Float32frombits(0x7fc00001)},
		{TypeDouble, 21.5}, {TypeDouble, math.Copysign(0, -1)}, {TypeDouble, math.NaN()}, {TypeDouble, math.Inf(1)},
		{TypeStatusCode, StatusCode(0x80050000)},
		{TypeDateTime, ts}, {TypeDateTime, time.Unix(0, math.MinInt64).UTC()},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%v %v", c.typ, c.v), func(t *testing.T) {
			s := Sample{Type: c.typ, Value: c.v}
			if !s.Unbox() {
				t.Fatal("not unboxed")
			}
			if s.Value != nil || !s.Unboxed || !s.HasValue() || s.Type != c.typ {
				t.Fatalf("after Unbox: %#v", s)
			}
			if got := s.Any(); fmt.Sprintf("%T %#v", got, got) != fmt.Sprintf("%T %#v", c.v, c.v) || !sameBits(got, c.v) {
				t.Fatalf("Any() = %T %#v, want %T %#v", got, got, c.v, c.v)
			}
		})
	}
}

// sameBits compares floats by their bits (NaN payloads, -0), the rest
// with DeepEqual.
func sameBits(a, b any) bool {
	switch x := a.(type) {
	case float32:
		y, ok := b.(float32)
		return ok && math.Float32bits(x) == math.Float32bits(y)
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	}
	return reflect.DeepEqual(a, b)
}

// TestUnboxRefuses: values whose Go type is not the sample's Type, that
// are no scalar numbers, or times that nanoseconds since 1970 in UTC do not
// give back exactly, stay in Value.
func TestUnboxRefuses(t *testing.T) {
	for name, s := range map[string]Sample{
		"int32 as Double":  {Type: TypeDouble, Value: int32(1)},
		"int64 as Int32":   {Type: TypeInt32, Value: int64(1)},
		"string":           {Type: TypeString, Value: "x"},
		"array":            {Type: TypeDouble | TypeArray, Value: []any{1.5}},
		"no value":         {Type: TypeDouble},
		"local time":       {Type: TypeDateTime, Value: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("CET", 3600))},
		"time past 2262":   {Type: TypeDateTime, Value: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"monotonic time":   {Type: TypeDateTime, Value: time.Now()},
		"text":             {Type: TypeLocalizedText, Value: LocalizedText{Text: "x"}},
		"enum-less status": {Type: TypeUInt32, Value: StatusCode(0)},
	} {
		before := s
		if s.Unbox() || !reflect.DeepEqual(s, before) {
			t.Errorf("%s: unboxed to %#v", name, s)
		}
	}
	var none Sample
	if none.HasValue() || none.Any() != nil {
		t.Errorf("zero sample has a value: %#v", none.Any())
	}
}

// TestSampleSize: the batch of a PublishResponse is one Sample per value;
// growing it grows every batch.
func TestSampleSize(t *testing.T) {
	if size := reflect.TypeFor[Sample]().Size(); size != 128 {
		t.Errorf("Sample is %d bytes, want 128", size)
	}
}
