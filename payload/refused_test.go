package payload

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
)

// TestJSONRefusedTag: the sample the session sends for a tag the PLC
// refuses (no value, the refusal's status) says so on the tag's topic.
func TestJSONRefusedTag(t *testing.T) {
	ts := time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)
	s := collectors.Sample{PLC: "press1", Tag: "temp", Node: `ns=3;s="DB_Press"."Temp"`, StatusCode: 0x80340000, ServerTime: ts}
	var got map[string]any
	if err := json.Unmarshal(AppendJSON(nil, &s), &got); err != nil {
		t.Fatal(err)
	}
	if v, ok := got["value"]; !ok || v != nil || got["status"] != "BadNodeIdUnknown" || got["status_code"] != float64(0x80340000) || got["tag"] != "temp" {
		t.Errorf("refused tag's payload %v, want value null, status BadNodeIdUnknown, status_code %d", got, 0x80340000)
	}
}
