package uafast

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors/opcua/uadecode"
	"github.com/tagbridge/tagbridge/collectors/opcua/uafast/uafasttest"
)

// seeds are PublishResponses with every covered type, the edge cases of
// the DataValue mask, a keep-alive, and messages the fast path declines.
func seeds(tb testing.TB) [][]byte {
	values := uafasttest.Values(tb)
	var msgs [][]byte
	var all []*ua.DataValue
	for _, v := range values {
		msgs = append(msgs, uafasttest.Message(tb, uafasttest.Publish(uafasttest.Full(v))))
		all = append(all, uafasttest.Full(v), &ua.DataValue{EncodingMask: ua.DataValueValue, Value: v})
	}
	msgs = append(msgs,
		uafasttest.WithVariant(tb, uafasttest.ByteStrings()),
		uafasttest.WithVariant(tb, []byte{0x86, 0xfe, 0xff, 0xff, 0xff}),       // Int32 array of length -2
		uafasttest.WithVariant(tb, []byte{0x86, 0xff, 0xff, 0xff, 0xff}),       // null Int32 array
		uafasttest.WithVariant(tb, []byte{0x46, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0}), // a scalar with dimensions
		uafasttest.WithVariant(tb, []byte{0x40}),                               // flags on a null Variant
		uafasttest.WithVariant(tb, []byte{0x1a, 0, 0}),                         // type 26
		uafasttest.Message(tb, uafasttest.Publish(all[:len(all)-8]...)),
		uafasttest.Message(tb, uafasttest.Publish(uafasttest.Doubles(3)...)),
		uafasttest.Message(tb, uafasttest.Publish(&ua.DataValue{}, &ua.DataValue{EncodingMask: ua.DataValueStatusCode, Status: ua.StatusBadNoCommunication})),
		uafasttest.Message(tb, uafasttest.Publish()),
	)
	keepAlive := uafasttest.Publish()
	keepAlive.NotificationMessage.NotificationData = nil
	keepAlive.Results = nil
	msgs = append(msgs, uafasttest.Message(tb, keepAlive))
	status := uafasttest.Publish()
	status.NotificationMessage.NotificationData = []*ua.ExtensionObject{ua.NewExtensionObject(&ua.StatusChangeNotification{Status: ua.StatusBadTimeout, DiagnosticInfo: &ua.DiagnosticInfo{}})}
	msgs = append(msgs, uafasttest.Message(tb, status))
	msgs = append(msgs, uafasttest.Message(tb, &ua.ReadResponse{ResponseHeader: &ua.ResponseHeader{AdditionalHeader: ua.NewExtensionObject(nil), ServiceDiagnostics: &ua.DiagnosticInfo{}}}))
	return msgs
}

// TestDecodeCovers: the fast path takes every covered type and declines
// the nesting ones, matrices and other notifications.
func TestDecodeCovers(t *testing.T) {
	values := uafasttest.Values(t)
	declined := 0
	for _, v := range values {
		msg := uafasttest.Message(t, uafasttest.Publish(uafasttest.Full(v)))
		_, ok := Decode(msg)
		nests := v.Type() >= ua.TypeIDExtensionObject || v.Has(ua.VariantArrayDimensions)
		if ok == nests {
			t.Errorf("%v (%T): fast path took it %v", v.Type(), v.Value(), ok)
		}
		if !ok {
			declined++
		}
		requireSame(t, msg)
	}
	if declined != 4 {
		t.Errorf("%d values declined, want the 4 nesting or matrix ones", declined)
	}
	for _, msg := range seeds(t) {
		requireSame(t, msg)
	}
	if _, ok := Decode(uafasttest.WithVariant(t, uafasttest.ByteStrings())); !ok {
		t.Error("an array of ByteStrings declined")
	}
}

// FuzzDecode: whatever Decode accepts, uadecode decodes to the same
// values; Decode never panics. Declined messages go to uadecode, so their
// error is uadecode's by construction.
func FuzzDecode(f *testing.F) {
	for _, msg := range seeds(f) {
		f.Add(msg)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		requireSame(t, b)
	})
}

// uadecodeAgrees checks a fast decoder's outcome for b against uadecode: a
// decline (ok false) carries no value (isNil), and an accepted message is
// one uadecode decodes too, into a W with the same header. It returns
// uadecode's W when the fast path accepted b.
func uadecodeAgrees[W interface{ Header() *ua.ResponseHeader }](t *testing.T, b []byte, got W, ok, isNil bool) (W, bool) {
	t.Helper()
	var zero W
	if !ok {
		if !isNil {
			t.Fatal("declined with a value")
		}
		return zero, false
	}
	_, v, err := uadecode.Service(b)
	if err != nil {
		t.Fatalf("fast path accepted what uadecode refuses: %v", err)
	}
	want, isW := v.(W)
	if !isW {
		t.Fatalf("fast path accepted a %T", v)
	}
	if g, w := got.Header(), want.Header(); g.Timestamp != w.Timestamp || g.RequestHandle != w.RequestHandle || g.ServiceResult != w.ServiceResult {
		t.Fatalf("header %+v, uadecode %+v", g, w)
	}
	return want, true
}

