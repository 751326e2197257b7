package payload

import (
	"cmp"
	"time"

	"github.com/tagbridge/tagbridge/config"
)

// Options is what a format is built from: the few settings the formats
// and their topics read, not the whole configuration.
type Options struct {
	Format  string // mqtt.payload: json (or empty), sparkplug_b, opcua_json
	AgentID string // agent.id: the publisher's name in topics and payloads
	Version string // the agent's version, in the json format's status

	Topic         string // mqtt.topic: the tags' topic template
	Batch         bool   // mqtt.batch (json)
	BatchTopic    string // mqtt.batch_topic (json)
	Retain        bool   // mqtt.retain
	MaxPacketSize int    // mqtt.max_packet_size: records are split to fit

	SparkplugGroupID     string // mqtt.sparkplug.group_id
	SparkplugPrimaryHost string // mqtt.sparkplug.primary_host_id
	UAKeyFrameCount      int    // mqtt.opcua_json.keyframe_count

	// StateDir holds the formats' state files (Sparkplug's bdSeq and
	// datatypes, opcua_json's sequence numbers): agent.spool_dir.
	StateDir string

	PLCs []PLC // in configuration order
}

// PLC is one PLC entry as the formats see it.
type PLC struct {
	Name string
	// Silence is how long the entry's session may stay silent before its
	// watchdog rebuilds it: opcua_json's keep-alive period.
	Silence time.Duration
	Tags    []Tag
}

// Tag is one tag of a PLC entry.
type Tag struct {
	Name  string
	Topic string // its own topic template; empty for mqtt.topic
}

// MinSilence is the shortest watchdog bound a session has.
const MinSilence = 5 * time.Second

// FromConfig takes the formats' options out of a loaded configuration.
func FromConfig(cfg *config.Config) Options {
	m := &cfg.MQTT
	o := Options{
		Format:               m.Payload,
		AgentID:              cfg.Agent.ID,
		Version:              cfg.Agent.Version,
		Topic:                m.Topic,
		Batch:                m.Batch,
		BatchTopic:           m.BatchTopic,
		Retain:               m.Retain,
		MaxPacketSize:        int(cmp.Or(m.MaxPacketSize, config.DefaultMaxPacketSize)),
		SparkplugGroupID:     m.Sparkplug.GroupID,
		SparkplugPrimaryHost: m.Sparkplug.PrimaryHostID,
		UAKeyFrameCount:      m.UAJSON.KeyFrameCount,
		StateDir:             cfg.Agent.SpoolDir,
		PLCs:                 make([]PLC, 0, len(cfg.PLCs)),
	}
	for _, p := range cfg.PLCs {
		plc := PLC{Name: p.Name, Silence: WatchdogBound(p), Tags: make([]Tag, 0, len(p.Tags))}
		for _, t := range p.Tags {
			plc.Tags = append(plc.Tags, Tag{Name: t.Name, Topic: t.Topic})
		}
		for _, e := range p.Events { // an event stream is published like a tag of its name
			plc.Tags = append(plc.Tags, Tag{Name: e.Name, Topic: e.Topic})
		}
		o.PLCs = append(o.PLCs, plc)
	}
	return o
}

// WatchdogBound is how long a PLC entry's session may stay silent before
// its watchdog rebuilds it: watchdog_intervals times the slowest
// publishing interval, at least MinSilence.
func WatchdogBound(plc config.PLC) time.Duration {
	slowest := plc.PublishingInterval.Duration()
	for _, t := range plc.Tags {
		slowest = max(slowest, t.PublishingInterval.Duration())
	}
	return max(time.Duration(plc.WatchdogIntervals)*slowest, MinSilence)
}
