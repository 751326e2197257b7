package opcua

import (
	"fmt"
	"reflect"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/uadecode"
	"github.com/tagbridge/tagbridge/collectors/opcua/uafast"
	"github.com/tagbridge/tagbridge/collectors/opcua/uafast/uafasttest"
	"github.com/tagbridge/tagbridge/config"
)

// fastSeeds are PublishResponses with a value of every built-in type in
// every DataValue form, and one of many Doubles.
func fastSeeds(tb testing.TB) [][]byte {
	var all []*ua.DataValue
	var msgs [][]byte
	for _, v := range uafasttest.Values(tb) {
		all = append(all, uafasttest.Full(v), &ua.DataValue{EncodingMask: ua.DataValueValue, Value: v})
	}
	msgs = append(msgs,
		uafasttest.Message(tb, uafasttest.Publish(all...)),
		uafasttest.Message(tb, uafasttest.Publish(all[:len(all)-8]...)), // without the nesting types: fast
		uafasttest.Message(tb, uafasttest.Publish(uafasttest.Doubles(5)...)),
		uafasttest.Message(tb, uafasttest.Publish(&ua.DataValue{}, &ua.DataValue{EncodingMask: ua.DataValueStatusCode | ua.DataValueSourceTimestamp, Status: ua.StatusBadNoCommunication})),
		uafasttest.WithVariant(tb, uafasttest.ByteStrings()),
		uafasttest.Message(tb, uafasttest.Publish(stamped(0, 0, false), stamped(1, 0, false), stamped(1, 0, true), stamped(1, 50, true), stamped(1, 50, false), stamped(0, 50, true))),
	)
	return msgs
}

// stamped is a DataValue whose timestamps are offset by sec seconds, with
// picoseconds when withPicos: consecutive items that differ only there.
func stamped(sec int, picos uint16, withPicos bool) *ua.DataValue {
	dv := uafasttest.Full(ua.MustVariant(int32(sec)))
	dv.SourceTimestamp = dv.SourceTimestamp.Add(time.Duration(sec) * time.Second)
	dv.ServerTimestamp = dv.ServerTimestamp.Add(time.Duration(sec) * time.Second)
	dv.SourcePicoseconds, dv.ServerPicoseconds = picos, picos
	if !withPicos {
		dv.EncodingMask &^= ua.DataValueSourcePicoseconds | ua.DataValueServerPicoseconds
	}
	return dv
}

// TestSamplesFromItems: the fast path's samples are those of the
// reflective path for every covered value.
func TestSamplesFromItems(t *testing.T) {
	fast := 0
	for _, msg := range fastSeeds(t) {
		if requireSameSamples(t, msg) {
			fast++
		}
	}
	if fast != 5 {
		t.Errorf("%d of 6 messages took the fast path, want 5", fast)
	}
}

// FuzzSamplesFromItems: whatever message the fast decoder takes, its
// samples are those of uadecode and sampleFrom. The seeds run in the
// normal suite.
func FuzzSamplesFromItems(f *testing.F) {
	for _, msg := range fastSeeds(f) {
		f.Add(msg)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		requireSameSamples(t, b)
	})
}

// requireSameSamples compares the two paths on msg; it reports whether the
// fast one took it.
func requireSameSamples(t *testing.T, msg []byte) bool {
	t.Helper()
	res, ok := uafast.Decode(msg)
	if !ok {
		return false
	}
	_, v, err := uadecode.Service(msg)
	if err != nil {
		t.Fatalf("fast path took what uadecode refuses: %v", err)
	}
	want := v.(*ua.PublishResponse)
	for i, eo := range res.NotificationMessage.NotificationData {
		items := eo.Value.(*uafast.DataChange).Items
		wantItems := want.NotificationMessage.NotificationData[i].Value.(*ua.DataChangeNotification).MonitoredItems
		var seen itemCache // shared by the items, as in samplesFromItems
		for j := range items {
			got := collectors.Sample{PLC: "plc", Tag: "tag", Node: "ns=1;s=x"}
			fillSample(&got, &items[j], &seen)
			w := sampleFrom("plc", "tag", "ns=1;s=x", wantItems[j].Value)
			if !sameSample(got, w) {
				t.Fatalf("item %d:\nfast:   %#v\nuadecode: %#v", j, got, w)
			}
			if c := got; !c.Unboxed && c.Unbox() {
				t.Fatalf("item %d: %s %#v left boxed", j, got.Type, got.Value)
			}
		}
	}
	return true
}

// sameSample is DeepEqual of the samples with their values read through
// Any (the fast path carries scalars unboxed), but NaN equals NaN.
func sameSample(a, b collectors.Sample) bool {
	a, b = boxed(a), boxed(b)
	return reflect.DeepEqual(a, b) || fmt.Sprintf("%T %#v", a.Value, a) == fmt.Sprintf("%T %#v", b.Value, b)
}

