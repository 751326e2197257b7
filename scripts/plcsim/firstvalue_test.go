package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
)

// TestFirstValueNotRepeated creates monitored items in small calls while
// every value changes every 20ms: an item created after a change stored the
// new value but before that change was sent must get that value once, as
// its first value, not again as the change (benchrun counts such a repeat
// as a duplicate).
func TestFirstValueNotRepeated(t *testing.T) {
	const perCall = 10
	// Many tags make the change long, and with it the time in which a new
	// item can take the changed value before the change is sent.
	tags, counters := 40000, 2000
	if raceEnabled() {
		tags, counters = 10000, 500 // -race makes the change long enough
	}
	entries := printTags(t, "-tags", fmt.Sprint(tags))
	c := connect(t, startPLCSim(t, "-tags", fmt.Sprint(tags), "-interval", "20ms").url)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	notes := make(chan *opcua.PublishNotificationData, 4096)
	sub, err := c.Subscribe(ctx, &opcua.SubscriptionParameters{Interval: 5 * time.Millisecond}, notes)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(func() { _ = sub.Cancel(context.WithoutCancel(ctx)) })

	values := map[uint32][]int32{}
	collect := func(n *opcua.PublishNotificationData) {
		if n.Error != nil {
			t.Fatalf("notification error: %v", n.Error)
		}
		dc, ok := n.Value.(*ua.DataChangeNotification)
		if !ok {
			return
		}
		for _, item := range dc.MonitoredItems {
			v, ok := item.Value.Value.Value().(int32)
			if !ok {
				t.Fatalf("handle %d: value %T, want int32", item.ClientHandle, item.Value.Value.Value())
			}
			values[item.ClientHandle] = append(values[item.ClientHandle], v)
		}
	}
	var reqs []*ua.MonitoredItemCreateRequest
	for i, e := range entries[:4*counters] {
		if i%4 != 1 { // the Int32 counters
			continue
		}
		reqs = append(reqs, opcua.NewMonitoredItemCreateRequestWithDefaults(ua.MustParseNodeID(e.Node), ua.AttributeIDValue, uint32(i)))
		if len(reqs) < perCall {
			continue
		}
		if _, err := sub.Monitor(ctx, ua.TimestampsToReturnBoth, reqs...); err != nil {
			t.Fatalf("monitor: %v", err)
		}
		reqs = reqs[:0]
		for drained := false; !drained; {
			select {
			case n := <-notes:
				collect(n)
			default:
				drained = true
			}
		}
	}
	// A few changes more, and every counter's first value.
	settle, limit := time.After(500*time.Millisecond), time.After(10*time.Second)
	for settled := false; !settled || len(values) < counters; {
		select {
		case n := <-notes:
			collect(n)
		case <-settle:
			settled = true
		case <-limit:
			t.Fatalf("values of %d counters within 10 s, want %d", len(values), counters)
		}
	}

	repeats := 0
	for h, vs := range values {
		for i := 1; i < len(vs); i++ {
			if vs[i] <= vs[i-1] {
				if repeats < 5 {
					t.Errorf("%s: %d followed by %d: %v", entries[h].Name, vs[i-1], vs[i], vs[:min(len(vs), i+3)])
				}
				repeats++
				break
			}
		}
	}
	if repeats > 0 {
		t.Errorf("%d of %d counters repeated a value", repeats, len(values))
	}
}
