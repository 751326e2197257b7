package publish

import (
	"testing"
	"time"
)

// TestLatencyMarks: records are measured once each, from their own mark,
// also when an acknowledgement covers only part of a mark.
func TestLatencyMarks(t *testing.T) {
	var l latency
	t0 := time.Unix(1000, 0)
	l.taken(0, 4, t0)                    // records 0-3
	l.taken(4, 4, t0)                    // an event that made no record
	l.taken(4, 6, t0.Add(2*time.Second)) // records 4-5
	l.acked(1, t0.Add(50*time.Millisecond))
	l.acked(4, t0.Add(3*time.Second)) // 2-3 from the first mark, 4 from the second
	l.acked(4, t0.Add(4*time.Second)) // again: nothing new
	h := l.histogram()
	if h.Count != 5 {
		t.Fatalf("count %d, want 5", h.Count)
	}
	if want := 2*0.05 + 2*3 + 1; h.Sum < want-1e-9 || h.Sum > want+1e-9 {
		t.Errorf("sum %v, want %v", h.Sum, want)
	}
	if h.Buckets[0.05] != 2 || h.Buckets[1] != 3 || h.Buckets[2.5] != 3 || h.Buckets[5] != 5 {
		t.Errorf("buckets %v", h.Buckets)
	}
	l.acked(5, t0.Add(2100*time.Millisecond))
	if h := l.histogram(); h.Count != 6 || len(l.marks) != 0 {
		t.Errorf("after the last: count %d, %d marks left", h.Count, len(l.marks))
	}
}
