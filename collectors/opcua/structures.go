package opcua

import (
	"context"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
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
	s.declared = make([]collectors.Type, len(s.tags))
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
			if dtv == nil || dtv.Value == nil || dtv.Status != ua.StatusOK {
				continue // a Bad result (a node gone meanwhile) carries no value
			}
			dt, ok := dtv.Value.Value().(*ua.NodeID)
			if !ok {
				continue
			}
			var r int32
			if rank != nil && rank.Value != nil && rank.Status == ua.StatusOK {
				r, _ = rank.Value.Value().(int32)
			}
			s.declared[h] = declaredType(dt, r >= 1)
			if s.declared[h] == collectors.TypeNull { // a structure, an abstract or a PLC's own type
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
		s.types.learn(ctx, s.limited(c), encodings, s.log)
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

// builtinTypes are the DataTypes of namespace 0 that a sample's Type can
// carry: the built-in types, and common subtypes as their built-in type.
var builtinTypes = map[uint32]collectors.Type{
	1: collectors.TypeBoolean, 2: collectors.TypeSByte, 3: collectors.TypeByte, 4: collectors.TypeInt16,
	5: collectors.TypeUInt16, 6: collectors.TypeInt32, 7: collectors.TypeUInt32, 8: collectors.TypeInt64,
	9: collectors.TypeUInt64, 10: collectors.TypeFloat, 11: collectors.TypeDouble, 12: collectors.TypeString,
	13: collectors.TypeDateTime, 14: collectors.TypeGUID, 15: collectors.TypeByteString, 16: collectors.TypeXMLElement,
	17: collectors.TypeNodeID, 18: collectors.TypeExpandedNodeID, 19: collectors.TypeStatusCode,
	20: collectors.TypeQualifiedName, 21: collectors.TypeLocalizedText,
	29:  collectors.TypeInt32,                                                          // Enumeration: enumerations travel as Int32
	30:  collectors.TypeByteString,                                                     // Image
	288: collectors.TypeUInt32, 289: collectors.TypeUInt32, 290: collectors.TypeDouble, // IntegerId, Counter, Duration
	291: collectors.TypeString, 292: collectors.TypeString, 293: collectors.TypeDateTime, // NumericRange, Time, Date
	294: collectors.TypeDateTime, 295: collectors.TypeString, 17588: collectors.TypeUInt32, // UtcTime, LocaleId, Index
}

// declaredType is the type of a tag's DataType, with TypeArray for an
// array; TypeNull when the DataType names no built-in type (a structure,
// an abstract type, a PLC's own type).
func declaredType(dt *ua.NodeID, array bool) collectors.Type {
	if dt.Namespace() != 0 || dt.Type() > ua.NodeIDTypeNumeric {
		return collectors.TypeNull
	}
	t := builtinTypes[dt.IntID()]
	if t != collectors.TypeNull && array {
		t |= collectors.TypeArray
	}
	return t
}
