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
//
// The same read gives each tag's declared type (DataType and ValueRank):
// a sample without a value still names its type (see declaredType). The
// encoding ids in those values then name the DataTypes whose definitions
// decode the bodies into named fields (typedefs.go).
func (s *Session) learnStructures(ctx context.Context, c *uaclient.Client) {
	s.types.reset() // a new connection: the PLC's program may have changed
	var custom []*ua.ReadValueID
	s.declared = make([]string, len(s.tags))
	for from := 0; from < len(s.tags); from += readBatch / 2 {
		var batch []*ua.ReadValueID
		var handles []int
		for h := from; h < min(from+readBatch/2, len(s.tags)); h++ {
			if id, err := resolveNodeID(s.tags[h].Node, c.Namespaces()); err == nil {
				batch = append(batch, &ua.ReadValueID{NodeID: id, AttributeID: ua.AttributeIDDataType},
					&ua.ReadValueID{NodeID: id, AttributeID: ua.AttributeIDValueRank})
				handles = append(handles, h)
			}
		}
		res, err := s.readAttrs(ctx, c, batch)
		if err != nil {
			s.log.Debug().Err(err).Msg("reading data types; structure bodies of unknown types may be missing")
			return
		}
		for i, h := range handles {
			dtv, rank := res[2*i], res[2*i+1]
			dt, ok := dtv.Value.Value().(*ua.NodeID)
			if !ok || dtv.Status != ua.StatusOK {
				continue
			}
			r, _ := rank.Value.Value().(int32)
			s.declared[h] = declaredType(dt, rank.Status == ua.StatusOK && r >= 1)
			if s.declared[h] == "" { // a structure, an abstract or a PLC's own type
				custom = append(custom, &ua.ReadValueID{NodeID: batch[2*i].NodeID, AttributeID: ua.AttributeIDValue})
			}
		}
	}
	for from := 0; from < len(custom); from += readBatch {
		batch := custom[from:min(from+readBatch, len(custom))]
		res, err := s.readAttrs(ctx, c, batch)
		if err != nil {
			s.log.Debug().Err(err).Msg("reading structure values; their bodies may be missing")
			return
		}
		var encodings []*ua.NodeID
		for _, r := range res {
			for _, eo := range extensionObjects(r.Value) {
				if eo.EncodingMask != ua.ExtensionObjectBinary || eo.TypeID == nil || eo.TypeID.NodeID == nil {
					continue
				}
				encodings = append(encodings, eo.TypeID.NodeID)
				if eo.Value == nil {
					if err := registerRawExtensionObject(eo.TypeID.NodeID); err == nil {
						s.log.Debug().Str("encoding", nodeIDString(eo.TypeID.NodeID)).Msg("structure type unknown to gopcua: values carry its encoded body")
					}
				}
			}
		}
		s.types.learn(ctx, c, encodings, s.log)
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

func (s *Session) readAttrs(ctx context.Context, c sender, nodes []*ua.ReadValueID) ([]*ua.DataValue, error) {
	if len(nodes) == 0 {
		return nil, nil
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return readInBatches(rctx, c, nodes, s.limits.perRead())
}

// builtinTypes names the DataTypes of namespace 0 that a sample's Type can
// carry: the built-in types, and common subtypes as their built-in type.
var builtinTypes = map[uint32]string{
	1: "Boolean", 2: "SByte", 3: "Byte", 4: "Int16", 5: "UInt16", 6: "Int32", 7: "UInt32", 8: "Int64", 9: "UInt64",
	10: "Float", 11: "Double", 12: "String", 13: "DateTime", 14: "Guid", 15: "ByteString", 16: "XmlElement",
	17: "NodeId", 18: "ExpandedNodeId", 19: "StatusCode", 20: "QualifiedName", 21: "LocalizedText",
	29: "Int32", // Enumeration: enumerations travel as Int32
	30: "ByteString", 288: "UInt32", 289: "UInt32", 290: "Double", 291: "String", 292: "String", 293: "DateTime",
	294: "DateTime", 295: "String", 17588: "UInt32", // Image, IntegerId, Counter, Duration, NumericRange, Time, Date, UtcTime, LocaleId, Index
}

// declaredType is the type name of a tag's DataType, "[]" appended for an
// array; "" when the DataType names no built-in type (a structure, an
// abstract type, a PLC's own type).
func declaredType(dt *ua.NodeID, array bool) string {
	if dt.Namespace() != 0 || dt.Type() > ua.NodeIDTypeNumeric {
		return ""
	}
	name := builtinTypes[dt.IntID()]
	if name != "" && array {
		name += "[]"
	}
	return name
}
