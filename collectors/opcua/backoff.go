package opcua

import (
	"math/rand/v2"
	"time"
)

// Backoff computes reconnect delays: exponential between Min and Max, with
// jitter so that many agents restarting with one PLC do not retry in lockstep.
type Backoff struct {
	Min, Max time.Duration
}

// Next returns the delay before retry number attempt (0 for the first retry).
// The delay is drawn from [d/2, d] where d = Min·2^attempt capped at Max,
// and never falls below Min.
func (b Backoff) Next(attempt int) time.Duration {
	d := b.Min
	for i := 0; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	half := d / 2
	if half <= 0 {
		return max(d, b.Min)
	}
	return max(half+rand.N(half+1), b.Min)
}
