package agent

import (
	"context"
	"fmt"
	"slices"

	"github.com/tagbridge/tagbridge/agent/statusapi"
	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/command"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/publish"
)

// statusSource reads the trackers of the running sessions and the current
// publisher's counters when a status request comes, so it follows reloads.
type statusSource struct{ a *Agent }

func (s statusSource) PLCs() []collectors.PLCState {
	var out []collectors.PLCState
	for _, t := range s.a.Trackers() {
		out = append(out, t.Snapshot()...)
	}
	return out
}

func (s statusSource) Broker() statusapi.Broker {
	st := s.a.PublisherStats()
	return statusapi.Broker{
		Connected:   st.Connected,
		InFlight:    st.InFlight,
		SpoolBytes:  st.SpoolBytes,
		SpoolValues: st.Spooled,
		Dropped:     st.Dropped,
		Published:   st.Published,
		Failed:      st.Failed,
		Resent:      st.Resent,

		SpoolMaxBytes:   st.SpoolMaxBytes,
		ConnectAttempts: st.ConnectAttempts,
		Reconnects:      st.Reconnects,
		PublishLatency:  statusapi.Histogram(st.PublishLatency),
		ByPLC:           byPLC(st.PLCs),
	}
}

// byPLC converts the publisher's counts by PLC entry for the status.
func byPLC(in map[string]publish.PLCCounts) map[string]statusapi.PublishCounts {
	out := make(map[string]statusapi.PublishCounts, len(in))
	for plc, c := range in {
		out[plc] = statusapi.PublishCounts(c)
	}
	return out
}

// Reconnect makes the session of entry plc, waiting to reconnect, try now.
func (s statusSource) Reconnect(plc string) error { return s.a.Reconnect(plc) }

// Commands are the commands taken from MQTT, for /status and /metrics.
func (s statusSource) Commands() ([]command.Record, map[string]uint64) { return s.a.Commands() }

// startStatus serves agent.status_listen, when set, until the returned stop
// is called: it outlives ctx so the stop sequence stays observable. A
// listener that cannot be opened is an error, so a typo does not leave
// the agent unmonitored without a word. The status settings in force are
// those at start; a reload does not change them.
func (a *Agent) startStatus(ctx context.Context) (stop func(), err error) {
	c := a.cfg.Agent
	if c.StatusListen == "" {
		return func() {}, nil
	}
	log := a.log.With().Str("component", "status").Logger()
	srv, err := statusapi.New(c.StatusListen, c.StatusToken, c.ID, statusSource{a}, log)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	srv.SetVersion(c.Version)
	srv.SetMaxBacklogAge(c.StatusMaxBacklogAge.Duration())
	srv.SetRequireAllTags(c.StatusRequireAllTags)
	if err := srv.SetWebConfig(c.StatusWebConfig); err != nil {
		srv.Close()
		return nil, fmt.Errorf("status: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Run(sctx); err != nil {
			log.Error().Err(err).Msg("status server stopped; /healthz, /status and /metrics are gone until restart")
		}
	}()
	return func() { cancel(); <-done }, nil
}

// statusChanged reports whether a reload from old to next changes the
// status settings, which apply only at start.
func statusChanged(old, next config.Agent) bool {
	return old.StatusListen != next.StatusListen || old.StatusAllowRemote != next.StatusAllowRemote ||
		old.StatusTokenFile != next.StatusTokenFile || old.StatusToken != next.StatusToken ||
		old.StatusWebConfig != next.StatusWebConfig
}

// retrier is a collector that can cut its reconnect wait short.
type retrier interface{ RetryNow() bool }

// Reconnect makes the session serving entry plc try to connect now, if it
// waits to reconnect (statusapi.ErrNotWaiting if not).
func (a *Agent) Reconnect(plc string) error {
	a.mu.Lock()
	var found collector
	for _, g := range a.groups {
		if slices.Contains(g.c.States().Names(), plc) {
			found = g.c
		}
	}
	a.mu.Unlock()
	if found == nil {
		return statusapi.ErrUnknownPLC
	}
	r, ok := found.(retrier)
	if !ok || !r.RetryNow() {
		return statusapi.ErrNotWaiting
	}
	return nil
}
