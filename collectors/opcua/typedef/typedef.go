// Package typedef decodes structure values by their DataType's own
// definition, read from the server at run time: the DataTypeDefinition
// attribute (OPC UA 1.04+, Part 3 5.8.3) of the DataType that an encoding
// node belongs to. PLCs are full of structure types no client knows at
// compile time (Siemens UDTs, Beckhoff structs, companion specifications);
// with their definitions their binary bodies become named fields in the
// DataType's order.
//
// A Registry holds the definitions of one server. Learn fetches what a set
// of encoding ids needs (the DataType behind each, through the inverse
// HasEncoding reference, and every type its fields use, recursively); Decode
// turns a body into a collectors.Structure. Registries are not shared
// between servers: the same node id means different types on two PLCs.
package typedef

import (
	"errors"
	"strconv"
	"sync"

	"github.com/gopcua/opcua/ua"
)

// Kind is how a DataType's values are encoded.
type Kind int

const (
	// KindStructure is a structure whose fields are all present.
	KindStructure Kind = iota
	// KindOptional is a structure with optional fields, preceded by a
	// UInt32 mask of the optional fields that are present.
	KindOptional
	// KindUnion is one of its fields, chosen by a UInt32 switch (0: none).
	KindUnion
	// KindEnum is an Int32 named by the definition's fields.
	KindEnum
	// KindBuiltin is a built-in type or a subtype of one (Duration,
	// UtcTime, a PLC's own string type), encoded as that built-in type.
	KindBuiltin
)

// Field is one field of a structure definition.
type Field struct {
	Name      string
	DataType  *ua.NodeID
	ValueRank int32 // -1 scalar, 1 array, n > 1 an n-dimensional array
	Optional  bool
}

// Type is what the decoder knows of one DataType.
type Type struct {
	ID      *ua.NodeID
	Kind    Kind
	Fields  []Field          // KindStructure, KindOptional, KindUnion
	Names   map[int64]string // KindEnum: value -> name
	Builtin ua.TypeID        // KindBuiltin
	// Encoding is a structure's binary encoding id (DefaultEncodingId), for Encode's callers.
	Encoding *ua.NodeID
}

// ErrUnknown is returned by Decode for an encoding id the registry has not
// learned, or whose type it could not learn.
var ErrUnknown = errors.New("structure type not known")

// Registry holds the DataTypes of one server. It is safe for concurrent use.
type Registry struct {
	mu        sync.RWMutex
	types     map[string]*Type  // DataType id -> type
	encodings map[string]string // binary encoding id -> DataType id
	failed    map[string]error  // encoding or DataType id -> why it cannot be learned
	// Convert turns the complex built-in values a body may hold (Variant,
	// DataValue, ExtensionObject, DiagnosticInfo, NodeId, ...) as gopcua's
	// ua types into the collectors' neutral values; nil keeps them as they
	// are.
	Convert func(any) any
}

// NewRegistry returns an empty registry; convert is Registry.Convert.
func NewRegistry(convert func(any) any) *Registry {
	return &Registry{
		types:     map[string]*Type{},
		encodings: map[string]string{},
		failed:    map[string]error{},
		Convert:   convert,
	}
}

// Reset forgets every learned type, for a server whose model changed (a
// PLC program download, a new connection).
func (r *Registry) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.types)
	clear(r.encodings)
	clear(r.failed)
}

// Knows reports whether the registry has learned the encoding id, or has
// given up on it (Decode then says why).
func (r *Registry) Knows(encoding *ua.NodeID) bool {
	key := idString(encoding)
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.encodings[key]
	_, bad := r.failed[key]
	return ok || bad
}

// Type returns a learned DataType, or nil.
func (r *Registry) Type(dataType *ua.NodeID) *Type {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.types[idString(dataType)]
}

