package uafast

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
)

// TestEncodeRequest: EncodeRequest writes what ua.Encode writes, for
// requests of every field's edge cases and random ones, and declines those
// with nil pointers and other request types.
func TestEncodeRequest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	reqs := []ua.Request{
		&ua.PublishRequest{RequestHeader: header(rng)},
		&ua.PublishRequest{RequestHeader: header(rng), SubscriptionAcknowledgements: []*ua.SubscriptionAcknowledgement{}},
		&ua.CreateMonitoredItemsRequest{RequestHeader: header(rng)},
		&ua.ReadRequest{RequestHeader: header(rng), MaxAge: math.NaN()},
	}
	for range 50 {
		acks := make([]*ua.SubscriptionAcknowledgement, rng.IntN(5))
		for i := range acks {
			acks[i] = &ua.SubscriptionAcknowledgement{SubscriptionID: rng.Uint32(), SequenceNumber: rng.Uint32()}
		}
		items := make([]*ua.MonitoredItemCreateRequest, rng.IntN(5))
		for i := range items {
			var filter *ua.ExtensionObject // nil: the empty one, as newItemRequest leaves it
			switch rng.IntN(3) {
			case 0:
				filter = ua.NewExtensionObject(&ua.DataChangeFilter{Trigger: ua.DataChangeTriggerStatusValue, DeadbandType: 1, DeadbandValue: rng.Float64()})
			case 1:
				filter = ua.NewExtensionObject(nil)
			}
			items[i] = &ua.MonitoredItemCreateRequest{
				ItemToMonitor:  readValueID(rng),
				MonitoringMode: ua.MonitoringMode(rng.IntN(3)),
				RequestedParameters: &ua.MonitoringParameters{
					ClientHandle: rng.Uint32(), SamplingInterval: rng.Float64() * 1000, Filter: filter,
					QueueSize: rng.Uint32(), DiscardOldest: rng.IntN(2) == 0,
				},
			}
		}
		nodes := make([]*ua.ReadValueID, rng.IntN(5))
		for i := range nodes {
			nodes[i] = readValueID(rng)
		}
		reqs = append(reqs,
			&ua.PublishRequest{RequestHeader: header(rng), SubscriptionAcknowledgements: acks},
			&ua.CreateMonitoredItemsRequest{RequestHeader: header(rng), SubscriptionID: rng.Uint32(), TimestampsToReturn: ua.TimestampsToReturn(rng.IntN(4)), ItemsToCreate: items},
			&ua.ReadRequest{RequestHeader: header(rng), MaxAge: rng.Float64(), TimestampsToReturn: ua.TimestampsToReturnBoth, NodesToRead: nodes},
		)
	}
	for i, req := range reqs {
		got, ok := EncodeRequest(req)
		if !ok {
			t.Fatalf("request %d (%T) declined", i, req)
		}
		want, err := ua.Encode(req)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("request %d (%T):\nours:   %x\ngopcua: %x", i, req, got, want)
		}
	}
	declined := []ua.Request{
		&ua.PublishRequest{},
		&ua.ReadRequest{RequestHeader: header(rng), NodesToRead: []*ua.ReadValueID{{NodeID: ua.NewNumericNodeID(0, 1)}}}, // no DataEncoding
		&ua.CreateMonitoredItemsRequest{RequestHeader: header(rng), ItemsToCreate: []*ua.MonitoredItemCreateRequest{{ItemToMonitor: readValueID(rng)}}},
		&ua.BrowseRequest{RequestHeader: header(rng)},
	}
	for i, req := range declined {
		if _, ok := EncodeRequest(req); ok {
			t.Errorf("declined request %d (%T) taken", i, req)
		}
	}
}

func header(rng *rand.Rand) *ua.RequestHeader {
	h := &ua.RequestHeader{
		AuthenticationToken: ua.NewByteStringNodeID(0, []byte{1, 2, 3}),
		Timestamp:           time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)),
		RequestHandle:       rng.Uint32(), TimeoutHint: rng.Uint32(),
		AdditionalHeader: ua.NewExtensionObject(nil),
	}
	if rng.IntN(3) == 0 {
		h.AuditEntryID, h.ReturnDiagnostics, h.Timestamp = "audit", 0x3ff, time.Time{}
	}
	return h
}

func readValueID(rng *rand.Rand) *ua.ReadValueID {
	nodes := []*ua.NodeID{ua.NewTwoByteNodeID(5), ua.NewNumericNodeID(3, rng.Uint32()), ua.NewStringNodeID(2, "Line1.Temp"), ua.NewGUIDNodeID(1, "72962B91-FA75-4AE6-8D28-B404DC7DAF63")}
	r := &ua.ReadValueID{NodeID: nodes[rng.IntN(len(nodes))], AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}}
	if rng.IntN(3) == 0 {
		r.IndexRange, r.DataEncoding = "1:2", &ua.QualifiedName{NamespaceIndex: 0, Name: "Default Binary"}
	}
	return r
}
