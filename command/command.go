// Package command turns commands received over MQTT into checked writes
// and method calls: it decodes command payloads, refuses what is not
// allow-listed, expired, repeated, unsigned or out of limits, hands the
// rest to an Executor (a PLC session), and encodes the results. It knows
// neither paho nor OPC UA: topics and payload bytes come in, result bytes
// go out, and the executor owns the PLC protocol.
package command

import (
	"context"
	"fmt"
	"time"
)

// Kind is what a command asks for.
type Kind int

const (
	Write Kind = iota // write a tag's value
	Call              // call a method
)

func (k Kind) String() string {
	if k == Call {
		return "call"
	}
	return "write"
}

// Request is one decoded command.
type Request struct {
	Kind   Kind
	PLC    string // PLC entry name
	Target string // tag name (Write) or method name (Call)
	ID     string

	// Value is the value to write: nil, bool, string, json.Number, []any,
	// or from Sparkplug a typed Go value (int64, uint64, float32, float64,
	// bool, string, []byte, or a slice of one of them).
	Value any
	// Type is the OPC UA built-in type the sender named for Value ("" when
	// it named none, as in plain JSON); a different declared type is refused.
	Type string
	Args []any // Call: input arguments, decoded as Value

	Expires time.Time // when the sender says the command goes stale; zero: not given
	Sent    time.Time // when the sender says it sent the command; zero: not given

	MAC    []byte // the sender's HMAC; nil: not signed
	Signed []byte // the bytes the MAC covers (see SignedBytes)

	Retained bool      // delivered as a retained message
	Received time.Time // when the agent took it from the broker
	Topic    string    // where it came from
	Reply    string    // where its result goes ("" for none)
	Format   string    // payload format it came in
}

// Status names a command's result: an OPC UA status from the PLC, or one
// of tagbridge's own refusals below, which carry the closest OPC UA code
// so that a consumer testing the severity bits sees Bad.
type Status struct {
	Name string
	Code uint32
}

// Good is a write or call the PLC accepted.
var Good = Status{"Good", 0}

// tagbridge's refusals: the command was not sent to the PLC.
var (
	NotAllowed   = Status{"TagbridgeNotAllowed", 0x801F0000}   // BadUserAccessDenied: not allow-listed
	Expired      = Status{"TagbridgeExpired", 0x800A0000}      // BadTimeout: arrived after its expiry, or retained
	Duplicate    = Status{"TagbridgeDuplicate", 0x80AF0000}    // BadInvalidState: id seen within its lifetime
	OutOfRange   = Status{"TagbridgeOutOfRange", 0x803C0000}   // BadOutOfRange: outside write limits or the type's range
	WrongType    = Status{"TagbridgeWrongType", 0x80740000}    // BadTypeMismatch: does not fit the node's type or shape
	BadSignature = Status{"TagbridgeBadSignature", 0x80570000} // BadUserSignatureInvalid: HMAC missing or wrong
	BadRequest   = Status{"TagbridgeBadRequest", 0x80070000}   // BadDecodingError: the payload is not a command
	PLCDown      = Status{"TagbridgePLCDown", 0x808A0000}      // BadNotConnected: no session to the PLC now
)

// Refusal is a command refused without being sent to the PLC.
type Refusal struct {
	Status Status
	Reason string
}

func (r *Refusal) Error() string { return r.Status.Name + ": " + r.Reason }

func refuse(s Status, format string, args ...any) *Refusal {
	return &Refusal{Status: s, Reason: fmt.Sprintf(format, args...)}
}

// Refuse returns a refusal with status s, for executors.
func Refuse(s Status, format string, args ...any) error { return refuse(s, format, args...) }

// Outcome is what the PLC answered.
type Outcome struct {
	Status Status
	// Value is the value read back (ReadBack "read" or "subscription").
	Value    any
	ReadBack string // "read", "subscription" or "" (not read back)
	Outputs  []any  // a call's output arguments
}

// Executor carries out checked commands on a PLC. A returned error is a
// *Refusal when nothing was sent (wrong type, PLC down) and any other
// error when the outcome is unknown (the connection failed mid-request).
type Executor interface {
	Write(ctx context.Context, plc, tag string, value any, declared string) (Outcome, error)
	Call(ctx context.Context, plc, method string, args []any) (Outcome, error)
}

// Result is a command's answer.
type Result struct {
	ID       string
	Status   Status
	Value    any
	ReadBack string
	Outputs  []any
	Error    string
	HasValue bool
}
