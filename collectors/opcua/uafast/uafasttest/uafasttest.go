// Package uafasttest builds the PublishResponses that the fast decoder's
// tests and benchmarks feed it, with gopcua's encoder.
package uafasttest

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
)

var (
	t1 = time.Date(2026, 3, 4, 5, 6, 7, 890_123_400, time.UTC)
	t0 = time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Message encodes v, a service, as a message body: its type id, then v.
func Message(tb testing.TB, v any) []byte {
	tb.Helper()
	id := ua.ServiceTypeID(v)
	if id == 0 {
		tb.Fatalf("%T is not a registered service", v)
	}
	head, err := ua.NewFourByteExpandedNodeID(0, id).Encode()
	if err != nil {
		tb.Fatal(err)
	}
	body, err := ua.Encode(v)
	if err != nil {
		tb.Fatalf("encode %T: %v", v, err)
	}
	return append(head, body...)
}

// Publish is a PublishResponse whose one DataChangeNotification carries
// the given DataValues, client handles 0, 1, 2, ...
func Publish(values ...*ua.DataValue) *ua.PublishResponse {
	items := make([]*ua.MonitoredItemNotification, len(values))
	for i, v := range values {
		items[i] = &ua.MonitoredItemNotification{ClientHandle: uint32(i), Value: v}
	}
	return &ua.PublishResponse{
		ResponseHeader: &ua.ResponseHeader{
			Timestamp: t1, RequestHandle: 42, ServiceDiagnostics: &ua.DiagnosticInfo{},
			AdditionalHeader: ua.NewExtensionObject(nil),
		},
		SubscriptionID: 7, AvailableSequenceNumbers: []uint32{3, 4}, MoreNotifications: true,
		NotificationMessage: &ua.NotificationMessage{SequenceNumber: 4, PublishTime: t1, NotificationData: []*ua.ExtensionObject{
			ua.NewExtensionObject(&ua.DataChangeNotification{MonitoredItems: items, DiagnosticInfos: []*ua.DiagnosticInfo{}}),
		}},
		Results: []ua.StatusCode{ua.StatusOK, ua.StatusBadSequenceNumberUnknown},
	}
}

// Full is a DataValue of v with every field sent.
func Full(v *ua.Variant) *ua.DataValue {
	return &ua.DataValue{
		EncodingMask: ua.DataValueValue | ua.DataValueStatusCode | ua.DataValueSourceTimestamp |
			ua.DataValueSourcePicoseconds | ua.DataValueServerTimestamp | ua.DataValueServerPicoseconds,
		Value: v, Status: ua.StatusUncertainLastUsableValue,
		SourceTimestamp: t1, SourcePicoseconds: 12_345, ServerTimestamp: t1.Add(time.Millisecond), ServerPicoseconds: 9,
	}
}

// Doubles is n DataValues of Doubles with a status and both timestamps,
// as a PLC sends them.
func Doubles(n int) []*ua.DataValue {
	out := make([]*ua.DataValue, n)
	for i := range out {
		out[i] = &ua.DataValue{
			EncodingMask: ua.DataValueValue | ua.DataValueStatusCode | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
			Value:        ua.MustVariant(float64(i)*0.5 + 1000.25), SourceTimestamp: t1, ServerTimestamp: t1,
		}
	}
	return out
}

// Values are one Variant of every built-in type the fast path covers, as a
// scalar and as an array, with their edge cases, and some it leaves to
// uadecode (the nesting types and matrices).
func Values(tb testing.TB) []*ua.Variant {
	tb.Helper()
	guid := ua.NewGUID("72962B91-FA75-4AE6-8D28-B404DC7DAF63")
	values := []any{
		nil, true, false, int8(-8), uint8(200), int16(-16), uint16(16), int32(-32), int32(7), uint32(32),
		int64(-64), uint64(1 << 63), float32(1.5), float32(math.NaN()), -2.25, math.Inf(1), math.NaN(),
		"Grüße", "", t1, t0, time.Time{}, guid,
		[]byte{0, 1, 2}, []byte(nil), ua.XMLElement("<a/>"), ua.XMLElement(""), ua.StatusBadNodeIDUnknown,
		&ua.QualifiedName{NamespaceIndex: 2, Name: "Temp"}, &ua.QualifiedName{},
		ua.NewLocalizedText("hot"), ua.NewLocalizedTextWithLocale("heiß", "de"), &ua.LocalizedText{},
		ua.NewNumericNodeID(0, 5), ua.NewFourByteNodeID(1, 300), ua.NewNumericNodeID(9, 70000),
		ua.NewStringNodeID(2, "Line1.Temp"), ua.NewByteStringNodeID(3, []byte{1, 2}), ua.NewGUIDNodeID(4, guid.String()),
		ua.NewStringExpandedNodeID(2, "x"), &ua.ExpandedNodeID{NodeID: ua.NewStringNodeID(0, "y"), NamespaceURI: "urn:a", ServerIndex: 3},
		[]bool{true, false}, []int8{-1, 1}, ua.ByteArray{1, 2, 3}, ua.ByteArray{}, ua.ByteArray(nil),
		[]int16{-1}, []uint16{1}, []int32{}, []int32(nil), []int32{1, -2, 3}, []uint32{1, 2}, []int64{-5}, []uint64{5},
		[]float32{1.25}, []float64{2.5, -0.0}, []string{"a", "", "c"}, []string(nil), []time.Time{t1, {}},
		[]*ua.GUID{guid}, []ua.XMLElement{"<x/>"},
		[]*ua.NodeID{ua.NewNumericNodeID(0, 1), ua.NewStringNodeID(5, "s")},
		[]*ua.ExpandedNodeID{ua.NewNumericExpandedNodeID(1, 2)},
		[]ua.StatusCode{ua.StatusOK, ua.StatusBad},
		[]*ua.QualifiedName{{NamespaceIndex: 1, Name: "q"}}, []*ua.LocalizedText{ua.NewLocalizedText("t")},
		// left to uadecode
		ua.MustVariant(int32(1)), &ua.DataValue{EncodingMask: ua.DataValueStatusCode, Status: ua.StatusBad},
		[][]int32{{1, 2, 3}, {4, 5, 6}}, &ua.DiagnosticInfo{},
	}
	out := make([]*ua.Variant, 0, len(values))
	for _, v := range values {
		nv, err := ua.NewVariant(v)
		if err != nil {
			tb.Fatalf("variant of %T: %v", v, err)
		}
		out = append(out, nv)
	}
	return out
}

// WithVariant is the message of Publish(Full(v)) with v's encoding
// replaced by raw: for encodings gopcua's encoder does not write (arrays of
// ByteString) and hostile ones.
func WithVariant(tb testing.TB, raw []byte) []byte {
	tb.Helper()
	const mark = "\x00splice\x00"
	res := Publish(Full(ua.MustVariant(mark)))
	msg := Message(tb, res)
	body, err := ua.Encode(res.NotificationMessage.NotificationData[0].Value)
	if err != nil {
		tb.Fatal(err)
	}
	at := bytes.Index(msg, body)
	enc, err := ua.MustVariant(mark).Encode()
	if err != nil || at < 4 {
		tb.Fatalf("no notification body in the message (%v)", err)
	}
	v := bytes.Index(msg, enc)
	out := append(append(append([]byte(nil), msg[:v]...), raw...), msg[v+len(enc):]...)
	binary.LittleEndian.PutUint32(out[at-4:], uint32(len(body)-len(enc)+len(raw)))
	return out
}

// ByteStrings is a Variant array of ByteStrings (one empty, one null).
func ByteStrings() []byte {
	return []byte{0x8f, 4, 0, 0, 0, 2, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 9}
}
