package collectors

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestTrackerStates(t *testing.T) {
	tr := NewTracker("opc.tcp://plc:4840", "press1", "press2")
	var heard []PLCState
	tr.OnChange(func(s PLCState) { heard = append(heard, s) })

	if !tr.SetState(StateStreaming, "") {
		t.Fatal("connecting -> streaming reported no change")
	}
	if tr.SetState(StateStreaming, "") {
		t.Fatal("streaming -> streaming reported a change")
	}
	tr.NoteError(errors.New("EOF"))
	tr.SetState(StateDisconnected, "EOF")
	tr.SetState(StateStreaming, "")
	tr.SetState(StateRecovering, "channel lost")
	tr.NoteRecovery()
	tr.SetState(StateStreaming, "")

	want := []string{StateStreaming, StateStreaming, StateDisconnected, StateDisconnected,
		StateStreaming, StateStreaming, StateRecovering, StateRecovering, StateStreaming, StateStreaming}
	if len(heard) != len(want) {
		t.Fatalf("heard %d changes, want %d: %+v", len(heard), len(want), heard)
	}
	for i, s := range heard {
		if s.State != want[i] {
			t.Errorf("change %d: state %q, want %q", i, s.State, want[i])
		}
	}
	if heard[2].Reason != "EOF" || heard[2].PLC != "press1" || heard[3].PLC != "press2" {
		t.Errorf("disconnect changes: %+v %+v", heard[2], heard[3])
	}
	snap := tr.Snapshot()
	if len(snap) != 2 || snap[0].PLC != "press1" || snap[1].PLC != "press2" {
		t.Fatalf("snapshot order: %+v", snap)
	}
	// The first streaming is no reconnect, nor is a recovery.
	if s := snap[0]; s.Reconnects != 1 || s.Recoveries != 1 || s.LastError != "EOF" || s.Endpoint != "opc.tcp://plc:4840" {
		t.Errorf("counters: %+v", s)
	}
}

func TestTrackerValues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewTracker("e", "a", "b")
		tr.Collected(Batch{{PLC: "a"}, {PLC: "a"}, {PLC: "b"}, {PLC: "unknown"}})
		time.Sleep(2 * time.Second)
		tr.Collected(Batch{{PLC: "a"}, {PLC: "a"}})
		snap := tr.Snapshot()
		if snap[0].Values != 4 || snap[1].Values != 1 {
			t.Fatalf("values a=%d b=%d, want 4 and 1", snap[0].Values, snap[1].Values)
		}
		if snap[0].ValuesPerSec != 2 || snap[1].ValuesPerSec != 0.5 {
			t.Errorf("rates a=%v b=%v, want 2 and 0.5", snap[0].ValuesPerSec, snap[1].ValuesPerSec)
		}
		tr.SetTags("a", 9, 1)
		tr.SetClockOffset(-2 * time.Hour)
		tr.UpdateLink(func(l Link) Link { return testLink{Channel: 7} })
		s := tr.Snapshot()[0]
		if s.TagsOK != 9 || s.TagsFailed != 1 || s.ClockOffsetSeconds != -7200 || s.Link != (testLink{Channel: 7}) {
			t.Errorf("status: %+v", s)
		}
	})
}

// Snapshot only reads: a tracker read in between shows the same rate as
// one that was not; a window without any value shows 0.
func TestTrackerSnapshotReadsOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		read, unread := NewTracker("e", "a"), NewTracker("e", "a")
		for range 5 {
			for _, tr := range []*Tracker{read, unread} {
				tr.Collected(Batch{{PLC: "a"}, {PLC: "a"}, {PLC: "a"}, {PLC: "a"}})
			}
			time.Sleep(time.Second)
		}
		read.Snapshot()
		time.Sleep(1500 * time.Millisecond)
		if r, u := read.Snapshot()[0].ValuesPerSec, unread.Snapshot()[0].ValuesPerSec; r != u || r <= 0 {
			t.Fatalf("rate %v after a read in between, %v without: a read changed the rate", r, u)
		}
		time.Sleep(rateWindow)
		if r := read.Snapshot()[0].ValuesPerSec; r != 0 {
			t.Errorf("rate %v after a window without values, want 0", r)
		}
	})
}
