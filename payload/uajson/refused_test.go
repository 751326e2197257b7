package uajson

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
)

// TestUAJSONRefusedTag: the sample the session sends for a tag the PLC
// refuses (no value, the refusal's status) goes out as a DataValue with
// the Bad StatusCode and no Value, valid against the schema.
func TestUAJSONRefusedTag(t *testing.T) {
	data, _ := testkit.UASchemas(t)
	f, err := newUAJSONFormat(payload.FromConfig(testkit.UAJSONConfig("tcp://127.0.0.1:1")))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)
	var payloads [][]byte
	f.Encode(collectors.Batch{{PLC: "press1", Tag: "temp", StatusCode: 0x80340000, ServerTime: at}},
		true, func(_ string, p []byte) {
			testkit.SchemaCheck(t, data, p)
			payloads = append(payloads, p)
		})
	if len(payloads) != 1 {
		t.Fatalf("%d NetworkMessages, want 1", len(payloads))
	}
	var nm struct {
		Messages []struct {
			Payload map[string]map[string]json.RawMessage
		}
	}
	if err := json.Unmarshal(payloads[0], &nm); err != nil {
		t.Fatal(err)
	}
	if len(nm.Messages) != 1 {
		t.Fatalf("%d DataSetMessages: %s", len(nm.Messages), payloads[0])
	}
	dv, ok := nm.Messages[0].Payload["temp"]
	if !ok {
		t.Fatalf("no temp field: %s", payloads[0])
	}
	var code struct {
		Code   uint32
		Symbol string
	}
	if err := json.Unmarshal(dv["StatusCode"], &code); err != nil || code.Code != 0x80340000 || code.Symbol != "BadNodeIdUnknown" {
		t.Errorf("temp's StatusCode %s (%v), want Code %d Symbol BadNodeIdUnknown", dv["StatusCode"], err, 0x80340000)
	}
	if v, has := dv["Value"]; has && string(v) != "null" {
		t.Errorf("temp carries a value %s", v)
	}
}
