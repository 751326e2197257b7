package publish

import (
	"context"
	"slices"
	"strings"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tagbridge/tagbridge/command"
)

// Commander takes the commands that arrive from the broker and returns
// the results to publish (command.Handler).
type Commander interface {
	Filters() []string
	// Changed is closed when Filters changes (a reload).
	Changed() <-chan struct{}
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
// at QoS 1, never through the spool.
type commands struct {
	handler Commander
	queue   chan mqtt.Message
	dropped sync.Once

	subMu      sync.Mutex          // one subscribing at a time: connect and reload
	subscribed map[string]struct{} // filters subscribed on the connection now
}

// SetCommands makes the publisher subscribe to c's filters, at QoS 1,
// after every connect and whenever they change, and run what arrives;
// call it before Run. A c without filters yet may gain some on reload.
func (p *Publisher) SetCommands(c Commander) {
	if c == nil {
		return
	}
	p.cmds = &commands{handler: c, queue: make(chan mqtt.Message, commandQueue)}
	c.SetAliases(p.format.TagOfAlias)
	// Routes before connecting: a persistent session delivers queued
	// commands right after CONNACK, before any SUBSCRIBE is answered, and
	// paho drops a message no route takes.
	for _, f := range c.Filters() {
		p.client.AddRoute(f, p.commandRoute(f))
	}
}

// commandRoute is the route of a command filter: the format's own for its
// command topics (Sparkplug NCMD and DCMD), which passes them on.
func (p *Publisher) commandRoute(filter string) mqtt.MessageHandler {
	if slices.Contains(p.format.CommandTopics(), filter) {
		return p.formatCommand
	}
	return p.queueCommand
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
	wg.Go(func() { p.followCommandFilters(ctx) })
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

// followCommandFilters subscribes to the filters a reload brings, and
// unsubscribes from those it drops, at once on the open connection.
func (p *Publisher) followCommandFilters(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.cmds.handler.Changed():
			if p.client.IsConnectionOpen() {
				p.syncCommandFilters(p.client, false)
			}
		}
	}
}

// publishResult sends a command's result at QoS 1 if the connection is
// up: a lost result leaves the sender guessing. paho resends it after a
// reconnect; it is never spooled, since a result is an answer to a live
// sender.
func (p *Publisher) publishResult(r command.Message) {
	// The connection, not the link: right after a connect, queued commands
	// are answered before the spool has caught up.
	if !p.client.IsConnectionOpen() {
		p.log.Debug().Str("topic", r.Topic).Msg("broker not connected; command result not sent")
		return
	}
	// The store resends it like the values but counts it apart.
	done := p.store.PublishingResult(r.Topic)
	defer done()
	p.client.Publish(r.Topic, 1, false, r.Payload)
}

// subscribeWrites subscribes to the command filters after a connect;
// paho's goroutine only queues what arrives.
func (p *Publisher) subscribeWrites(c mqttClient) {
	if p.cmds == nil {
		return
	}
	p.syncCommandFilters(c, true)
}

// syncCommandFilters makes the connection's command subscriptions the
// handler's filters: all of them after a connect (fresh), otherwise those
// not subscribed yet, and it unsubscribes from those no longer listed.
func (p *Publisher) syncCommandFilters(c mqttClient, fresh bool) {
	p.cmds.subMu.Lock()
	defer p.cmds.subMu.Unlock()
	if fresh {
		p.cmds.subscribed = nil
	}
	// The format subscribes to its own command topics on every connect.
	want := slices.DeleteFunc(p.cmds.handler.Filters(), func(f string) bool { return slices.Contains(p.format.CommandTopics(), f) })
	add := map[string]byte{}
	for _, f := range want {
		if _, ok := p.cmds.subscribed[f]; !ok {
			add[f] = 1
			c.AddRoute(f, p.queueCommand)
		}
	}
	var drop []string
	for f := range p.cmds.subscribed {
		if !slices.Contains(want, f) {
			drop = append(drop, f)
		}
	}
	if len(drop) > 0 {
		tok := c.Unsubscribe(drop...)
		if !tok.WaitTimeout(connectTimeout) || tok.Error() != nil {
			p.log.Warn().Err(tok.Error()).Str("topic", strings.Join(drop, " ")).Msg("cannot unsubscribe from commands")
		}
	}
	next := make(map[string]struct{}, len(want))
	for _, f := range want {
		next[f] = struct{}{}
	}
	if len(add) > 0 {
		tok := c.SubscribeMultiple(add, p.queueCommand)
		if !tok.WaitTimeout(connectTimeout) || tok.Error() != nil {
			p.log.Warn().Err(tok.Error()).Str("topic", strings.Join(want, " ")).Msg("cannot subscribe to commands")
			return // tried again on the next change or connect
		}
		if !fresh {
			p.log.Info().Int("filters", len(add)).Msg("subscribed to the commands the new configuration allows")
		}
	}
	p.cmds.subscribed = next
}
