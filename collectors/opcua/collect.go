package opcua

import (
	"context"
	"reflect"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
)

// Collect runs the session (see Run) and sends what it collects to out as
// one stream of events: its batches and its entries' state changes, in the
// order they happened.
func (s *Session) Collect(ctx context.Context, out chan<- collectors.Event) error {
	return collectors.Relay(ctx, out, s.status, s.Run)
}

// NeedsRestart reports whether serving next instead of the entries the
// session was made for needs a new session: it connects, subscribes and
// reports by their settings, so any change to them does, and so does a
// change of their order (the order of its status and of its tags).
func (s *Session) NeedsRestart(next []config.PLC) bool {
	names := s.status.Names()
	if len(next) != len(names) {
		return true
	}
	for i, p := range next {
		if p.Name != names[i] || !reflect.DeepEqual(p, s.link.entries[p.Name]) {
			return true
		}
	}
	return false
}
