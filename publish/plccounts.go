package publish

import (
	"sync"
	"sync/atomic"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/payload"
)

// UnknownPLC is the PLC entry records are counted under when theirs is not
// known: records spooled before a restart under a topic not appended
// since, and records the spool cannot read (corrupt on disk).
const UnknownPLC = "(unknown)"

// PLCCounts are one PLC entry's records since New, as Stats counts them
// in total: Published, Failed and Dropped.
type PLCCounts struct {
	Published uint64 `json:"published"`
	Failed    uint64 `json:"failed"`
	Dropped   uint64 `json:"dropped"`
}

type plcCounts struct {
	published, failed, dropped atomic.Uint64
	// asideAcked: records of the entry taken out of paho's store and set
	// aside, which the store counts as acknowledged (see Stats).
	asideAcked atomic.Uint64
}

// maxOwnedTopics bounds the topics whose entry is remembered (a tag's
// topic each, or an entry's batch topic): records of others count under
// UnknownPLC.
const maxOwnedTopics = 1 << 18

// owners attributes records to PLC entries by topic: the intake learns a
// topic's entry as it appends a record, and a record's counters are found
// by its topic when its fate is known, on whichever goroutine.
type owners struct {
	mu      sync.RWMutex
	byTopic map[string]*plcCounts
	byPLC   map[string]*plcCounts
	unknown plcCounts
}

// newOwners has a counter for every entry from the start, at 0.
func newOwners(plcs []config.PLC) *owners {
	o := &owners{byTopic: map[string]*plcCounts{}, byPLC: map[string]*plcCounts{}}
	for _, p := range plcs {
		o.byPLC[p.Name] = &plcCounts{}
	}
	return o
}

// counts returns entry plc's counters.
func (o *owners) counts(plc string) *plcCounts {
	o.mu.RLock()
	c, ok := o.byPLC[plc]
	o.mu.RUnlock()
	if ok {
		return c
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if c, ok = o.byPLC[plc]; !ok {
		c = &plcCounts{}
		o.byPLC[plc] = c
	}
	return c
}

// learn notes that records on topic belong to the entry counted by c.
func (o *owners) learn(topic string, c *plcCounts) {
	o.mu.RLock()
	had, ok := o.byTopic[topic]
	o.mu.RUnlock()
	if had == c {
		return
	}
	o.mu.Lock()
	if ok || len(o.byTopic) < maxOwnedTopics {
		o.byTopic[topic] = c
	}
	o.mu.Unlock()
}

// of returns the counters of the entry whose records go to topic.
func (o *owners) of(topic string) *plcCounts {
	o.mu.RLock()
	c, ok := o.byTopic[topic]
	o.mu.RUnlock()
	if !ok {
		return &o.unknown
	}
	return c
}

// stats returns the counters by entry; UnknownPLC only when not all 0.
func (o *owners) stats() map[string]PLCCounts {
	o.mu.RLock()
	defer o.mu.RUnlock()
	out := make(map[string]PLCCounts, len(o.byPLC)+1)
	for name, c := range o.byPLC {
		out[name] = c.snapshot()
	}
	if u := o.unknown.snapshot(); u != (PLCCounts{}) {
		out[UnknownPLC] = u
	}
	return out
}

func (c *plcCounts) snapshot() PLCCounts {
	published, aside := c.published.Load(), c.asideAcked.Load()
	return PLCCounts{Published: published - min(published, aside), Failed: c.failed.Load(), Dropped: c.dropped.Load()}
}

// encode hands a batch to the format, on the intake, with its records
// counted under their entry: a batch of several entries (a shared
// session's) goes one entry at a time, in order of first appearance, as
// every format groups its records anyway.
func (p *Publisher) encode(b collectors.Batch) {
	up := p.linkUp()
	single := true
	for i := range b {
		if b[i].PLC != b[0].PLC {
			single = false
			break
		}
	}
	if single {
		p.appendFor = nil
		if len(b) > 0 {
			p.appendFor = p.owners.counts(b[0].PLC)
		}
		p.format.Encode(b, up, p.spoolAppend)
		return
	}
	for i := range b {
		if !payload.FirstOfPLC(b, i) {
			continue
		}
		var one collectors.Batch
		for j := i; j < len(b); j++ {
			if b[j].PLC == b[i].PLC {
				one = append(one, b[j])
			}
		}
		p.appendFor = p.owners.counts(b[i].PLC)
		p.format.Encode(one, up, p.spoolAppend)
	}
}
