package payload

import (
	"slices"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
)

// A retag gives a new tag its own topic template and keeps a removed tag's
// topic for its values still on their way.
func TestJSONRetagTopics(t *testing.T) {
	cfg := testkit.Config("tcp://127.0.0.1:1", 1)
	f, err := NewJSON(FromConfig(cfg), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg.PLCs[0].Tags = []config.Tag{{Name: "temperature"}, {Name: "speed", Topic: "plant/{plc}/s/{tag}"}}
	if msgs := f.(interface{ Retag(Options) []Message }).Retag(FromConfig(cfg)); len(msgs) != 0 {
		t.Errorf("retag messages %v", msgs)
	}
	var topics []string
	f.Encode(collectors.Batch{
		{PLC: "press1", Tag: "speed", Value: 1.0, Type: collectors.TypeDouble},
		{PLC: "press1", Tag: "pressure", Value: 2.0, Type: collectors.TypeDouble},
		{PLC: "press1", Tag: "temperature", Value: 3.0, Type: collectors.TypeDouble},
	}, true, func(topic string, _ []byte) { topics = append(topics, topic) })
	want := []string{"plant/press1/s/speed", "plant/press1/p/pressure", "tagbridge/a1/press1/temperature"}
	if !slices.Equal(topics, want) {
		t.Errorf("topics %v, want %v", topics, want)
	}
}
