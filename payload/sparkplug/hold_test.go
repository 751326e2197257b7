package sparkplug

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
)

// holdRecorder collects a format's records: every topic in order, and the
// metric names of each DBIRTH.
type holdRecorder struct {
	t      *testing.T
	topics []string
	births [][]string
}

func (r *holdRecorder) add(topic string, p []byte) {
	r.topics = append(r.topics, topic)
	if strings.Contains(topic, "/DBIRTH/") {
		var names []string
		for _, m := range testkit.DecodeSparkplug(r.t, p).Metrics {
			names = append(names, m.GetName())
		}
		r.births = append(r.births, names)
	}
}

func alarm(at time.Time) collectors.Sample {
	return collectors.Sample{PLC: "press1", Tag: "alarms", Type: collectors.TypeEvent, SourceTime: at,
		Value: collectors.Structure{Fields: []collectors.Field{{Name: "Message", Value: "pump fault"}}}}
}

func holdFormat(t *testing.T) *sparkplugFormat {
	cfg := testkit.SparkplugConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	cfg.PLCs[0].Tags = []config.Tag{{Name: "temperature"}, {Name: "pressure"}}
	cfg.PLCs[0].Events = []config.EventStream{{Name: "alarms"}}
	f, err := newSparkplugFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// A device whose first batch is an event (ConditionRefresh answers before
// the first data notification) is born once at start, with its tags and
// its event stream, and the event follows in order with the values.
func TestSparkplugOneBirthWithEvents(t *testing.T) {
	f := holdFormat(t)
	r := &holdRecorder{t: t}
	now := time.Now()
	f.PLCState(collectors.PLCState{PLC: "press1", State: collectors.StateStreaming, Since: now}, r.add)
	f.Encode(collectors.Batch{alarm(now)}, true, r.add)
	if len(r.topics) != 0 {
		t.Fatalf("records after the event alone: %v, want none until the tags' values", r.topics)
	}
	f.Encode(collectors.Batch{
		{PLC: "press1", Tag: "temperature", Value: 21.5, Type: collectors.TypeDouble, SourceTime: now.Add(time.Millisecond)},
		{PLC: "press1", Tag: "pressure", Value: int32(3), Type: collectors.TypeInt32, SourceTime: now.Add(time.Millisecond)},
	}, true, r.add)
	f.Encode(collectors.Batch{alarm(now.Add(time.Second))}, true, r.add)
	births := 0
	for _, tp := range r.topics {
		if strings.Contains(tp, "/DBIRTH/") {
			births++
		}
	}
	if births != 1 || len(r.births) != 1 || strings.Join(r.births[0], ",") != "temperature,pressure,alarms" {
		t.Fatalf("DBIRTHs of press1 at start: %v (records %v), want one with temperature,pressure,alarms", r.births, r.topics)
	}
	if strings.Join(r.topics, " ") != "spBv1.0/plant1/DBIRTH/a1/press1 spBv1.0/plant1/DDATA/a1/press1 spBv1.0/plant1/DDATA/a1/press1" {
		t.Fatalf("records: %v", r.topics)
	}
}

// Held events go out after at most holdFor with the next batch of any
// device, and before the device dies when its PLC goes away first; a PLC
// with only event streams is never held.
func TestSparkplugHeldEventsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := holdFormat(t)
		r := &holdRecorder{t: t}
		f.Encode(collectors.Batch{alarm(time.Now())}, true, r.add)
		time.Sleep(holdFor)
		f.Encode(collectors.Batch{{PLC: "press2", Tag: "t", Value: 1.0, Type: collectors.TypeDouble}}, true, r.add)
		if len(r.births) != 2 || strings.Join(r.births[0], ",") != "alarms" || !strings.Contains(r.topics[1], "DDATA/a1/press1") {
			t.Fatalf("after holdFor: %v %v, want press1 born with its event and the event sent", r.topics, r.births)
		}
	})

	f := holdFormat(t)
	r := &holdRecorder{t: t}
	f.Encode(collectors.Batch{alarm(time.Now())}, true, r.add)
	f.PLCState(collectors.PLCState{PLC: "press1", State: collectors.StateDisconnected}, r.add)
	if strings.Join(r.topics, " ") != "spBv1.0/plant1/DBIRTH/a1/press1 spBv1.0/plant1/DDATA/a1/press1 spBv1.0/plant1/DDEATH/a1/press1" {
		t.Fatalf("PLC lost with a held event: %v", r.topics)
	}

	cfg := testkit.SparkplugConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	cfg.PLCs[0].Tags = nil
	cfg.PLCs[0].Events = []config.EventStream{{Name: "alarms"}, {Name: "audit"}}
	g, err := newSparkplugFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	r = &holdRecorder{t: t}
	g.Encode(collectors.Batch{alarm(time.Now())}, true, r.add)
	if len(r.births) != 1 {
		t.Fatalf("a PLC with event streams only: %v, want born with its first event", r.topics)
	}
}
