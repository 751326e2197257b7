package opcua

import (
	"context"
	"fmt"

	"github.com/gopcua/opcua/ua"
)

// sender sends one request on a session: *uaclient.Client. A Bad service
// result comes back as an error that errors.As finds as a ua.StatusCode.
type sender interface {
	Send(ctx context.Context, req ua.Request) (ua.Response, error)
}

// call sends req and returns its response as T.
func call[T ua.Response](ctx context.Context, c sender, req ua.Request) (T, error) {
	var zero T
	res, err := c.Send(ctx, req)
	if err != nil {
		return zero, err
	}
	r, ok := res.(T)
	if !ok {
		return zero, fmt.Errorf("%T answered with %T", req, res)
	}
	return r, nil
}

// read reads nodes and checks that the server answered each. Every
// pointer field is set: the binary encoder writes nothing for a nil one,
// which would corrupt the request.
func read(ctx context.Context, c sender, nodes []*ua.ReadValueID) ([]*ua.DataValue, error) {
	for _, n := range nodes {
		if n.DataEncoding == nil {
			n.DataEncoding = &ua.QualifiedName{}
		}
	}
	res, err := call[*ua.ReadResponse](ctx, c, &ua.ReadRequest{NodesToRead: nodes, TimestampsToReturn: ua.TimestampsToReturnNeither})
	if err != nil {
		return nil, err
	}
	if len(res.Results) != len(nodes) {
		return nil, fmt.Errorf("read %d nodes: server returned %d results", len(nodes), len(res.Results))
	}
	// A result with a bad status may come without a value (open62541 for
	// an unknown node): a nil Variant, whose Value method panics. The
	// callers take attributes by type assertion, which an empty one fails.
	for i, dv := range res.Results {
		if dv == nil {
			dv = &ua.DataValue{Status: ua.StatusBadUnexpectedError}
			res.Results[i] = dv
		}
		if dv.Value == nil {
			dv.Value = &ua.Variant{}
		}
	}
	return res.Results, nil
}

// newItemRequest asks to monitor a node's value for handle, reporting every
// change with the server's default queue until the caller changes it.
func newItemRequest(node *ua.NodeID, handle uint32) *ua.MonitoredItemCreateRequest {
	return &ua.MonitoredItemCreateRequest{
		ItemToMonitor:  &ua.ReadValueID{NodeID: node, AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
		MonitoringMode: ua.MonitoringModeReporting,
		RequestedParameters: &ua.MonitoringParameters{
			ClientHandle:  handle,
			DiscardOldest: true,
			QueueSize:     10,
		},
	}
}

// readValue reads one node of namespace 0, bounded by healthInterval.
func readValue(ctx context.Context, c sender, node uint32) (*ua.Variant, error) {
	rctx, cancel := context.WithTimeout(ctx, healthInterval)
	defer cancel()
	res, err := read(rctx, c, []*ua.ReadValueID{{NodeID: ua.NewNumericNodeID(0, node), AttributeID: ua.AttributeIDValue}})
	if err != nil {
		return nil, err
	}
	if st := res[0].Status; st != ua.StatusOK {
		return nil, st
	}
	return res[0].Value, nil
}
