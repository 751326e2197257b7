package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/agent/statusapi"
	"github.com/tagbridge/tagbridge/command"
)

// TestPrintCommands: tagbridge status lists the latest commands (issue 17's
// audit), newest first, with their result and latency; nothing when none
// was taken.
func TestPrintCommands(t *testing.T) {
	now := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	s := statusapi.Status{Time: now, Commands: &statusapi.Commands{
		Results: map[string]uint64{"Good": 1, "TagbridgeOutOfRange": 1},
		Recent: []command.Record{ // oldest first, as the handler keeps them
			{Time: now.Add(-90 * time.Second), PLC: "press1", Kind: "write", Target: "setpoint", ID: "7f3c9a", Status: "Good", Latency: 1200 * time.Microsecond},
			{Time: now.Add(-5 * time.Second), PLC: "press1", Kind: "write", Target: "setpoint", ID: "7f3c9b", Status: "TagbridgeOutOfRange", Error: "300 is above max 250"},
		},
	}}
	var b bytes.Buffer
	printCommands(&b, s)
	want := `
commands (latest first):
WHEN  PLC     KIND   TARGET    ID      RESULT               LATENCY
5s    press1  write  setpoint  7f3c9b  TagbridgeOutOfRange  0s
2m0s  press1  write  setpoint  7f3c9a  Good                 1ms
`
	if b.String() != want {
		t.Errorf("printCommands:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	printCommands(&b, statusapi.Status{Time: now})
	if strings.TrimSpace(b.String()) != "" {
		t.Errorf("no commands: printed %q, want nothing", b.String())
	}
}
