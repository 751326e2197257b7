package subscription

import (
	"context"
	"testing"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors/opcua/uafast"
	"github.com/tagbridge/tagbridge/collectors/opcua/uafast/uafasttest"
)

// TestDeliverFastDecoded: a notification the fast decoder read goes to
// DeliverItems, or decoded again to Deliver when DeliverItems is not set,
// and is acknowledged either way.
func TestDeliverFastDecoded(t *testing.T) {
	msg := uafasttest.Message(t, uafasttest.Publish(uafasttest.Doubles(3)...))
	for _, withItems := range []bool{true, false} {
		res, ok := uafast.Decode(msg)
		if !ok {
			t.Fatal("fast path declined a PublishResponse of Doubles")
		}
		var handles []uint32
		rec := &recorder{}
		e := newTestEngine(rec)
		e.cfg.Deliver = func(ctx context.Context, n *ua.DataChangeNotification) {
			for _, it := range n.MonitoredItems {
				handles = append(handles, it.ClientHandle)
			}
		}
		if withItems {
			e.cfg.DeliverItems = func(ctx context.Context, n *uafast.DataChange) {
				for _, it := range n.Items {
					handles = append(handles, it.ClientHandle)
				}
			}
		}
		if err := e.deliver(t.Context(), e.subs[0], res.NotificationMessage); err != nil {
			t.Fatal(err)
		}
		if len(handles) != 3 || handles[2] != 2 {
			t.Errorf("DeliverItems set %v: delivered handles %v, want 0 1 2", withItems, handles)
		}
		if len(e.acks) != 1 || e.acks[0].SequenceNumber != res.NotificationMessage.SequenceNumber {
			t.Errorf("DeliverItems set %v: acknowledgements %v", withItems, e.acks)
		}
	}
}
