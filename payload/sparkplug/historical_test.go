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

// A value read back from the PLC's history to fill a gap goes out with
// is_historical also while the link is up; the live value after it does
// not.
func TestSparkplugHistoricalSample(t *testing.T) {
	cfg := testkit.SparkplugConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	cfg.PLCs[0].Tags = []config.Tag{{Name: "counter"}}
	f, err := newSparkplugFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)
	sample := func(v int64, historical bool) collectors.Sample {
		return collectors.Sample{PLC: "press1", Tag: "counter", Value: v, Type: collectors.TypeInt32, SourceTime: at.Add(time.Duration(v) * time.Second), Historical: historical}
	}
	f.Encode(collectors.Batch{sample(1, false)}, true, func(string, []byte) {}) // DBIRTH and DDATA
	var ddata [][]byte
	f.Encode(collectors.Batch{sample(2, true), sample(3, false)}, true, func(topic string, p []byte) { ddata = append(ddata, slices.Clone(p)) })
	var marks []bool
	for _, p := range ddata {
		for _, m := range testkit.DecodeSparkplug(t, p).Metrics {
			marks = append(marks, m.GetIsHistorical())
		}
	}
	if !slices.Equal(marks, []bool{true, false}) {
		t.Errorf("is_historical of the two values: %v, want [true false]", marks)
	}
}
