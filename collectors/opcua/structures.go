package opcua

import (
	"context"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
)

// readBatch bounds the nodes per Read request while learning structures.
const readBatch = 1000

// learnStructures makes gopcua keep the bodies of the PLC's own structure
// types. gopcua v0.9.1 throws away the body of an extension object whose
// encoding id it does not know, and the id is only seen in a value. So tags
// whose data type lies outside namespace 0 are read once, and the encoding
// ids of their undecoded structures are registered to decode as raw bodies
// before any notification arrives. Failures only cost the bodies.
func (s *Session) learnStructures(ctx context.Context, c *uaclient.Client) {
	var custom []*ua.ReadValueID
	for from := 0; from < len(s.tags); from += readBatch {
		batch := make([]*ua.ReadValueID, 0, min(readBatch, len(s.tags)-from))
		for _, t := range s.tags[from:min(from+readBatch, len(s.tags))] {
			if id, err := resolveNodeID(t.Node, c.Namespaces()); err == nil {
				batch = append(batch, &ua.ReadValueID{NodeID: id, AttributeID: ua.AttributeIDDataType})
			}
		}
		res, err := readAttrs(ctx, c, batch)
		if err != nil {
			s.log.Debug().Err(err).Msg("reading data types; structure bodies of unknown types may be missing")
			return
		}
		for i, r := range res {
			if dt, ok := r.Value.Value().(*ua.NodeID); ok && r.Status == ua.StatusOK && dt.Namespace() != 0 {
				custom = append(custom, &ua.ReadValueID{NodeID: batch[i].NodeID, AttributeID: ua.AttributeIDValue})
			}
		}
	}
	for from := 0; from < len(custom); from += readBatch {
		batch := custom[from:min(from+readBatch, len(custom))]
		res, err := readAttrs(ctx, c, batch)
		if err != nil {
			s.log.Debug().Err(err).Msg("reading structure values; their bodies may be missing")
			return
		}
		for _, r := range res {
			for _, eo := range extensionObjects(r.Value) {
				if eo.Value == nil && eo.EncodingMask == ua.ExtensionObjectBinary && eo.TypeID != nil && eo.TypeID.NodeID != nil {
					if err := registerRawExtensionObject(eo.TypeID.NodeID); err == nil {
						s.log.Debug().Str("encoding", nodeIDString(eo.TypeID.NodeID)).Msg("structure type unknown to gopcua: values carry its encoded body")
					}
				}
			}
		}
	}
}

// extensionObjects are the extension objects in a value, scalar or array.
func extensionObjects(v *ua.Variant) []*ua.ExtensionObject {
	if v == nil {
		return nil
	}
	switch x := v.Value().(type) {
	case *ua.ExtensionObject:
		return []*ua.ExtensionObject{x}
	case []*ua.ExtensionObject:
		return x
	}
	return nil
}

func readAttrs(ctx context.Context, c sender, nodes []*ua.ReadValueID) ([]*ua.DataValue, error) {
	if len(nodes) == 0 {
		return nil, nil
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return read(rctx, c, nodes)
}
