package statusapi

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The age of the oldest value not yet delivered, from the publisher's
// counters alone: every value taken in is either out (acknowledged,
// dropped or failed) or still waiting (Spooled), and they go out in order.
// Sampled every second, the count taken in tells when the oldest waiting
// value arrived: at the first sample whose count exceeds the count out.
// A broker that stops acknowledging (frozen, not disconnected) shows as a
// growing age while "connected" stays true.

const (
	backlogSample     = time.Second
	maxBacklogSamples = 24 * 3600 // a day of seconds; older samples merge into the first
)

type inSample struct {
	at time.Time
	in uint64 // values taken in up to at
}

type backlog struct {
	mu      sync.Mutex
	samples []inSample // in increasing; the first covers all older ones
}

// observe records the counters at now and returns how long the oldest
// waiting value has waited (0: none waits).
func (b *backlog) observe(now time.Time, br Broker) time.Duration {
	out := br.Published + br.Dropped + br.Failed
	in := out + br.Spooled()
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := len(b.samples); n > 0 && b.samples[n-1].in > in {
		b.samples = b.samples[:0] // a new publisher (reload): its counters start again
	}
	if n := len(b.samples); n == 0 || b.samples[n-1].in != in {
		b.samples = append(b.samples, inSample{now, in})
	}
	// Samples whose values are all out are history, but for the latest.
	drop := 0
	for drop < len(b.samples)-1 && b.samples[drop].in <= out {
		drop++
	}
	b.samples = b.samples[drop:]
	if len(b.samples) > maxBacklogSamples {
		b.samples = append(b.samples[:1], b.samples[len(b.samples)-maxBacklogSamples+1:]...)
	}
	if in == out {
		return 0
	}
	// The oldest waiting value arrived after the last sample with in <=
	// out, at or before the first with in > out: that one's time.
	for _, s := range b.samples {
		if s.in > out {
			return now.Sub(s.at)
		}
	}
	return 0
}

// Spooled is the count of values waiting in the spool.
func (b Broker) Spooled() uint64 { return b.SpoolValues }

// sampleBacklog observes the counters every second until ctx ends, so that
// the age is known between scrapes.
func (s *Server) sampleBacklog(ctx context.Context) {
	t := time.NewTicker(backlogSample)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.backlog.observe(now, s.src.Broker())
		}
	}
}

// SetMaxBacklogAge makes health fail while the oldest value not yet
// delivered is older than d (0: never on that ground).
func (s *Server) SetMaxBacklogAge(d time.Duration) { s.maxBacklogAge = d }

// backlogProblem is the health problem of a backlog too old, or "".
func (s *Server) backlogProblem(age time.Duration) string {
	if s.maxBacklogAge <= 0 || age <= s.maxBacklogAge {
		return ""
	}
	return fmt.Sprintf("broker: the oldest value not yet delivered waits for %s (more than agent.status_max_backlog_age, %s): the broker does not acknowledge",
		age.Round(time.Second), s.maxBacklogAge)
}

var descBacklogAge = desc("oldest_unsent_value_age_seconds", "How long the oldest value not yet acknowledged by the broker has waited (0: none waits).")

func collectBacklog(ch chan<- prometheus.Metric, b Broker) {
	ch <- prometheus.MustNewConstMetric(descBacklogAge, prometheus.GaugeValue, b.OldestUnsentSeconds)
}
