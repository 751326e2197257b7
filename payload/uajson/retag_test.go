package uajson

import (
	"strings"
	"testing"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
)

// A retag publishes the changed writer's DataSetMetaData at once, with the
// new fields and a higher ConfigurationVersion, leaves the other writer
// alone, and keeps the version for the next start; a removed field leaves
// the key frames.
func TestUAJSONRetag(t *testing.T) {
	cfg := testkit.UAJSONConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	f, err := newUAJSONFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(); err != nil {
		t.Fatal(err)
	}
	before := testkit.DecodeUA[uaMetadata](t, f.Connected()[1].Payload)
	f.Encode(collectors.Batch{
		{PLC: "press1", Tag: "temperature", Value: 1.5, Type: collectors.TypeDouble},
		{PLC: "press1", Tag: "pressure", Value: 2.5, Type: collectors.TypeDouble},
	}, true, func(string, []byte) {})

	cfg.PLCs[0].Tags = []config.Tag{{Name: "temperature"}, {Name: "speed"}}
	msgs := f.Retag(payload.FromConfig(cfg))
	if len(msgs) != 2 || msgs[0].Topic != "opcua/json/metadata/a1/tagbridge/press1" || !msgs[0].Retain {
		t.Fatalf("retag messages %v, want press1's retained ua-metadata and the ua-connection", msgs)
	}
	testkit.SchemaCheck(t, testkit.UAMetaSchema(t), msgs[0].Payload)
	after := testkit.DecodeUA[uaMetadata](t, msgs[0].Payload)
	var names []string
	for _, fd := range after.MetaData.Fields {
		names = append(names, fd.Name)
	}
	if strings.Join(names, ",") != "temperature,speed" {
		t.Errorf("fields %v after the retag, want temperature,speed", names)
	}
	if v, was := after.MetaData.ConfigurationVersion, before.MetaData.ConfigurationVersion; v.MajorVersion <= was.MajorVersion || v.MinorVersion <= was.MinorVersion {
		t.Errorf("version %+v after the retag, want above %+v", v, was)
	}
	if again := f.Retag(payload.FromConfig(cfg)); len(again) != 0 {
		t.Errorf("a retag to the same tags published %d messages", len(again))
	}
	var key string
	f.Command(f.keyTopic, nil)
	for _, m := range f.Connected() {
		if strings.Contains(string(m.Payload), "ua-keyframe") {
			key = string(m.Payload)
		}
	}
	if !strings.Contains(key, `"temperature"`) || strings.Contains(key, `"pressure"`) {
		t.Errorf("key frame after the retag: %s; want temperature and not the removed pressure", key)
	}

	// The next start keeps the retag's version.
	g, err := newUAJSONFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Open(); err != nil {
		t.Fatal(err)
	}
	if v := testkit.DecodeUA[uaMetadata](t, g.Connected()[1].Payload).MetaData.ConfigurationVersion; v != after.MetaData.ConfigurationVersion {
		t.Errorf("version %+v at the next start, want the retag's %+v", v, after.MetaData.ConfigurationVersion)
	}
}
