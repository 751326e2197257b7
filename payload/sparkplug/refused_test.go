package sparkplug

import (
	"slices"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
)

// TestSparkplugRefusedTag: a tag that streamed and is then refused by the
// PLC (a program change: BadNodeIdUnknown, its DataType known from
// before) goes out as an is_null metric with Bad quality (0) in the DDATA.
func TestSparkplugRefusedTag(t *testing.T) {
	cfg := testkit.SparkplugConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	cfg.PLCs[0].Tags = []config.Tag{{Name: "temp"}}
	f, err := newSparkplugFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)
	type rec struct {
		topic   string
		payload []byte
	}
	var recs []rec
	add := func(topic string, p []byte) { recs = append(recs, rec{topic, slices.Clone(p)}) }
	f.Encode(collectors.Batch{{PLC: "press1", Tag: "temp", Value: 21.5, Type: collectors.TypeDouble, SourceTime: at}}, true, add)
	recs = recs[:0]
	f.Encode(collectors.Batch{{PLC: "press1", Tag: "temp", Type: collectors.TypeDouble, StatusCode: 0x80340000, ServerTime: at.Add(time.Second)}}, true, add)
	if len(recs) != 1 || recs[0].topic != "spBv1.0/plant1/DDATA/a1/press1" {
		t.Fatalf("records after the refusal: %v, want one DDATA", recs)
	}
	data := testkit.DecodeSparkplug(t, recs[0].payload)
	if len(data.Metrics) != 1 {
		t.Fatalf("%d metrics, want 1", len(data.Metrics))
	}
	m := data.Metrics[0]
	if !m.GetIsNull() || m.Value != nil || quality(m) != 0 {
		t.Errorf("refused tag's metric %v: want is_null, no value, Quality 0 (Bad)", m)
	}
}
