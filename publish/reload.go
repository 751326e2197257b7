package publish

import (
	"reflect"

	"github.com/tagbridge/tagbridge/config"
)

// settings is what a publisher is built from: the MQTT section, the agent
// id and spool directory, the PLC entries' names (the formats' status
// topics, devices and writers) and the tags' own topic templates.
type settings struct {
	AgentID  string
	SpoolDir string
	MQTT     config.MQTT
	PLCs     []string          // entry names
	Topics   map[string]string // plc/tag -> a tag's own topic template
}

func settingsOf(cfg *config.Config) settings {
	s := settings{AgentID: cfg.Agent.ID, SpoolDir: cfg.Agent.SpoolDir, MQTT: cfg.MQTT, Topics: map[string]string{}}
	for _, p := range cfg.PLCs {
		s.PLCs = append(s.PLCs, p.Name)
		for _, t := range p.Tags {
			if t.Topic != "" {
				s.Topics[p.Name+"/"+t.Name] = t.Topic
			}
		}
	}
	return s
}

// NeedsRestart reports whether next changes what the publisher was built
// from, so that a reload must replace it; safe from any goroutine.
func (p *Publisher) NeedsRestart(next *config.Config) bool {
	return !reflect.DeepEqual(p.settings, settingsOf(next))
}
