package typedef

import (
	"context"
	"fmt"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// learnDictionaries looks up DataTypes that have no DataTypeDefinition in
// the server's legacy type dictionaries: a DataType's "Default Binary"
// encoding refers by HasDescription to a DataTypeDescription variable, a
// component of the dictionary variable, whose value names the structured
// type in the dictionary's XML. It records the types it finds (with the
// dictionary's types they use) and returns the DataTypes it found no
// description for, and the namespace 0 types the learned ones need. A
// described type the dictionary cannot express is recorded as failed.
func (r *Registry) learnDictionaries(ctx context.Context, c Client, types []*ua.NodeID) (rest, needs []*ua.NodeID, err error) {
	encs, err := browseRefs(ctx, c, types, id.HasEncoding, ua.BrowseDirectionForward, ua.NodeClassObject, 0)
	if err != nil {
		return types, nil, fmt.Errorf("find the encodings of %d data types: %w", len(types), err)
	}
	binary := make([]*ua.NodeID, len(types))
	for i, refs := range encs {
		for _, ref := range refs {
			if ref.BrowseName != nil && ref.BrowseName.NamespaceIndex == 0 && ref.BrowseName.Name == "Default Binary" && ref.NodeID != nil {
				binary[i] = ref.NodeID.NodeID
				break
			}
		}
	}
	descs, err := firstRefs(ctx, c, binary, id.HasDescription, ua.BrowseDirectionForward, ua.NodeClassVariable)
	if err != nil {
		return types, nil, fmt.Errorf("find the descriptions of %d encodings: %w", len(types), err)
	}
	dicts, err := firstRefs(ctx, c, descs, id.HasComponent, ua.BrowseDirectionInverse, ua.NodeClassVariable)
	if err != nil {
		return types, nil, fmt.Errorf("find the dictionaries of %d descriptions: %w", len(types), err)
	}
	names, err := readValues(ctx, c, descs)
	if err != nil {
		return types, nil, fmt.Errorf("read %d data type descriptions: %w", len(descs), err)
	}
	loaded := map[string]*loadedDictionary{}
	for i, dt := range types {
		name, _ := valueOf(names[i]).(string)
		if dicts[i] == nil || name == "" {
			rest = append(rest, dt)
			continue
		}
		key := idString(dicts[i])
		ld := loaded[key]
		if ld == nil {
			ld = loadDictionary(ctx, c, dicts[i])
			loaded[key] = ld
		}
		if ld.err != nil {
			r.setFailed(dt, fmt.Errorf("data type %s: %w", idString(dt), ld.err))
			continue
		}
		learned, uses, err := ld.dict.localTypes(dt, name, ld.ids)
		if err != nil {
			r.setFailed(dt, fmt.Errorf("data type %s: %w", idString(dt), err))
			continue
		}
		for _, t := range learned {
			if idString(t.ID) == idString(dt) {
				t.Encoding = binary[i]
			} else if e := ld.encodings[idString(t.ID)]; e != nil {
				t.Encoding = e
			}
			if r.Type(t.ID) == nil {
				r.setType(t)
			}
		}
		needs = append(needs, uses...)
	}
	return rest, needs, nil
}

// loadedDictionary is one dictionary variable, read and parsed, with the
// DataTypes its descriptions belong to.
type loadedDictionary struct {
	dict      *dictionary
	ids       map[string]*ua.NodeID // structured type name -> DataType
	encodings map[string]*ua.NodeID // DataType -> its binary encoding
	err       error
}

func loadDictionary(ctx context.Context, c Client, node *ua.NodeID) *loadedDictionary {
	ld := &loadedDictionary{ids: map[string]*ua.NodeID{}, encodings: map[string]*ua.NodeID{}}
	vals, err := readValues(ctx, c, []*ua.NodeID{node})
	if err != nil {
		ld.err = fmt.Errorf("read type dictionary %s: %w", idString(node), err)
		return ld
	}
	xmlDoc, ok := valueOf(vals[0]).([]byte)
	if !ok {
		ld.err = fmt.Errorf("type dictionary %s: value %T, want a ByteString", idString(node), valueOf(vals[0]))
		return ld
	}
	if ld.dict, ld.err = parseDictionary(xmlDoc); ld.err != nil {
		ld.err = fmt.Errorf("type dictionary %s: %w", idString(node), ld.err)
		return ld
	}
	// Name the DataTypes of the other descriptions: nested structures keep
	// their own ids. Best effort: a type left out gets a made-up id.
	comps, err := browseRefs(ctx, c, []*ua.NodeID{node}, id.HasComponent, ua.BrowseDirectionForward, ua.NodeClassVariable, 0)
	if err != nil || len(comps[0]) == 0 {
		return ld
	}
	var descs []*ua.NodeID
	for _, ref := range comps[0] {
		if ref.NodeID != nil {
			descs = append(descs, ref.NodeID.NodeID)
		}
	}
	if len(descs) > maxTypes {
		descs = descs[:maxTypes]
	}
	names, err := readValues(ctx, c, descs)
	if err != nil {
		return ld
	}
	encs, err := firstRefs(ctx, c, descs, id.HasDescription, ua.BrowseDirectionInverse, ua.NodeClassObject)
	if err != nil {
		return ld
	}
	owners, err := firstRefs(ctx, c, encs, id.HasEncoding, ua.BrowseDirectionInverse, ua.NodeClassDataType)
	if err != nil {
		return ld
	}
	for i := range descs {
		if name, _ := valueOf(names[i]).(string); name != "" && owners[i] != nil {
			ld.ids[name] = owners[i]
			ld.encodings[idString(owners[i])] = encs[i]
		}
	}
	return ld
}

func valueOf(dv *ua.DataValue) any {
	if dv == nil || dv.Status != ua.StatusOK || dv.Value == nil {
		return nil
	}
	return dv.Value.Value()
}

// readValues reads the Value attribute of nodes (nil ones give nil).
func readValues(ctx context.Context, c Client, nodes []*ua.NodeID) ([]*ua.DataValue, error) {
	out := make([]*ua.DataValue, len(nodes))
	var idx []int
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
	flush := func() error {
		if len(idx) == 0 {
			return nil
		}
		res, err := c.Send(ctx, req)
		if err != nil {
			return err
		}
		rr, ok := res.(*ua.ReadResponse)
		if !ok || len(rr.Results) != len(idx) {
			return fmt.Errorf("read of %d values: unexpected answer %T", len(idx), res)
		}
		for j, i := range idx {
			out[i] = rr.Results[j]
		}
		idx, req = nil, &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
		return nil
	}
	for i, n := range nodes {
		if n == nil {
			continue
		}
		idx = append(idx, i)
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}})
		if len(idx) == batch {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}
