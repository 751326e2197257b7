package collectors

import "context"

// Event is what a collector sends to the publisher, on one channel, in the
// order things happened: a batch of samples, or a PLC entry's state change.
// Exactly one of the fields is set.
type Event struct {
	Batch Batch     // the samples of one publish cycle
	State *PLCState // a PLC entry's new state
}

// Relay runs run, a collector that sends batches, and sends its batches
// and t's state changes to out as one stream of events. A state change
// made after a batch was handed over follows that batch, as both pass
// through one goroutine. Relay returns run's result once run has returned
// and its events are out. While out is full, a send waits, unless ctx has
// ended: then what does not fit is dropped, as the collector's own sends do.
func Relay(ctx context.Context, out chan<- Event, t *Tracker, run func(context.Context, chan<- Batch) error) error {
	batches := make(chan Batch)   // unbuffered: a send returns once the relay has the batch
	states := make(chan PLCState) // unbuffered: likewise for a state change
	done := make(chan struct{})
	defer close(done)
	t.OnChange(func(st PLCState) {
		select {
		case states <- st:
		case <-done: // the relay has returned: nobody hears it
		}
	})
	defer t.OnChange(nil)

	result := make(chan error, 1)
	go func() {
		result <- run(ctx, batches)
		close(batches)
	}()
	send := func(ev Event) {
		select {
		case out <- ev:
			return
		default:
		}
		select {
		case out <- ev:
		case <-ctx.Done():
		}
	}
	for {
		select {
		case b, ok := <-batches:
			if !ok {
				// run has returned: its last state change (stopped) came
				// before, on the same goroutine.
				return <-result
			}
			send(Event{Batch: b})
		case st := <-states:
			send(Event{State: &st})
		}
	}
}