func requireSame(t *testing.T, b []byte) {
	t.Helper()
	got, ok := Decode(b)
	want, ok := uadecodeAgrees(t, b, got, ok, got == nil)
	if !ok {
		return
	}
	if got.SubscriptionID != want.SubscriptionID || got.MoreNotifications != want.MoreNotifications ||
		fmt.Sprint(got.AvailableSequenceNumbers) != fmt.Sprint(want.AvailableSequenceNumbers) ||
		fmt.Sprint(got.Results) != fmt.Sprint(want.Results) || len(got.DiagnosticInfos) != len(want.DiagnosticInfos) {
		t.Fatalf("response %+v, uadecode %+v", got, want)
	}
	gm, wm := got.NotificationMessage, want.NotificationMessage
	if gm.SequenceNumber != wm.SequenceNumber || gm.PublishTime != wm.PublishTime || len(gm.NotificationData) != len(wm.NotificationData) {
		t.Fatalf("notification message %+v, uadecode %+v", gm, wm)
	}
	for i, eo := range gm.NotificationData {
		n := eo.Value.(*DataChange)
		wn, isDataChange := wm.NotificationData[i].Value.(*ua.DataChangeNotification)
		if !isDataChange || len(n.Items) != len(wn.MonitoredItems) {
			t.Fatalf("notification %d: %d items, uadecode %#v", i, len(n.Items), wm.NotificationData[i].Value)
		}
		again, err := n.Notification()
		if err != nil {
			t.Fatalf("Notification(): %v", err)
		}
		if !reflect.DeepEqual(again, wn) {
			a, err1 := ua.Encode(again)
			w, err2 := ua.Encode(wn)
			if err1 != nil || err2 != nil || !bytes.Equal(a, w) { // NaN is not DeepEqual to itself
				t.Fatalf("Notification() differs from uadecode's")
			}
		}
		for j := range n.Items {
			requireSameItem(t, &n.Items[j], wn.MonitoredItems[j])
		}
	}
}

func requireSameItem(t *testing.T, it *Item, w *ua.MonitoredItemNotification) {
	t.Helper()
	dv := w.Value
	if it.ClientHandle != w.ClientHandle || it.Mask != dv.EncodingMask || it.Status != dv.Status ||
		it.SourcePicos != dv.SourcePicoseconds || it.ServerPicos != dv.ServerPicoseconds {
		t.Fatalf("item %+v, uadecode %+v", it, dv)
	}
	if dv.Has(ua.DataValueSourceTimestamp) && it.SourceTime() != dv.SourceTimestamp ||
		dv.Has(ua.DataValueServerTimestamp) && it.ServerTime() != dv.ServerTimestamp {
		t.Fatalf("item times %v %v, uadecode %v %v", it.SourceTime(), it.ServerTime(), dv.SourceTimestamp, dv.ServerTimestamp)
	}
	wantType := ua.TypeIDNull
	var wantValue any
	if dv.Has(ua.DataValueValue) && dv.Value != nil {
		wantType, wantValue = dv.Value.Type(), dv.Value.Value()
	}
	if it.Type() != wantType {
		t.Fatalf("type %v, uadecode %v", it.Type(), wantType)
	}
	got := it.Value()
	if !reflect.DeepEqual(got, wantValue) && fmt.Sprintf("%T %#v", got, got) != fmt.Sprintf("%T %#v", wantValue, wantValue) {
		t.Fatalf("value %T %#v, uadecode %T %#v", got, got, wantValue, wantValue)
	}
	if s := it.String(); (wantType == ua.TypeIDString || wantType == ua.TypeIDXMLElement) && !it.IsArray() && s != fmt.Sprint(wantValue) {
		t.Fatalf("String() %q, uadecode %q", s, wantValue)
	}
}

// BenchmarkDecode: a PublishResponse of 1,000 Doubles with status and both
// timestamps into Items, without the samples (the collector's
// BenchmarkDecodeSamples has those), the Items released as the engine does.
func BenchmarkDecode(b *testing.B) {
	const n = 1000
	msg := uafasttest.Message(b, uafasttest.Publish(uafasttest.Doubles(n)...))
	b.ReportAllocs()
	for b.Loop() {
		res, ok := Decode(msg)
		if !ok {
			b.Fatal("declined")
		}
		for _, eo := range res.NotificationMessage.NotificationData {
			eo.Value.(*DataChange).Release()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/value")
	b.ReportMetric(0, "ns/op")
}
