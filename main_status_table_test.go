package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/agent/statusapi"
	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua"
)

// TestStatusNarrow: the default table fits 80 columns; a PLC never
// connected shows no clock offset; --wide has every column.
func TestStatusNarrow(t *testing.T) {
	now := time.Date(2027, 3, 1, 12, 0, 0, 0, time.Local)
	s := statusapi.Status{Agent: "line1-ipc01", Time: now, Healthy: false, PLCs: []collectors.PLCState{
		{PLC: "press-line-1", State: collectors.StateStreaming, Since: now.Add(-3 * time.Hour), Endpoint: "opc.tcp://press-line-1.plant.example:4840",
			Link: opcua.Link{Policy: "Basic256Sha256", Mode: "SignAndEncrypt", ChannelID: 7, TokenID: 3}, TagsOK: 120, TagsFailed: 2, ValuesPerSec: 1234.5, Reconnects: 12, ClockOffsetSeconds: -0.25},
		{PLC: "oven2", State: collectors.StateDisconnected, Since: now.Add(-40 * time.Second), Endpoint: "opc.tcp://10.0.0.6:4840", NextAttempt: now.Add(12 * time.Second)},
	}}
	var b bytes.Buffer
	printStatus(&b, s, false)
	out := b.String()
	table := out[strings.Index(out, "PLC "):strings.Index(out, "\n\n"+"press-line-1:")]
	for _, line := range strings.Split(table, "\n") {
		if len(line) > 80 {
			t.Errorf("line of %d columns: %q", len(line), line)
		}
	}
	for _, want := range []string{
		"oven2         disconnected  40s",
		"oven2: next attempt in 12s",
		"press-line-1: opc.tcp://press-line-1.plant.example:4840, Basic256Sha256 SignAndEncrypt",
		"-0.250s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if oven := lineWith(out, "oven2  "); !strings.HasSuffix(strings.TrimSpace(oven), " -") {
		t.Errorf("oven2 (never connected) row %q, want the clock offset as -", oven)
	}
	b.Reset()
	printStatus(&b, s, true)
	if !strings.Contains(b.String(), "CHANNEL/TOKEN") || !strings.Contains(b.String(), "7/3") {
		t.Errorf("--wide lacks the channel column:\n%s", b.String())
	}
}

func lineWith(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
