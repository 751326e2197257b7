package publish

import (
	"reflect"
	"time"

	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/payload"
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
	// Silences are the entries' watchdog bounds, which the silence timers
	// (and opcua_json's keep-alives) were armed with.
	Silences []time.Duration
}

func settingsOf(cfg *config.Config) settings {
	s := settings{AgentID: cfg.Agent.ID, SpoolDir: cfg.Agent.SpoolDir, MQTT: cfg.MQTT, Topics: map[string]string{}}
	for _, p := range cfg.PLCs {
		s.PLCs = append(s.PLCs, p.Name)
		s.Silences = append(s.Silences, payload.WatchdogBound(p))
		for _, t := range p.Tags {
			if t.Topic != "" {
				s.Topics[p.Name+"/"+t.Name] = t.Topic
			}
		}
	}
	return s
}

// NeedsRestart reports whether next changes what the publisher was built
// from, so that a reload must replace it; a change of tags alone does not
// (see Retag). Called by the agent's goroutine, as Retag is.
func (p *Publisher) NeedsRestart(next *config.Config) bool {
	now, then := p.settings, settingsOf(next)
	now.Topics, then.Topics = nil, nil // tags' own topics: Retag
	return !reflect.DeepEqual(now, then)
}

// retagger is a format that takes a new tag set of the same PLC entries
// without a restart, and returns what it publishes about it at once
// (opcua_json's DataSetMetaData); records it must spool (Sparkplug's
// DBIRTH) go out in order with the next values.
type retagger interface {
	Retag(o payload.Options) []payload.Message
}

// retagRequest is a Retag on its way to the intake goroutine.
type retagRequest struct {
	opts payload.Options
	done chan struct{}
}

// Retag hands next's tags to the format on the intake goroutine, between
// two events, and returns once it took them (or the publisher stopped), so
// that values of new tags, which the sessions send after, find them. The
// new tags' topics are checked first, as New checks them; a refused one
// changes nothing.
func (p *Publisher) Retag(next *config.Config) error {
	opts := payload.FromConfig(next)
	if _, err := newFormat(opts, time.Now()); err != nil { // opens no file
		return err
	}
	p.settings = settingsOf(next)
	if _, ok := p.format.(retagger); !ok {
		return nil
	}
	r := retagRequest{opts: opts, done: make(chan struct{})}
	select {
	case p.retags <- r:
	case <-p.done:
		return nil
	}
	select {
	case <-r.done:
	case <-p.done:
	}
	return nil
}

// retag is Retag on the intake goroutine.
func (p *Publisher) retag(r retagRequest) {
	defer close(r.done)
	p.queueDirect(p.format.(retagger).Retag(r.opts))
}
