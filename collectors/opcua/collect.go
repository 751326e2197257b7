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
	return collectors.Relay(ctx, out, s.states, s.Run)
}

// NeedsRestart reports whether serving next instead of the entries the
// session serves needs a new session: any change to their names, order or
// settings does, and so does a change of their tags the session cannot take
// live (see liveRetag); other tag changes go to Retag.
func (s *Session) NeedsRestart(next []config.PLC) bool {
	names := s.states.Names()
	if len(next) != len(names) {
		return true
	}
	tagsChanged := false
	for i, p := range next {
		cur := s.entries[i]
		if p.Name != names[i] || p.Name != cur.Name || !reflect.DeepEqual(withoutTags(p), withoutTags(cur)) {
			return true
		}
		tagsChanged = tagsChanged || !reflect.DeepEqual(p.Tags, cur.Tags)
	}
	return tagsChanged && !liveRetag(s.entries, next)
}
