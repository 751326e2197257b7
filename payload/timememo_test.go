package payload

import (
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
)

// TestTimeMemo: the memo writes every timestamp exactly as AppendTime,
// whether it repeats, alternates, is the same instant in another zone or
// with a monotonic reading, or is too long to keep.
func TestTimeMemo(t *testing.T) {
	base := time.Date(2026, 11, 22, 10, 15, 30, 123456000, time.UTC)
	now := time.Now()
	times := []time.Time{
		base, base, base.Add(time.Millisecond), base, base.Add(time.Millisecond), base.Add(time.Millisecond),
		base.In(time.FixedZone("CET", 3600)), base.Add(2 * time.Nanosecond), base.Add(2 * time.Nanosecond),
		now, now.Round(0), now, time.Date(2026, 11, 22, 10, 15, 30, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 1, time.UTC), base,
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
	}
	var m timeMemo
	for i, at := range times {
		got, want := m.appendTime([]byte("x"), at), AppendTime([]byte("x"), at)
		if string(got) != string(want) {
			t.Errorf("timestamp %d (%v): %s, want %s", i, at, got, want)
		}
	}
}

// TestEncodeBatchTimes: a batch whose values share and change their
// timestamps encodes as AppendJSON writes each value.
func TestEncodeBatchTimes(t *testing.T) {
	f, err := NewJSON(Options{AgentID: "a1", Topic: "tagbridge/{agent}/{plc}/{tag}", Batch: true, BatchTopic: "tagbridge/{agent}/{plc}",
		MaxPacketSize: 1 << 20, PLCs: []PLC{{Name: "press1", Tags: []Tag{{Name: "t0"}, {Name: "t1"}, {Name: "t2"}}}}}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	src := time.Date(2026, 11, 22, 10, 15, 30, 123456000, time.UTC)
	var b collectors.Batch
	for i := range 12 {
		s := collectors.Sample{PLC: "press1", Tag: []string{"t0", "t1", "t2"}[i%3], Node: "ns=1;i=1", Value: float64(i), Type: collectors.TypeDouble,
			SourceTime: src.Add(time.Duration(i/4) * time.Millisecond), ServerTime: src.Add(time.Duration(i/6) * time.Second)}
		if i == 5 {
			s.SourceTime = time.Time{} // time falls back to the server's
		}
		b = append(b, s)
	}
	want := []byte{'['}
	for i := range b {
		if i > 0 {
			want = append(want, ',')
		}
		want = AppendJSON(want, &b[i])
	}
	want = append(want, ']')
	var got []string
	f.Encode(b, true, func(_ string, payload []byte) { got = append(got, string(payload)) })
	if len(got) != 1 || got[0] != string(want) {
		t.Errorf("Encode wrote %q,\nwant %s", got, want)
	}
}
