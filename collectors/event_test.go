package collectors

import (
	"context"
	"fmt"
	"testing"
)

// TestRelayOrder: a collector's batches and its state changes come out of
// Relay in the order the collector made them, its last state change
// (stopped) included, and Relay returns the collector's result.
func TestRelayOrder(t *testing.T) {
	tr := NewTracker("opc.tcp://plc:4840", "press1")
	out := make(chan Event, 64)
	want := fmt.Errorf("run result")
	err := Relay(t.Context(), out, tr, func(ctx context.Context, batches chan<- Batch) error {
		defer tr.SetState(StateStopped, "")
		for i := range 10 {
			batches <- Batch{{PLC: "press1", Tag: "t", Value: int64(i)}}
			if i%3 == 0 {
				tr.SetState([]string{StateStreaming, StateRecovering}[i%2], "")
			}
		}
		return want
	})
	if err != want {
		t.Fatalf("Relay = %v, want %v", err, want)
	}
	close(out)
	var got []string
	for ev := range out {
		switch {
		case ev.Batch != nil && ev.State == nil:
			got = append(got, fmt.Sprint(ev.Batch[0].Value))
		case ev.State != nil && ev.Batch == nil:
			got = append(got, ev.State.State)
		default:
			t.Fatalf("event with both or neither: %+v", ev)
		}
	}
	wantSeq := fmt.Sprint([]string{"0", "streaming", "1", "2", "3", "recovering", "4", "5", "6", "streaming", "7", "8", "9", "recovering", "stopped"})
	if fmt.Sprint(got) != wantSeq {
		t.Errorf("events %v\nwant   %v", got, wantSeq)
	}
	// After Relay, the tracker sends nowhere: a state change does not block.
	tr.SetState(StateConnecting, "")
}
