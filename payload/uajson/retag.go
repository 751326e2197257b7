package uajson

import (
	"slices"
	"time"

	"github.com/tagbridge/tagbridge/payload"
)

// Retag takes a reload's tag set of the same PLC entries: a writer whose
// fields changed gets a new ConfigurationVersion (Part 14, 6.2.3.2.2: a
// field added or removed changes the DataSetMetaData) and its ua-metadata
// goes out again at once, before the values of its new fields; a removed
// field leaves the key frames.
func (f *uaJSONFormat) Retag(o payload.Options) []payload.Message {
	now := time.Now()
	var msgs []payload.Message
	f.mu.Lock()
	for _, plc := range o.PLCs {
		w := f.writer(plc.Name)
		tags := make([]string, 0, len(plc.Tags))
		for _, t := range plc.Tags {
			tags = append(tags, t.Name)
		}
		if slices.Equal(tags, w.tags) {
			continue
		}
		for tag := range w.values {
			if !slices.Contains(tags, tag) {
				delete(w.values, tag)
			}
		}
		w.tags = tags
		w.version = max(versionTime(now), w.version+1)
		msgs = append(msgs, f.metadata(w, now))
	}
	if len(msgs) > 0 {
		// A writer may be new; the others' DataSets changed.
		msgs = append(msgs, f.connection(f.sortedWriters(), now))
	}
	opened := f.opened
	f.mu.Unlock()
	if len(msgs) > 0 && opened {
		// Keeps the new versions for the next start; a failure costs one
		// more version then.
		_ = f.openMeta()
	}
	return msgs
}
