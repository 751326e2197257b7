package collectors

import (
	"testing"
	"time"
)

// TestTrackerLastValue: each entry's latest value time, none before one.
func TestTrackerLastValue(t *testing.T) {
	tr := NewTracker("opc.tcp://plc:4840", "press1", "press2")
	before := time.Now()
	tr.Collected(Batch{{PLC: "press1", Tag: "t"}})
	st := tr.Snapshot()
	if st[0].LastValueAt.Before(before) || st[0].LastValueAt.After(time.Now()) {
		t.Errorf("press1 last value at %v, want between %v and now", st[0].LastValueAt, before)
	}
	if !st[1].LastValueAt.IsZero() {
		t.Errorf("press2 last value at %v, want none", st[1].LastValueAt)
	}
}
