package publish

import (
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/payload"
)

// The PLC entries' states and the format's own messages (connected,
// status, stopping), published directly at QoS 0 rather than spooled.

// stale reports whether st is older than the state New was given for its
// entry: an event sent before a reload, which the old publisher did not take.
func (p *Publisher) stale(st collectors.PLCState) bool {
	given, ok := p.since[st.PLC]
	if !ok {
		return false
	}
	if st.Since.After(given) {
		delete(p.since, st.PLC) // what follows is newer still
		return false
	}
	return true
}

// takeState hands a PLC entry's state change to the format, on the intake;
// silence hears of it first, to report a long recovery as disconnected.
func (p *Publisher) takeState(st collectors.PLCState) {
	p.silence.note(st)
	p.appendFor = p.owners.counts(st.PLC)
	p.queueDirect(p.format.PLCState(st, p.spoolAppend))
}

// queueDirect has Run's goroutine publish a format's messages while the
// link is up; while it is down, the next connect announces the state anyway.
func (p *Publisher) queueDirect(msgs []payload.Message) {
	if len(msgs) == 0 {
		return
	}
	p.mu.Lock()
	if p.isUp {
		p.direct = append(p.direct, msgs...)
	}
	p.mu.Unlock()
}

// announceable is ready when the link is up and the format has messages to
// send: its connected messages after a connect, or queued direct ones.
func (p *Publisher) announceable() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.announced && len(p.direct) == 0 {
		return nil
	}
	return p.up
}

// announce publishes the format's messages at QoS 0: its connected messages
// first after every connect, then the queued ones.
func (p *Publisher) announce() {
	p.newConnection()
	p.mu.Lock()
	var msgs []payload.Message
	if !p.announced {
		p.announced = true
		p.direct = nil // connected() covers the latest state
		p.mu.Unlock()
		msgs = p.format.Connected()
	} else {
		msgs, p.direct = p.direct, nil
		p.mu.Unlock()
	}
	for _, m := range msgs {
		if p.publishMessage(m) == nil {
			return // link down: the next connect announces again
		}
	}
}

// publishMessage sends m at QoS 0 if the link is up, and returns nil if not.
func (p *Publisher) publishMessage(m payload.Message) mqtt.Token {
	return p.handOver(m.Topic, 0, m.Retain, m.Payload)
}

// farewell publishes the format's stopping messages and waits briefly for
// them to be written, so a clean stop says so before the will could.
func (p *Publisher) farewell() {
	var last mqtt.Token
	for _, m := range p.format.Stopping() {
		if tok := p.publishMessage(m); tok != nil {
			last = tok
		}
	}
	if last != nil {
		last.WaitTimeout(time.Second)
	}
}
