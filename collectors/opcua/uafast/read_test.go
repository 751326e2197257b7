package uafast

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors/opcua/uafast/uafasttest"
)

// readResponse is a ReadResponse of the given results.
func readResponse(results ...*ua.DataValue) *ua.ReadResponse {
	return &ua.ReadResponse{
		ResponseHeader: uafasttest.Publish().ResponseHeader,
		Results:        results,
	}
}

// readSeeds: the start-up reads' answers (DataType, ValueRank,
// Historizing, refusals), every covered scalar, and what is declined.
func readSeeds(tb testing.TB) [][]byte {
	msgs := [][]byte{
		uafasttest.Message(tb, readResponse(
			&ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(ua.NewNumericNodeID(0, 11))},
			&ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(-1))},
			&ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(ua.NewStringNodeID(3, "MyStruct"))},
			&ua.DataValue{EncodingMask: ua.DataValueStatusCode, Status: ua.StatusBadNodeIDUnknown},
			&ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(true)},
			&ua.DataValue{},
		)),
		uafasttest.Message(tb, readResponse()),
		uafasttest.Message(tb, &ua.ReadResponse{ResponseHeader: uafasttest.Publish().ResponseHeader}),
		uafasttest.Message(tb, uafasttest.Publish(uafasttest.Doubles(2)...)),
	}
	for _, v := range uafasttest.Values(tb) {
		msgs = append(msgs, uafasttest.Message(tb, readResponse(uafasttest.Full(v), &ua.DataValue{EncodingMask: ua.DataValueValue, Value: v})))
	}
	return msgs
}

// TestDecodeReadCovers: the start-up reads' answers and every covered
// scalar take the fast path; arrays and the nesting types are declined.
func TestDecodeReadCovers(t *testing.T) {
	seeds := readSeeds(t)
	if _, ok := DecodeRead(seeds[0]); !ok {
		t.Error("the start-up reads' answer declined")
	}
	taken := 0
	for _, msg := range seeds {
		if _, ok := DecodeRead(msg); ok {
			taken++
		}
		requireSameRead(t, msg)
	}
	// 3 of the first 4, and of Values the scalars but the nesting two
	// (ExtensionObject's Variant, DataValue) and DiagnosticInfo.
	scalars := 0
	for _, v := range uafasttest.Values(t) {
		if !v.Has(ua.VariantArrayValues) && v.Type() < ua.TypeIDExtensionObject {
			scalars++
		}
	}
	if want := 3 + scalars; taken != want {
		t.Errorf("%d messages taken, want %d", taken, want)
	}
}

// FuzzDecodeRead: whatever DecodeRead accepts, uadecode decodes to the
// same response; DecodeRead never panics.
func FuzzDecodeRead(f *testing.F) {
	for _, msg := range readSeeds(f) {
		f.Add(msg)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		requireSameRead(t, b)
	})
}

func requireSameRead(t *testing.T, b []byte) {
	t.Helper()
	got, ok := DecodeRead(b)
	want, ok := uadecodeAgrees(t, b, got, ok, got == nil)
	if !ok {
		return
	}
	if len(got.Results) != len(want.Results) || len(got.DiagnosticInfos) != len(want.DiagnosticInfos) {
		t.Fatalf("%d results, %d diagnostics; uadecode %d, %d", len(got.Results), len(got.DiagnosticInfos), len(want.Results), len(want.DiagnosticInfos))
	}
	for i, g := range got.Results {
		if reflect.DeepEqual(g, want.Results[i]) {
			continue
		}
		a, err1 := g.Encode()
		w, err2 := want.Results[i].Encode()
		if err1 != nil || err2 != nil || !bytes.Equal(a, w) { // NaN is not DeepEqual to itself
			t.Fatalf("result %d %#v (%v), uadecode %#v (%v)", i, g, g.Value, want.Results[i], want.Results[i].Value)
		}
	}
}
