package uastatus

import (
	"strings"
	"testing"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
)

// TestNamesAgreeWithGopcua holds collectors' status table to gopcua's:
// every code gopcua knows has its Part 4 name there (gopcua's Go
// identifier without the prefix and initialisms), and there is no other.
func TestNamesAgreeWithGopcua(t *testing.T) {
	undo := strings.NewReplacer("ID", "Id", "URI", "Uri", "URL", "Url", "TCP", "Tcp")
	want := map[uint32]string{}
	for c, d := range ua.StatusCodes {
		want[uint32(c)] = undo.Replace(strings.TrimPrefix(d.Name, "Status"))
	}
	want[0] = "Good" // gopcua lists 0 twice, as "OK" and "StatusGood"
	for code := range uint32(1 << 16) {
		c := code << 16
		got, ok := collectors.StatusCode(c).Symbol()
		if w, known := want[c]; ok != known || got != w {
			t.Errorf("0x%08X: collectors says %q (known %v), gopcua %q (known %v)", c, got, ok, w, known)
		}
	}
}

func TestName(t *testing.T) {
	for _, tc := range []struct {
		code ua.StatusCode
		want string
	}{
		{0, "Good"},
		{ua.StatusBadNodeIDUnknown, "BadNodeIdUnknown"},
		{ua.StatusBadTCPEndpointURLInvalid, "BadTcpEndpointUrlInvalid"},
		{ua.StatusUncertainLastUsableValue | 0x400, "UncertainLastUsableValue"}, // info bits
		{0x80FF0000, "Bad (0x80FF0000)"},
		{0x40FF0000, "Uncertain (0x40FF0000)"},
		{0xC0010000, "Bad (0xC0010000)"}, // reserved severity reads as Bad
	} {
		if got := Name(tc.code); got != tc.want {
			t.Errorf("Name(0x%08X) = %q, want %q", uint32(tc.code), got, tc.want)
		}
	}
}