// boxed is s with its value in Value.
func boxed(s collectors.Sample) collectors.Sample {
	s.Value, s.Bits, s.Unboxed = s.Any(), 0, false
	return s
}

// TestUnboxedSurvivesCollection: a batch's numbers keep their values and
// types after the decoded message is unreachable and collected, and are
// carried unboxed.
func TestUnboxedSurvivesCollection(t *testing.T) {
	msg := uafasttest.Message(t, uafasttest.Publish(uafasttest.Doubles(100)...))
	res, ok := uafast.Decode(msg)
	if !ok {
		t.Fatal("declined")
	}
	s := &Session{tags: testTags(100)}
	batch := s.samplesFromItems(res.NotificationMessage.NotificationData[0].Value.(*uafast.DataChange))
	res = nil
	for range 3 {
		runtime.GC()
	}
	for i, smp := range batch {
		if want := float64(i)*0.5 + 1000.25; smp.Any() != want || !smp.Unboxed || smp.Value != nil {
			t.Fatalf("sample %d: %#v, want %v unboxed", i, smp, want)
		}
	}
}

// TestSamplesFromItemsAllocs: from the message to the batch of samples,
// Doubles cost no allocation a value (the batch, the response and the
// items' slice are a few a message).
func TestSamplesFromItemsAllocs(t *testing.T) {
	const n = 1000
	msg := uafasttest.Message(t, uafasttest.Publish(uafasttest.Doubles(n)...))
	s := &Session{tags: testTags(n)}
	allocs := testing.AllocsPerRun(20, func() {
		res, ok := uafast.Decode(msg)
		if !ok {
			t.Fatal("declined")
		}
		dc := res.NotificationMessage.NotificationData[0].Value.(*uafast.DataChange)
		if len(s.samplesFromItems(dc)) != n {
			t.Fatal("samples missing")
		}
		dc.Release()
	})
	if allocs > 20 {
		t.Errorf("%.0f allocations for %d values, want at most 20", allocs, n)
	}
}

// testTags is a tag table of n tags of one PLC entry.
func testTags(n int) []tagRef {
	cfg := make([]config.Tag, n)
	tags := make([]tagRef, n)
	for i := range tags {
		cfg[i] = config.Tag{Name: fmt.Sprintf("Tag%05d", i), Node: config.NodeID{Raw: fmt.Sprintf("ns=1;s=Tag%05d", i)}}
		tags[i] = tagRef{plc: "plc", Tag: &cfg[i]}
	}
	return tags
}

// BenchmarkDecodeSamples: a PublishResponse of 1,000 Doubles with status
// and timestamps, from the bytes to the batch of samples, on the fast
// path and on the reflective one (uadecode, then sampleFrom).
func BenchmarkDecodeSamples(b *testing.B) {
	const n = 1000
	msg := uafasttest.Message(b, uafasttest.Publish(uafasttest.Doubles(n)...))
	s := &Session{tags: testTags(n)}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		m := startPerValue()
		for b.Loop() {
			res, ok := uafast.Decode(msg)
			if !ok {
				b.Fatal("declined")
			}
			for _, eo := range res.NotificationMessage.NotificationData {
				dc := eo.Value.(*uafast.DataChange)
				if len(s.samplesFromItems(dc)) != n {
					b.Fatal("samples missing")
				}
				dc.Release() // as the engine does after delivery
			}
		}
		m.report(b, n)
	})
	b.Run("uadecode", func(b *testing.B) {
		b.ReportAllocs()
		m := startPerValue()
		for b.Loop() {
			_, v, err := uadecode.Service(msg)
			if err != nil {
				b.Fatal(err)
			}
			for _, eo := range v.(*ua.PublishResponse).NotificationMessage.NotificationData {
				items := eo.Value.(*ua.DataChangeNotification).MonitoredItems
				batch := make(collectors.Batch, 0, len(items))
				for _, it := range items {
					tag := s.tags[it.ClientHandle]
					batch = append(batch, sampleFrom(tag.plc, tag.Name, tag.Node.String(), it.Value))
				}
			}
		}
		m.report(b, n)
	})
}

// perValueMeter reports a benchmark's time and allocations per value.
// The machine is shared: CPU time (the process's, GC included) says more
// than wall time.
type perValueMeter struct {
	mallocs uint64
	cpu     time.Duration
}

func startPerValue() perValueMeter {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return perValueMeter{mallocs: ms.Mallocs, cpu: processCPU()}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report: the op handled n values.
func (m perValueMeter) report(b *testing.B, n int) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	values := float64(b.N) * float64(n)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/values, "ns/value")
	b.ReportMetric(float64(ms.Mallocs-m.mallocs)/values, "allocs/value")
	b.ReportMetric(float64(processCPU()-m.cpu)/values, "cpu-ns/value")
}
