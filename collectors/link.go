package collectors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// Link is what a collector tells of how it reaches a PLC, in its
// protocol's terms (opcua.Link for OPC UA): a value that is never changed
// once a Tracker holds it, and whose JSON is an object. Readers that know
// the protocol look inside; the status API writes it among the entry's
// fields.
type Link any

// RawLink is the Link of an entry decoded from JSON: the fields of the
// entry that are not PLCState's own, as one JSON object. The collector's
// protocol reads its link from it (opcua.LinkOf).
type RawLink json.RawMessage

// MarshalJSON implements json.Marshaler for RawLink.
func (r RawLink) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("{}"), nil
	}
	return r, nil
}

// MarshalJSON writes the entry with its Link's fields after endpoint,
// where a reader of /status has always found security and channel.
func (s PLCState) MarshalJSON() ([]byte, error) {
	type plain PLCState // the fields, without this method
	b, err := json.Marshal(plain(s))
	if err != nil || s.Link == nil {
		return b, err
	}
	link, err := json.Marshal(s.Link)
	if err != nil {
		return nil, fmt.Errorf("plc %q: link: %w", s.PLC, err)
	}
	link = bytes.TrimSpace(link)
	if len(link) < 2 || link[0] != '{' {
		return nil, fmt.Errorf("plc %q: link %T is no JSON object", s.PLC, s.Link)
	}
	if len(bytes.TrimSpace(link[1:len(link)-1])) == 0 {
		return b, nil
	}
	// ,"reconnects": cannot occur inside a string value, where a quote is
	// escaped; reconnects has no omitempty, so it is always there.
	at := bytes.Index(b, []byte(`,"reconnects":`))
	out := make([]byte, 0, len(b)+len(link))
	out = append(out, b[:at]...)
	out = append(out, ',')
	out = append(out, link[1:len(link)-1]...)
	return append(out, b[at:]...), nil
}

// UnmarshalJSON reads an entry; the fields that are not PLCState's own
// become its Link, a RawLink.
func (s *PLCState) UnmarshalJSON(b []byte) error {
	type plain PLCState
	if err := json.Unmarshal(b, (*plain)(s)); err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	for _, name := range statusFields {
		delete(fields, name)
	}
	s.Link = nil
	if len(fields) > 0 {
		raw, err := json.Marshal(fields)
		if err != nil {
			return err
		}
		s.Link = RawLink(raw)
	}
	return nil
}

// statusFields are the JSON names of PLCState's own fields.
var statusFields = func() []string {
	var names []string
	t := reflect.TypeFor[PLCState]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}()
