// Package agent wires collectors to the publisher and owns their lifecycle.
//
// Stop order, on cancellation of Run's context:
//  1. every collector session stops collecting, forwards what it already
//     received, closes its OPC UA session and returns;
//  2. the agent, owner of the sample channel, closes it;
//  3. the publisher drains the channel into its disk spool, sends what the
//     spool holds while the broker is reachable, waits for in-flight
//     publishes and disconnects from the broker; what the broker has not
//     acknowledged stays in the spool for the next start.
//
// The whole sequence is bounded by ShutdownTimeout.
package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/publish"
)

// ShutdownTimeout bounds the stop sequence after cancellation.
const ShutdownTimeout = 9 * time.Second

// sampleBuffer, in batches (one per publish cycle and session), decouples
// collectors from short publisher hiccups.
const sampleBuffer = 1024

// collector is what the agent needs from a PLC session.
type collector interface {
	Run(ctx context.Context, out chan<- collectors.Batch) error
}

// publisher is what the agent needs from the MQTT side.
type publisher interface {
	Run(ctx context.Context, in <-chan collectors.Batch) error
}

// Run collects and publishes until ctx ends, then stops in order. It returns
// an error only when something fails that stops the whole agent.
func Run(ctx context.Context, cfg *config.Config, log zerolog.Logger) error {
	pub, err := publish.New(cfg, log.With().Str("component", "mqtt").Logger())
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	sessions := make([]collector, 0, len(cfg.PLCs))
	opcuaLog := log.With().Str("component", "opcua").Logger()
	for _, group := range shareSessions(cfg.PLCs) {
		if len(group) > 1 {
			names := make([]string, len(group))
			for i, p := range group {
				names[i] = p.Name
			}
			opcuaLog.Info().Strs("plcs", names).Str("endpoint", group[0].Endpoint).
				Msg("PLC entries with the same endpoint and security settings share one OPC UA session")
		}
		sessions = append(sessions, opcua.NewSharedSession(group, opcuaLog))
	}
	log.Info().Str("agent", cfg.Agent.ID).Int("plcs", len(cfg.PLCs)).Int("tags", cfg.TagCount()).Msg("agent starting")
	err = run(ctx, sessions, pub)
	log.Info().Msg("agent stopped")
	return err
}

func run(ctx context.Context, sessions []collector, pub publisher) error {
	collectCtx, stopCollecting := context.WithCancel(ctx)
	defer stopCollecting()

	// The publisher outlives ctx so it can drain; it is cut off only when the
	// shutdown budget is spent.
	publishCtx, stopPublishing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPublishing()
	go func() {
		<-collectCtx.Done()
		select {
		case <-time.After(ShutdownTimeout):
			stopPublishing()
		case <-publishCtx.Done():
		}
	}()

	samples := make(chan collectors.Batch, sampleBuffer)
	published := make(chan error, 1)
	go func() {
		err := pub.Run(publishCtx, samples)
		stopCollecting() // a publisher that gives up stops the agent
		published <- err
	}()

	var wg sync.WaitGroup
	errs := make([]error, len(sessions))
	for i, s := range sessions {
		wg.Go(func() { errs[i] = s.Run(collectCtx, samples) })
	}
	wg.Wait()
	close(samples)
	err := <-published
	if err == nil && ctx.Err() == nil {
		err = errors.New("publisher stopped unexpectedly")
	}
	return errors.Join(append(errs, err)...)
}

// shareSessions groups PLC entries that may share one OPC UA session, in
// the order of the configuration.
func shareSessions(plcs []config.PLC) [][]config.PLC {
	var groups [][]config.PLC
	index := map[string]int{}
	for _, p := range plcs {
		k := opcua.ShareKey(p)
		if i, ok := index[k]; ok {
			groups[i] = append(groups[i], p)
			continue
		}
		index[k] = len(groups)
		groups = append(groups, []config.PLC{p})
	}
	return groups
}
