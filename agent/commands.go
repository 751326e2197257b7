package agent

import (
	"context"
	"slices"
	"sync"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/command"
	"github.com/tagbridge/tagbridge/config"
)

// commandSwitch is the publisher's Commander across reloads: the handler
// of the configuration in force, which inherits the ids seen before.
type commandSwitch struct {
	a   *Agent
	log zerolog.Logger

	mu      sync.Mutex
	h       *command.Handler
	aliases command.AliasFunc // the publisher's, for handlers made later
	changed chan struct{}     // closed and replaced when the filters change
}

func newCommandSwitch(a *Agent, cfg *config.Config, log zerolog.Logger) *commandSwitch {
	s := &commandSwitch{a: a, log: log, changed: make(chan struct{})}
	s.set(cfg)
	return s
}

// set builds the handler of cfg; commands route to the session that
// serves their PLC entry at the time they arrive.
func (s *commandSwitch) set(cfg *config.Config) {
	h := command.New(cfg, command.ByPLC(s.a.executor), s.log)
	s.mu.Lock()
	defer s.mu.Unlock()
	h.Inherit(s.h)
	if s.aliases != nil {
		h.SetAliases(s.aliases)
	}
	if s.h != nil && !slices.Equal(s.h.Filters(), h.Filters()) {
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.h = h
}

// Changed is closed when a reload changes the filters: the publisher
// subscribes to the new ones at once.
func (s *commandSwitch) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// SetAliases takes the publisher's alias lookup (Sparkplug DCMD by alias).
func (s *commandSwitch) SetAliases(f command.AliasFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aliases = f
	s.h.SetAliases(f)
}

func (s *commandSwitch) current() *command.Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.h
}

func (s *commandSwitch) Filters() []string { return s.current().Filters() }

func (s *commandSwitch) Handle(ctx context.Context, topic string, payload []byte, retained bool) []command.Message {
	return s.current().Handle(ctx, topic, payload, retained)
}

// executor is the session serving a PLC entry now, or nil.
func (a *Agent) executor(plc string) command.Executor {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, g := range a.groups {
		for _, p := range g.plcs {
			if p.Name == plc {
				if e, ok := g.c.(command.Executor); ok {
					return e
				}
			}
		}
	}
	return nil
}

// Commands are the last commands handled and the counts by result, for status.
func (a *Agent) Commands() ([]command.Record, map[string]uint64) {
	if a.commands == nil {
		return nil, nil
	}
	h := a.commands.current()
	return h.Recent(), h.Counts()
}
