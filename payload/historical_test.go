package payload

import (
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
)

// A value read back from the PLC's history carries "historical":true in
// the default JSON; a live value has no such key.
func TestJSONHistoricalSample(t *testing.T) {
	s := collectors.Sample{PLC: "p", Tag: "t", Node: "ns=1;s=T", Value: int64(7), Type: collectors.TypeInt32, SourceTime: time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)}
	if live := string(AppendJSON(nil, &s)); strings.Contains(live, "historical") {
		t.Errorf("live value: %s", live)
	}
	s.Historical = true
	if got := string(AppendJSON(nil, &s)); !strings.HasSuffix(got, `,"historical":true}`) {
		t.Errorf("historical value: %s", got)
	}
}
