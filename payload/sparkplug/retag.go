package sparkplug

import (
	"slices"

	"github.com/tagbridge/tagbridge/payload"
)

// Retag takes a reload's tag set of the same PLC entries. Sparkplug B
// requires a DBIRTH that lists every metric a device reports before a
// DDATA names one: a new tag gets the next alias and the device is born
// again with its first value (its datatype); a removed tag leaves the
// device's metrics, and a device born already is born again, without it,
// before its next DDATA. Values of removed tags still on their way are
// dropped: their metric is in no birth any more.
func (f *sparkplugFormat) Retag(o payload.Options) []payload.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, plc := range o.PLCs {
		d := f.device(plc.Name)
		want := make(map[string]bool, len(plc.Tags))
		for _, t := range plc.Tags {
			want[t.Name] = true
			if _, ok := d.byTag[t.Name]; !ok {
				f.metric(d, t.Name)
			}
			delete(d.retired, t.Name)
		}
		removed := false
		d.metrics = slices.DeleteFunc(d.metrics, func(m *spMetric) bool {
			if want[m.name] {
				return false
			}
			if d.retired == nil {
				d.retired = map[string]bool{}
			}
			d.retired[m.name] = true
			delete(d.byTag, m.name)
			removed = true
			return true
		})
		if removed && d.born {
			d.pending = true // born again before the next DDATA
		}
	}
	return nil
}
