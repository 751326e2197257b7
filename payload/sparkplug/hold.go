package sparkplug

import (
	"slices"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/payload"
)

// A device's first DBIRTH should list every metric it will report. A PLC
// with event streams often sends an event first (ConditionRefresh answers
// before the first data notification), and a birth then would list the
// event stream alone and be followed by a second birth once the tags bring
// their datatypes. So the events of a device not yet born are held while
// some of its tags have no datatype, until its first batch with values, for
// at most holdFor or holdMax events (released with the next batch of any
// device after that, or before the device's death); then they go out with
// that batch, in time order, after one birth.
const (
	holdFor = 5 * time.Second
	holdMax = 256
)

func isEvent(s collectors.Sample) bool { return s.Type == collectors.TypeEvent }

// hold takes from b the events to hold and returns the rest of b after the
// held events due for release. The intake goroutine only.
func (f *sparkplugFormat) hold(b collectors.Batch, now time.Time) collectors.Batch {
	f.mu.Lock()
	defer f.mu.Unlock()
	var heldNow map[string]bool
	for i := range b {
		if !payload.FirstOfPLC(b, i) {
			continue
		}
		plc := b[i].PLC
		d := f.device(plc)
		onlyEvents := !slices.ContainsFunc(b[i:], func(s collectors.Sample) bool { return s.PLC == plc && !isEvent(s) })
		if !onlyEvents || d.born || !d.untyped() || len(d.held) >= holdMax || (len(d.held) > 0 && now.Sub(d.heldSince) >= holdFor) {
			continue
		}
		if len(d.held) == 0 {
			d.heldSince = now
		}
		for _, s := range b[i:] {
			if s.PLC == plc {
				d.held = append(d.held, s)
			}
		}
		if heldNow == nil {
			heldNow = map[string]bool{}
		}
		heldNow[plc] = true
	}
	out := b
	if heldNow != nil {
		out = slices.DeleteFunc(slices.Clone(b), func(s collectors.Sample) bool { return heldNow[s.PLC] })
	}
	// Release what is due: held for a device that is in this batch (with
	// values) or born, or held too long or too much.
	var due collectors.Batch
	for plc, d := range f.devices {
		if len(d.held) == 0 || heldNow[plc] {
			continue
		}
		if d.born || now.Sub(d.heldSince) >= holdFor || len(d.held) >= holdMax || slices.ContainsFunc(out, func(s collectors.Sample) bool { return s.PLC == plc }) {
			due = append(due, d.release()...)
		}
	}
	if len(due) == 0 {
		return out
	}
	return append(due, out...)
}

// release returns and forgets the events held for d. f.mu is held.
func (d *spDevice) release() collectors.Batch {
	h := d.held
	d.held = nil
	return h
}

// untyped tells whether some tag of d (not an event stream) has no
// datatype yet. f.mu is held.
func (d *spDevice) untyped() bool {
	return slices.ContainsFunc(d.metrics, func(m *spMetric) bool { return !m.event && m.datatype == spUnknown })
}
