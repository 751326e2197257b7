package sparkplug

import (
	"slices"
	"testing"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
	"github.com/tagbridge/tagbridge/payload/sparkplugb"
)

// A retag that removes a tag and adds one: the device is born again before
// its next DDATA, without the removed metric; the new metric gets an alias
// of its own and a DBIRTH with its first value, before any DDATA names it;
// a value of the removed tag still on its way is dropped.
func TestSparkplugRetag(t *testing.T) {
	cfg := testkit.SparkplugConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	cfg.PLCs[0].Tags = []config.Tag{{Name: "a"}, {Name: "b"}}
	f, err := newSparkplugFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		kind string
		p    *sparkplugb.Payload
	}
	var recs []rec
	add := func(topic string, p []byte) {
		kind, _ := f.splitTopic(topic)
		recs = append(recs, rec{kind, testkit.DecodeSparkplug(t, slices.Clone(p))})
	}
	value := func(tag string, v float64) collectors.Sample {
		return collectors.Sample{PLC: "press1", Tag: tag, Value: v, Type: collectors.TypeDouble}
	}
	names := func(p *sparkplugb.Payload) (out []string) {
		for _, m := range p.Metrics {
			out = append(out, m.GetName())
		}
		return out
	}
	f.Encode(collectors.Batch{value("a", 1), value("b", 2)}, true, add)
	if len(recs) != 2 || recs[0].kind != "DBIRTH" || !slices.Equal(names(recs[0].p), []string{"a", "b"}) {
		t.Fatalf("before the retag: %v", recs)
	}
	aliasB := recs[0].p.Metrics[1].GetAlias()

	cfg.PLCs[0].Tags = []config.Tag{{Name: "a"}, {Name: "c"}}
	if msgs := f.Retag(payload.FromConfig(cfg)); len(msgs) != 0 {
		t.Errorf("retag messages %v; Sparkplug's go in order with the data", msgs)
	}
	recs = nil
	f.Encode(collectors.Batch{value("a", 3), value("b", 4)}, true, add) // b: sent before its item was deleted
	if len(recs) != 2 || recs[0].kind != "DBIRTH" || !slices.Equal(names(recs[0].p), []string{"a"}) || recs[1].kind != "DDATA" || len(recs[1].p.Metrics) != 1 {
		t.Fatalf("after the retag: %d records %v, want a DBIRTH of a alone and a DDATA of a", len(recs), recs)
	}
	recs = nil
	f.Encode(collectors.Batch{value("a", 5), value("c", 6)}, true, add)
	if len(recs) != 2 || recs[0].kind != "DBIRTH" || !slices.Equal(names(recs[0].p), []string{"a", "c"}) {
		t.Fatalf("first value of the new tag: %v, want a DBIRTH of a and c first", recs)
	}
	aliasC := recs[0].p.Metrics[1].GetAlias()
	if aliasC == aliasB || aliasC == recs[0].p.Metrics[0].GetAlias() {
		t.Errorf("the new metric's alias %d is another metric's", aliasC)
	}
	if tag, ok := f.TagOfAlias("press1", aliasB); ok {
		t.Errorf("the removed metric's alias still names %q", tag)
	}
}
