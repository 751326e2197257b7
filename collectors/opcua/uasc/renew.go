package uasc

import (
	"time"
)

// Token schedule (Part 4, 5.5.2), all on our own monotonic clock from the
// moment the OpenSecureChannel response arrived; the server's CreatedAt
// never enters it, so a server clock hours off cannot move it.

// minRenewInterval keeps renewals at most two a second, whatever lifetime
// the server grants.
const minRenewInterval = 500 * time.Millisecond

// shortLifetime is a lifetime so short that following it deserves a warning.
const shortLifetime = time.Second

// renewDelay is how long after a token's arrival to renew it: 75 % of its
// revised lifetime, no sooner than minRenewInterval. clamped tells whether
// minRenewInterval applied.
func renewDelay(lifetime time.Duration) (delay time.Duration, clamped bool) {
	delay = lifetime / 4 * 3
	if delay < minRenewInterval {
		return minRenewInterval, true
	}
	return delay, false
}

// acceptUntil is the end of a token's use for received messages: its
// lifetime and a quarter more, for messages the server sent before it
// expired.
func acceptUntil(arrived time.Time, lifetime time.Duration) time.Time {
	return arrived.Add(lifetime + lifetime/4)
}

// grant is a token as the schedule sees it.
type grant struct {
	arrived  time.Time // our clock, when the OPN response arrived
	lifetime time.Duration
}

// renewSchedule runs renew at the times the grants ask for, starting with
// first, until stop is closed (nil) or renew fails (its error). short is
// called for every grant under shortLifetime (the caller warns once).
func renewSchedule(stop <-chan struct{}, first grant, renew func() (grant, error), short func(time.Duration)) error {
	g := first
	for {
		if g.lifetime < shortLifetime && short != nil {
			short(g.lifetime)
		}
		delay, _ := renewDelay(g.lifetime)
		timer := time.NewTimer(time.Until(g.arrived.Add(delay)))
		select {
		case <-stop:
			timer.Stop()
			return nil
		case <-timer.C:
		}
		next, err := renew()
		if err != nil {
			return err
		}
		g = next
	}
}
