// Package uastatus names OPC UA status codes as Part 4 does, for errors and
// payloads: "Good", "UncertainLastUsableValue", "BadSecurityChecksFailed".
package uastatus

import (
	"fmt"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
)

// Name returns the symbolic name of a status code: "Good",
// "UncertainLastUsableValue", "BadCommunicationError". A code carrying info
// bits (the low 16 bits: overflow, structure changed, ...) has the name of its
// code without them; an unknown code is its severity with the code in hex,
// e.g. "Bad (0x80AB0000)". The names are collectors.StatusCode's, the one
// table of them.
func Name(c ua.StatusCode) string { return collectors.StatusCode(c).String() }

// Severity reads the top two bits of a status code. 11 is reserved and to be
// treated as Bad (Part 4, 7.34.1).
func Severity(c ua.StatusCode) string { return collectors.StatusCode(c).Severity() }

// IsBad tells whether c has Bad severity (or the reserved one).
func IsBad(c ua.StatusCode) bool { return c>>31 == 1 }

// Error is a Bad status code as an error that names it, with the step that
// got it: "create session: BadSecurityChecksFailed (0x80130000)".
// errors.As finds the ua.StatusCode through Unwrap.
type Error struct {
	Step string // what was being done: "open secure channel", "activate session"
	Code ua.StatusCode
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s (0x%08X)", Name(e.Code), uint32(e.Code))
	if e.Step == "" {
		return msg
	}
	return e.Step + ": " + msg
}

func (e *Error) Unwrap() error { return e.Code }
