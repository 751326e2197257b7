package collectors

import "strconv"

// Type is the type of a sample's value, numbered as OPC UA numbers its
// built-in types (Part 6, 5.1.2, the type id in a Variant's encoding
// mask), with TypeArray set for an array of the type (the mask's array
// bit). Collectors of other protocols map their types onto these.
type Type uint8

// The built-in types.
const (
	TypeNull Type = iota
	TypeBoolean
	TypeSByte
	TypeByte
	TypeInt16
	TypeUInt16
	TypeInt32
	TypeUInt32
	TypeInt64
	TypeUInt64
	TypeFloat
	TypeDouble
	TypeString
	TypeDateTime
	TypeGUID
	TypeByteString
	TypeXMLElement
	TypeNodeID
	TypeExpandedNodeID
	TypeStatusCode
	TypeQualifiedName
	TypeLocalizedText
	TypeExtensionObject
	TypeDataValue
	TypeVariant
	TypeDiagnosticInfo
)

const (
	// TypeEvent is no OPC UA type: a sample whose Value is an event's
	// fields. It lies above the six bits the mask gives a type id.
	TypeEvent Type = 0x40

	// TypeArray marks an array of the type it is set on, e.g.
	// TypeDouble|TypeArray, which a sample without a value can carry to
	// say what its node holds.
	TypeArray Type = 0x80
)

var typeNames = [...]string{
	"Null", "Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
	"Float", "Double", "String", "DateTime", "Guid", "ByteString", "XmlElement", "NodeId",
	"ExpandedNodeId", "StatusCode", "QualifiedName", "LocalizedText", "ExtensionObject",
	"DataValue", "Variant", "DiagnosticInfo",
}

// String is the OPC UA name of the type ("Double"), "Double[]" for an
// array of it, "Event", and "TypeId(n)" for an id OPC UA does not define.
func (t Type) String() string {
	if t&TypeArray != 0 {
		return (t &^ TypeArray).String() + "[]"
	}
	if t == TypeEvent {
		return "Event"
	}
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "TypeId(" + strconv.Itoa(int(t)) + ")"
}

// Builtin tells whether t is one of OPC UA's built-in types other than
// Null, as a scalar: what a Variant's type id may say of a value.
func (t Type) Builtin() bool { return t > TypeNull && int(t) < len(typeNames) }
