package payload

// Retag takes a reload's tag set of the same PLC entries: the tags' topics
// are rendered again. A removed tag keeps its topic, so that its values
// still on their way go where its consumers look; it sends no more once its
// session has deleted its monitored item.
func (f *jsonFormat) Retag(o Options) []Message {
	if f.batch {
		return nil // values go out on the batch topics
	}
	t, err := newTopics(o)
	if err != nil {
		return nil // publish.Publisher.Retag built a format from o first
	}
	for plc, old := range f.topics.byPLC {
		for tag, topic := range old {
			if _, ok := t.byPLC[plc][tag]; !ok && t.byPLC[plc] != nil {
				t.byPLC[plc][tag] = topic
			}
		}
	}
	f.topics = t
	return nil
}
