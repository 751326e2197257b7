package publish

import (
	"context"
	"strings"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tagbridge/tagbridge/command"
)

// Commander takes the commands that arrive from the broker and returns
// the results to publish (command.Handler).
type Commander interface {
	Filters() []string
	Handle(ctx context.Context, topic string, payload []byte, retained bool) []command.Message
	// SetAliases tells it how to name the tags of Sparkplug metric aliases.
	SetAliases(command.AliasFunc)
}

const (
	// commandQueue bounds the commands received and not yet handled; more
	// are dropped (and logged): paho must never wait for a PLC.
	commandQueue = 256
	// commandWorkers is how many commands run at once, so that a slow PLC
	// does not hold up the commands of another.
	commandWorkers = 4
)

// commands is the Publisher's side of write-back: subscriptions on the
// same connection as the values, a queue, workers, and results published
// at QoS 0, never through the spool.
type commands struct {
	handler Commander
	queue   chan mqtt.Message
	dropped sync.Once
}

// SetCommands makes the publisher subscribe to c's filters, at QoS 1,
// after every connect, and run what arrives; call it before Run.
func (p *Publisher) SetCommands(c Commander) {
	if c == nil || len(c.Filters()) == 0 {
		return
	}
	p.cmds = &commands{handler: c, queue: make(chan mqtt.Message, commandQueue)}
	c.SetAliases(p.format.TagOfAlias)
	// Routes before connecting: a persistent session delivers queued
	// commands right after CONNACK, before any SUBSCRIBE is answered, and
	// paho drops a message no route takes.
	for _, f := range c.Filters() {
		p.client.AddRoute(f, p.queueCommand)
	}
}

// queueCommand runs on paho's goroutine: it only queues.
func (p *Publisher) queueCommand(_ mqtt.Client, m mqtt.Message) {
	select {
	case p.cmds.queue <- m:
	default:
		p.cmds.dropped.Do(func() {
			p.log.Warn().Str("topic", m.Topic()).Int("queued", commandQueue).Msg("commands arrive faster than the PLCs take them; dropping commands (logged once)")
		})
	}
}

// runCommands handles queued commands until ctx ends.
func (p *Publisher) runCommands(ctx context.Context) {
	if p.cmds == nil {
		return
	}
	var wg sync.WaitGroup
	for range commandWorkers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-p.cmds.queue:
					for _, r := range p.cmds.handler.Handle(ctx, m.Topic(), m.Payload(), m.Retained()) {
						p.publishResult(r)
					}
				}
			}
		})
	}
	wg.Wait()
}

// publishResult sends a command's result at QoS 0 if the link is up: a
// result is an answer to a live sender and is never kept for later.
func (p *Publisher) publishResult(r command.Message) {
	// The connection, not the link: right after a connect, queued commands
	// are answered before the spool has caught up.
	if !p.client.IsConnectionOpen() {
		p.log.Debug().Str("topic", r.Topic).Msg("broker not connected; command result not sent")
		return
	}
	p.client.Publish(r.Topic, 0, false, r.Payload)
}

// subscribeWrites subscribes to the command filters; paho's goroutine
// only queues what arrives.
func (p *Publisher) subscribeWrites(c mqtt.Client) {
	if p.cmds == nil {
		return
	}
	filters := map[string]byte{}
	for _, f := range p.cmds.handler.Filters() {
		filters[f] = 1
	}
	tok := c.SubscribeMultiple(filters, p.queueCommand)
	if !tok.WaitTimeout(connectTimeout) || tok.Error() != nil {
		p.log.Warn().Err(tok.Error()).Str("topic", strings.Join(p.cmds.handler.Filters(), " ")).Msg("cannot subscribe to commands")
	}
}
