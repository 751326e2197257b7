package subscription

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/gopcua/opcua/ua"
)

// plcs[].publish_requests sets the PublishRequests Run starts with,
// whatever the subscriptions (up to maxPublishesInFlight), and each
// BadTooManyPublishRequests leaves one fewer in flight, never fewer than one.
func TestRunConfiguredPublishRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct{ configured, start int }{{1, 1}, {2, 2}, {7, 7}, {50, maxPublishesInFlight}} {
			e := newTestEngine(&recorder{})
			e.cfg.PublishRequests = tc.configured
			sv := &scripted{publishes: make(chan *publishCall, maxPublishesInFlight)}
			ctx, cancel := context.WithCancel(t.Context())
			done := runEngine(ctx, e, sv, nil)
			synctest.Wait()
			if n := len(sv.publishes); n != tc.start {
				t.Errorf("publish_requests %d: %d PublishRequests in flight at start, want %d", tc.configured, n, tc.start)
			}
			for want := tc.start - 1; want >= 0; want-- {
				answer(t, sv, nil, ua.StatusBadTooManyPublishRequests)
				synctest.Wait()
				if n := len(sv.publishes); n != max(1, want) {
					t.Fatalf("publish_requests %d after %d refusals: %d in flight, want %d", tc.configured, tc.start-want, n, max(1, want))
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	})
}
