// Package collectors holds what every collector emits and the publisher consumes.
package collectors

import "time"

// Sample is one value change of one tag, ready for any payload encoder.
//
// The value is in Value, or, for a scalar Boolean, integer, Float, Double,
// StatusCode or DateTime, possibly in Bits instead (Unboxed set, Value nil),
// which costs no allocation. Readers take it with Any, or switch on Type
// and read Bits through Bool, Int, Uint, Float32, Float64, DateTime; never
// Value alone, which is nil for an unboxed scalar.
//
// Value is already converted to a JSON-friendly Go value: bool, int64, uint64,
// float64, float32, string, []byte (encoded as base64), time.Time, []any (arrays
// and matrices as nested arrays), LocalizedText, StatusCode, Structure (a
// structure whose DataType is known), map[string]any (other structures), and
// inside nested Variants and structure fields Typed where the Go value does
// not say the protocol type, and Enum for an enumeration field.
type Sample struct {
	PLC  string // PLC name from the config
	Tag  string // tag name from the config
	Node string // node id as written in the config

	Value any

	SourceTime time.Time // zero when the server did not send it
	ServerTime time.Time // zero when the server did not send it

	// Bits is a scalar value when Unboxed, as SetBits stores it.
	Bits uint64

	// The small fields last, together: a Sample is 128 bytes.

	StatusCode StatusCode // the value's status, e.g. 0 (Good); its name is StatusCode.String()
	Type       Type       // the value's type, e.g. TypeDouble; its name is Type.String()

	// Unboxed says the value is in Bits, of type Type, and Value is nil.
	Unboxed bool

	// Heartbeat marks a value sent again because it did not change for the
	// tag's heartbeat period (or with a Bad status while the PLC is away),
	// not because it changed.
	Heartbeat bool

	// Historical marks a value read back from the PLC's history to fill a
	// gap after a reconnect, not received live.
	Historical bool
}

// Batch is the samples of one publish cycle of one session, in the order the
// server sent them; a shared session's batch may hold several PLC entries.
// The receiver owns it: the sender never touches a batch after sending it.
type Batch []Sample

// Structure is a structure value whose DataType the collector knows: the
// DataType's node id and its fields with their own names, in its order.
// Payload encoders keep that order and those names.
type Structure struct {
	TypeID string // the DataType's node id, e.g. "ns=2;i=3002"
	Fields []Field
}

// Field is one field of a Structure.
type Field struct {
	Name  string
	Value any
}

// LocalizedText is a text with the locale it is in ("" when the server
// sent none).
type LocalizedText struct {
	Locale string
	Text   string
}

// Typed is a value nested in a Variant or a structure field whose Go form
// does not say its protocol type: a NodeId, ExpandedNodeId, Guid,
// QualifiedName or XmlElement as a string, a null DateTime as
// nil. Type is the protocol type (TypeQualifiedName). Encoders that do
// not carry types write Value.
type Typed struct {
	Type  Type
	Value any
}

// Enum is a value of an enumeration inside a structure: its number and
// the name the DataType's definition gives it ("" when it gives none).
type Enum struct {
	Value int32
	Name  string
}
