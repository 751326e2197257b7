package testkit

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/payload/sparkplugb"
)

// DecodeSparkplug decodes a Sparkplug B payload, or fails.
func DecodeSparkplug(t testing.TB, payload []byte) *sparkplugb.Payload {
	t.Helper()
	var p sparkplugb.Payload
	if err := proto.Unmarshal(payload, &p); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return &p
}

// MetricNamed returns p's metric with that name, or fails.
func MetricNamed(t testing.TB, p *sparkplugb.Payload, name string) *sparkplugb.Payload_Metric {
	t.Helper()
	for _, m := range p.Metrics {
		if m.GetName() == name {
			return m
		}
	}
	t.Fatalf("no metric %q in %v", name, p)
	return nil
}

// Sample is a Good value of press1's tag, taken now.
func Sample(tag string, v any, typ collectors.Type) collectors.Sample {
	return collectors.Sample{PLC: "press1", Tag: tag, Value: v, Type: typ, SourceTime: time.Now()}
}
