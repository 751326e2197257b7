package uajson

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
)

// TestUAJSONHistoricalMark: values read back from the PLC's history go in
// a DataSetMessage of their own with "Historical":true (the schema allows
// it), the live value after them (another tag) in one without; node-opcua-json decodes
// the historical DataValues with their values and source times.
func TestUAJSONHistoricalMark(t *testing.T) {
	data, _ := testkit.UASchemas(t)
	f, err := newUAJSONFormat(payload.FromConfig(testkit.UAJSONConfig("tcp://127.0.0.1:1")))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	sample := func(tag string, v int32, historical bool) collectors.Sample {
		return collectors.Sample{PLC: "press1", Tag: tag, Value: v, Type: collectors.TypeInt32,
			SourceTime: at.Add(time.Duration(v) * time.Second), Historical: historical}
	}
	var payloads [][]byte
	f.Encode(collectors.Batch{
		sample("count", 1, true), sample("other", 2, true), sample("extra", 3, false),
	}, true, func(_ string, p []byte) {
		testkit.SchemaCheck(t, data, p)
		payloads = append(payloads, p)
	})
	if len(payloads) != 1 {
		t.Fatalf("%d NetworkMessages, want 1", len(payloads))
	}
	var nm struct {
		Messages []struct {
			SequenceNumber uint32
			MessageType    string
			Historical     *bool
			Payload        map[string]json.RawMessage
		}
	}
	if err := json.Unmarshal(payloads[0], &nm); err != nil {
		t.Fatal(err)
	}
	if len(nm.Messages) != 2 {
		t.Fatalf("%d DataSetMessages, want 2 (historical, live): %s", len(nm.Messages), payloads[0])
	}
	hist, live := nm.Messages[0], nm.Messages[1]
	if hist.Historical == nil || !*hist.Historical || len(hist.Payload) != 2 || hist.MessageType != "ua-deltaframe" {
		t.Errorf("historical DataSetMessage: %s", payloads[0])
	}
	if live.Historical != nil || len(live.Payload) != 1 || live.SequenceNumber != hist.SequenceNumber+1 {
		t.Errorf("live DataSetMessage: %s", payloads[0])
	}

	fields := map[string][]byte{"count": hist.Payload["count"], "other": hist.Payload["other"]}
	got := testkit.DecodeWithNode(t, fields, []string{"count", "other"})
	for tag, v := range map[string]int{"count": 1, "other": 2} {
		r := got[tag]
		wantSource := at.Add(time.Duration(v) * time.Second).Format("2006-01-02T15:04:05.000Z")
		if r.Error != "" || string(r.Value) != fmt.Sprint(v) || r.Source == nil || *r.Source != wantSource {
			t.Errorf("%s decoded by node-opcua-json: %+v, want value %d at %s", tag, r, v, wantSource)
		}
	}
}
