package opcua

import (
	"context"
	"errors"
	"sync"

	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/typedef"
)

// structTypes decodes the structure values of one server by their
// DataTypes' own definitions (package typedef). The zero value is ready.
//
// Definitions are learned before subscribing, from the values of the tags
// whose DataType is not a built-in type, and forgotten at every new
// connection, so a PLC whose program changed is read afresh. A type first
// seen in a notification is learned at the session's next health tick (its
// first values arrive undecoded: gopcua drops the body of an encoding id it
// was not told to keep).
type structTypes struct {
	mu      sync.Mutex
	reg     *typedef.Registry
	warned  map[string]bool       // encoding ids whose failure was logged
	pending map[string]*ua.NodeID // encoding ids seen in values, not learned yet
}

func (t *structTypes) registry() *typedef.Registry {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reg == nil {
		t.reg = typedef.NewRegistry(convertField)
		t.warned = map[string]bool{}
		t.pending = map[string]*ua.NodeID{}
	}
	return t.reg
}

// convertField converts the complex built-in values inside a structure
// (NodeId, LocalizedText, Variant, ...) as convertValue does; those that
// become strings are wrapped in collectors.Typed with their type.
func convertField(v any) any {
	out := convert(v, 1)
	if out == nil {
		return nil
	}
	switch v.(type) {
	case *ua.GUID:
		return collectors.Typed{Type: collectors.TypeGUID, Value: out}
	case ua.XMLElement, *ua.XMLElement:
		return collectors.Typed{Type: collectors.TypeXMLElement, Value: out}
	case *ua.NodeID:
		return collectors.Typed{Type: collectors.TypeNodeID, Value: out}
	case *ua.ExpandedNodeID:
		return collectors.Typed{Type: collectors.TypeExpandedNodeID, Value: out}
	case *ua.QualifiedName:
		return collectors.Typed{Type: collectors.TypeQualifiedName, Value: out}
	case *ua.ExtensionObject: // a field of an abstract type: Structure
		return collectors.Typed{Type: collectors.TypeExtensionObject, Value: out}
	case *ua.Variant: // a field of an abstract type: BaseDataType, Number...
		return collectors.Typed{Type: collectors.TypeVariant, Value: out}
	}
	return out
}

// reset forgets every type, for a new connection; the warnings stay
// given, so that a type is warned about once however often the PLC
// reconnects.
func (t *structTypes) reset() {
	reg := t.registry()
	reg.Reset()
	t.mu.Lock()
	clear(t.pending)
	t.mu.Unlock()
}

// learn fetches the types of the encoding ids, keeping their bodies from
// now on (registerRawExtensionObject) when gopcua has no Go type for them.
func (t *structTypes) learn(ctx context.Context, c typedef.Client, encodings []*ua.NodeID, log zerolog.Logger) {
	if len(encodings) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if err := t.registry().Learn(rctx, c, encodings); err != nil {
		log.Debug().Err(err).Msg("learning structure types; their values carry type id and body")
	}
}

// learnPending learns the types first seen in notifications since the last
// call. The session's loop calls it between publish cycles.
func (t *structTypes) learnPending(ctx context.Context, c typedef.Client, log zerolog.Logger) {
	t.registry()
	t.mu.Lock()
	var ids []*ua.NodeID
	for k, id := range t.pending {
		ids = append(ids, id)
		delete(t.pending, k)
	}
	t.mu.Unlock()
	for _, id := range ids {
		if err := registerRawExtensionObject(id); err == nil {
			log.Debug().Str("encoding", nodeIDString(id)).Msg("structure type first seen in a notification: its next values keep their body")
		}
	}
	t.learn(ctx, c, ids, log)
}

// resolve replaces, in place, the body of every extension object in v (a
// scalar or an array) whose type the registry knows by a
// collectors.Structure, which convertValue passes on. gopcua's Go structs
// (the types of namespace 0) are encoded again and decoded by the
// server's definition, for the DataType's field names and order. What
// cannot be decoded stays as it is, with one Warn per encoding id.
func (t *structTypes) resolve(v *ua.Variant, log zerolog.Logger) {
	if v == nil || v.Type() != ua.TypeIDExtensionObject {
		return
	}
	t.resolveAny(v.Value(), log)
}

// resolveAny is resolve for a Variant's value (*ua.ExtensionObject or
// []*ua.ExtensionObject); other values are left alone. Every path that
// turns notifications into samples calls it before convert.
func (t *structTypes) resolveAny(v any, log zerolog.Logger) {
	switch x := v.(type) {
	case *ua.ExtensionObject:
		t.resolveObject(x, log)
	case []*ua.ExtensionObject:
		for _, e := range x {
			t.resolveObject(e, log)
		}
	}
}

func (t *structTypes) resolveObject(e *ua.ExtensionObject, log zerolog.Logger) {
	if e == nil || e.EncodingMask != ua.ExtensionObjectBinary || e.TypeID == nil || e.TypeID.NodeID == nil {
		return
	}
	enc := e.TypeID.NodeID
	reg := t.registry()
	if !reg.Knows(enc) {
		t.mu.Lock()
		t.pending[nodeIDString(enc)] = enc
		t.mu.Unlock()
		return
	}
	var body []byte
	switch x := e.Value.(type) {
	case nil:
		return // gopcua dropped it; the type is known from now on
	case *rawBody:
		body = *x
	case collectors.Structure, *ua.XMLElement:
		return
	default:
		b, err := ua.Encode(x)
		if err != nil {
			t.warnOnce(enc, err, log)
			return
		}
		body = b
	}
	st, err := reg.Decode(enc, body)
	if err != nil {
		t.warnOnce(enc, err, log)
		return
	}
	e.Value = st
}

func (t *structTypes) warnOnce(enc *ua.NodeID, err error, log zerolog.Logger) {
	key := nodeIDString(enc)
	t.mu.Lock()
	seen := t.warned[key]
	t.warned[key] = true
	t.mu.Unlock()
	if seen {
		return
	}
	ev := log.Warn().Err(err).Str("encoding", key)
	if errors.Is(err, typedef.ErrUnknown) {
		ev.Msg("structure type unknown; its values carry type id and body")
		return
	}
	ev.Msg("structure cannot be decoded by its DataType's definition; its values carry type id and body")
}
