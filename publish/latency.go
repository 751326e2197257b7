package publish

import (
	"sync"
	"time"
)

// LatencyBuckets are the upper bounds, in seconds, of the publish latency
// histogram: from a broker on the same machine to a backlog of an hour.
var LatencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

// maxMarks bounds the intake marks kept while the broker is away: beyond
// it the oldest are forgotten, their records' latency unknown.
const maxMarks = 100_000

// Histogram is the publish latency: how long records took from the intake
// to the broker's acknowledgement.
type Histogram struct {
	Buckets map[float64]uint64 // cumulative count by upper bound (LatencyBuckets)
	Count   uint64
	Sum     float64 // seconds
}

// latency measures, per record, the time from the intake taking the event
// that made it to the spool's acknowledgement (the broker's for QoS 1, 2,
// the connection's for QoS 0). Records spooled before a restart have no
// mark and are not measured.
type latency struct {
	mu     sync.Mutex
	marks  []mark // oldest first
	counts []uint64
	n      uint64
	sum    float64
}

// mark says that records up to end (exclusive) were taken at at.
type mark struct {
	end uint64
	at  time.Time
	// from is the first record of the mark not yet acknowledged.
	from uint64
}

// taken records that the records from..end (exclusive) were taken at at.
func (l *latency) taken(from, end uint64, at time.Time) {
	if end <= from {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.marks) >= maxMarks {
		l.marks = l.marks[1:]
	}
	l.marks = append(l.marks, mark{end: end, at: at, from: from})
}

// acked observes the records up to seq (inclusive) as acknowledged at now.
func (l *latency) acked(seq uint64, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts = make([]uint64, len(LatencyBuckets))
	}
	i := 0
	for ; i < len(l.marks); i++ {
		m := &l.marks[i]
		upTo := min(m.end, seq+1)
		if upTo > m.from {
			l.observe(now.Sub(m.at).Seconds(), upTo-m.from)
			m.from = upTo
		}
		if m.from < m.end {
			break
		}
	}
	l.marks = l.marks[i:]
}

func (l *latency) observe(seconds float64, records uint64) {
	for b, le := range LatencyBuckets {
		if seconds <= le {
			l.counts[b] += records
		}
	}
	l.n += records
	l.sum += seconds * float64(records)
}

func (l *latency) histogram() Histogram {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := Histogram{Buckets: make(map[float64]uint64, len(LatencyBuckets)), Count: l.n, Sum: l.sum}
	for b, le := range LatencyBuckets {
		if l.counts != nil {
			h.Buckets[le] = l.counts[b]
		} else {
			h.Buckets[le] = 0
		}
	}
	return h
}
