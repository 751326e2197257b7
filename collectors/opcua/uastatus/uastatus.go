// Package uastatus names OPC UA status codes as Part 4 does, for errors and
// payloads: "Good", "UncertainLastUsableValue", "BadSecurityChecksFailed".
package uastatus

import (
	"fmt"
	"strings"

	"github.com/gopcua/opcua/ua"
)

// names maps each status code gopcua knows to its OPC UA symbolic name.
// gopcua's names are Go identifiers ("StatusBadNodeIDUnknown", "...URI...",
// "...TCP..."); undoing the prefix and those initialisms gives back exactly
// the names of Part 4 / StatusCode.csv for all 264 codes of gopcua v0.9.1.
var names = func() map[ua.StatusCode]string {
	undo := strings.NewReplacer("ID", "Id", "URI", "Uri", "URL", "Url", "TCP", "Tcp")
	m := make(map[ua.StatusCode]string, len(ua.StatusCodes))
	for c, d := range ua.StatusCodes {
		m[c] = undo.Replace(strings.TrimPrefix(d.Name, "Status"))
	}
	m[ua.StatusOK] = "Good" // gopcua lists 0 twice, as "OK" and "StatusGood"
	return m
}()

// Name returns the symbolic name of a status code: "Good",
// "UncertainLastUsableValue", "BadCommunicationError". A code carrying info
// bits (the low 16 bits: overflow, structure changed, ...) has the name of its
// code without them; an unknown code is its severity with the code in hex,
// e.g. "Bad (0x80AB0000)".
func Name(c ua.StatusCode) string {
	if n, ok := names[c]; ok {
		return n
	}
	if n, ok := names[c&0xFFFF0000]; ok {
		return n
	}
	return fmt.Sprintf("%s (0x%08X)", Severity(c), uint32(c))
}

// Severity reads the top two bits of a status code. 11 is reserved and to be
// treated as Bad (Part 4, 7.34.1).
func Severity(c ua.StatusCode) string {
	switch c >> 30 {
	case 0:
		return "Good"
	case 1:
		return "Uncertain"
	}
	return "Bad"
}

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
