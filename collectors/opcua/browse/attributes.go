package browse

import (
	"context"
	"fmt"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// readAttributes reads the data type and access level of every variable,
// and the names of data types outside namespace 0.
func (b *browser) readAttributes(ctx context.Context, vars []Variable) error {
	idx := make([]int, len(vars))
	for i := range idx {
		idx[i] = i
	}
	// Two attributes per variable.
	err := b.batches(ctx, idx, max(1, b.perRead/2), b.opts.InFlight, func(ctx context.Context, batch []int) error {
		req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
		for _, i := range batch {
			n := vars[i].nodeID
			req.NodesToRead = append(req.NodesToRead,
				readValue(n, ua.AttributeIDDataType),
				readValue(n, ua.AttributeIDAccessLevel))
		}
		res, err := send[*ua.ReadResponse](ctx, b, req)
		if err == nil && len(res.Results) != len(req.NodesToRead) {
			err = fmt.Errorf("server returned %d results for %d", len(res.Results), len(req.NodesToRead))
		}
		if err != nil {
			return fmt.Errorf("read data type and access level of %d variables from %s: %w", len(batch), vars[batch[0]].Node, err)
		}
		for j, i := range batch {
			if dv := res.Results[2*j]; dv != nil && dv.Status == ua.StatusOK && dv.Value != nil {
				if n, ok := dv.Value.Value().(*ua.NodeID); ok {
					vars[i].dataTypeID = n
				}
			}
			if dv := res.Results[2*j+1]; dv != nil && dv.Status == ua.StatusOK && dv.Value != nil {
				if a, ok := dv.Value.Value().(byte); ok {
					vars[i].AccessLevel, vars[i].accessKnown = ua.AccessLevelType(a), true
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	names, err := b.dataTypeNames(ctx, vars)
	if err != nil {
		return err
	}
	for i := range vars {
		if n := vars[i].dataTypeID; n != nil {
			vars[i].DataType = names[n.String()]
		}
	}
	return nil
}

// dataTypeNames names every data type the variables use: namespace 0 from
// gopcua's table, the others (a PLC's own structures) by their browse name,
// read from the server; a type that cannot be named is shown as its node id.
// It fails only when ctx is done.
func (b *browser) dataTypeNames(ctx context.Context, vars []Variable) (map[string]string, error) {
	names := map[string]string{}
	var unknown []*ua.NodeID
	for _, v := range vars {
		n := v.dataTypeID
		if n == nil {
			continue
		}
		key := n.String()
		if _, seen := names[key]; seen {
			continue
		}
		names[key] = key
		if n.Namespace() == 0 && n.Type() != ua.NodeIDTypeString && id.Name(n.IntID()) != "" {
			names[key] = id.Name(n.IntID())
			continue
		}
		unknown = append(unknown, n)
	}
	for start := 0; start < len(unknown); start += b.perRead {
		batch := unknown[start:min(start+b.perRead, len(unknown))]
		req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
		for _, n := range batch {
			req.NodesToRead = append(req.NodesToRead, readValue(n, ua.AttributeIDBrowseName))
		}
		res, err := send[*ua.ReadResponse](ctx, b, req)
		if err := context.Cause(ctx); err != nil {
			return nil, fmt.Errorf("read the names of %d data types from %s: %w", len(batch), batch[0], err)
		}
		if err != nil || len(res.Results) != len(batch) {
			continue // the node ids stand in
		}
		for j, dv := range res.Results {
			if dv == nil || dv.Status != ua.StatusOK || dv.Value == nil {
				continue
			}
			if q, ok := dv.Value.Value().(*ua.QualifiedName); ok && q.Name != "" {
				names[batch[j].String()] = q.Name
			}
		}
	}
	return names, nil
}