func (r *Registry) lookup(encoding *ua.NodeID) (*Type, error) {
	key := idString(encoding)
	r.mu.RLock()
	defer r.mu.RUnlock()
	if err := r.failed[key]; err != nil {
		return nil, err
	}
	dt, ok := r.encodings[key]
	if !ok {
		return nil, ErrUnknown
	}
	if err := r.failed[dt]; err != nil {
		return nil, err
	}
	t := r.types[dt]
	if t == nil {
		return nil, ErrUnknown
	}
	return t, nil
}

// idString is a map key for a node id: "ns=2;i=3002", "i=884", "ns=3;s=UDT".
func idString(n *ua.NodeID) string {
	if n == nil {
		return ""
	}
	var id string
	switch n.Type() {
	case ua.NodeIDTypeTwoByte, ua.NodeIDTypeFourByte, ua.NodeIDTypeNumeric:
		id = "i=" + strconv.FormatUint(uint64(n.IntID()), 10)
	case ua.NodeIDTypeString:
		id = "s=" + n.StringID()
	case ua.NodeIDTypeByteString:
		id = "b=" + n.StringID()
	case ua.NodeIDTypeGUID:
		id = guidID(n)
	default:
		id = "?=" + strconv.Itoa(int(n.Type()))
	}
	if ns := n.Namespace(); ns != 0 {
		return "ns=" + strconv.FormatUint(uint64(ns), 10) + ";" + id
	}
	return id
}

// guidID is "g=<guid>"; gopcua's StringID panics on a short GUID.
func guidID(n *ua.NodeID) (s string) {
	defer func() {
		if recover() != nil {
			s = "g=<invalid>"
		}
	}()
	return "g=" + n.StringID()
}

// builtinOf is the built-in type of a DataType of namespace 0 that is a
// built-in type or a common subtype of one, and whether it is; abstract
// types are left out (see abstractOf).
func builtinOf(n *ua.NodeID) (ua.TypeID, bool) {
	if n == nil || n.Namespace() != 0 || n.Type() > ua.NodeIDTypeNumeric {
		return 0, false
	}
	id := n.IntID()
	if id >= 1 && id <= 25 && id != 22 && id != 24 {
		return ua.TypeID(id), true
	}
	t, ok := subtypesOfBuiltins[id]
	return t, ok
}

// subtypesOfBuiltins are common namespace 0 DataTypes encoded as a
// built-in type; others are found by browsing their supertypes.
var subtypesOfBuiltins = map[uint32]ua.TypeID{
	29:    ua.TypeIDInt32,      // Enumeration (abstract; its values are Int32)
	30:    ua.TypeIDByteString, // Image
	288:   ua.TypeIDUint32,     // IntegerId
	289:   ua.TypeIDUint32,     // Counter
	290:   ua.TypeIDDouble,     // Duration
	291:   ua.TypeIDString,     // NumericRange
	292:   ua.TypeIDString,     // Time
	293:   ua.TypeIDDateTime,   // Date
	294:   ua.TypeIDDateTime,   // UtcTime
	295:   ua.TypeIDString,     // LocaleId
	311:   ua.TypeIDByteString, // ApplicationInstanceCertificate
	12877: ua.TypeIDString,     // NormalizedString
	12878: ua.TypeIDString,     // DecimalString
	12879: ua.TypeIDString,     // DurationString
	12880: ua.TypeIDString,     // TimeString
	12881: ua.TypeIDString,     // DateString
	16307: ua.TypeIDByteString, // AudioDataType
	17588: ua.TypeIDUint32,     // Index
}

// abstractOf tells how a field of an abstract namespace 0 DataType is
// encoded: BaseDataType, Number, Integer and UInteger as a Variant,
// Structure as an ExtensionObject (Part 6, 5.2.7).
func abstractOf(n *ua.NodeID) (ua.TypeID, bool) {
	if n == nil || n.Namespace() != 0 || n.Type() > ua.NodeIDTypeNumeric {
		return 0, false
	}
	switch n.IntID() {
	case 24, 26, 27, 28: // BaseDataType, Number, Integer, UInteger
		return ua.TypeIDVariant, true
	case 22: // Structure
		return ua.TypeIDExtensionObject, true
	}
	return 0, false
}
