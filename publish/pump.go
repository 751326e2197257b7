package publish

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tagbridge/tagbridge/payload"
	"github.com/tagbridge/tagbridge/publish/mqttconn"
)

// pending is a spooled record handed to paho, n-th in paho's store; its
// topic, to count it under its entry, is "" for a record never handed to
// paho (set aside or skipped), which rides on the one before.
type pending struct {
	n, seq uint64
	topic  string
}

// newConnection, on Run's goroutine with the link up, notices a new
// connection: with fences, the spool is read again from the first record
// the broker has not confirmed (records written to the broken connection
// may never have reached it).
func (p *Publisher) newConnection() {
	c := p.conn.Load()
	if !p.fenced || c == p.readConn {
		return
	}
	// A fence the old connection answered before it broke, which Run has
	// not taken yet (its select chose this pump first): the broker has
	// those records, and reading them again would send them twice.
	p.fenceAnswered()
	p.readConn, p.handedSeq, p.fenceAt = c, 0, 0
	if err := p.spool.Rewind(); err != nil {
		p.log.Error().Err(err).Msg("cannot read the spool again from the first record the broker has not confirmed")
	}
}

// fence asks the broker to confirm the records written to the connection
// so far, unless a fence is awaiting its answer.
func (p *Publisher) fence() {
	if !p.fenced || p.fenceAt != 0 || p.handedSeq <= p.fencedTo || p.readConn == nil {
		return
	}
	upTo := p.handedSeq
	ok := p.readConn.Fence(func() {
		for {
			old := p.confirmed.Load()
			if old >= upTo || p.confirmed.CompareAndSwap(old, upTo) {
				break
			}
		}
		select {
		case p.fenceWake <- struct{}{}:
		default:
		}
	})
	if ok {
		p.fenceAt = upTo
	}
}

// fenceAnswered acknowledges to the spool what the broker has confirmed.
func (p *Publisher) fenceAnswered() {
	c := p.confirmed.Load()
	if c > p.fencedTo {
		p.fencedTo = c
		p.ackSpool(c - 1)
	}
	if p.fenceAt <= c {
		p.fenceAt = 0
	}
}

// sendable is ready when spooled records can go out: the link is up and
// the window has room. It is nil otherwise.
func (p *Publisher) sendable() <-chan struct{} {
	if !p.spool.Unread() || p.inflight.full() {
		return nil
	}
	return p.upChan()
}

// pumpBatch bounds the records pump hands over before Run looks at its
// other channels again.
const pumpBatch = 64

// pump hands spooled records to paho in order while the link is up and the
// window has room. This is the one way out to the broker.
func (p *Publisher) pump() {
	p.newConnection()
	if p.announceable() != nil {
		p.announce() // births and status before any record on a new connection
	}
	for range pumpBatch {
		if p.inflight.full() {
			p.reap()
			if p.inflight.full() {
				break
			}
		}
		topic, payload, seq, ok := p.spool.Peek()
		if !ok {
			break
		}
		if reason := p.unsendable(topic, len(payload)); reason != "" {
			p.setAsideRecord(topic, payload, seq, reason)
			continue
		}
		if !p.publishPrelude(topic) {
			break // the link went down
		}
		if payload = p.format.Outgoing(topic, payload); payload == nil {
			p.skipRecord(topic, seq)
			continue
		}
		tok := p.publish(topic, payload) // a copy of its own, which paho keeps until acknowledged
		if tok == nil {
			break // the link went down: the record stays next in the spool
		}
		// false if the spool, full, dropped it meanwhile: it went out anyway
		_ = p.spool.Advance(seq)
		p.inflight.push(inflight{tok, topic, seq, p.readConn})
		if p.qos > 0 && tok.(*mqtt.PublishToken).MessageID() != 0 {
			// In paho's store now: it is through once the store has
			// counted p.handed acknowledgements.
			p.handed++
			p.pending = append(p.pending, pending{p.handed, seq, topic})
		}
	}
	p.acknowledge()
}

// publishPrelude publishes what the format sends before a record (see
// preluder); false if the link is down.
func (p *Publisher) publishPrelude(topic string) bool {
	for _, m := range p.format.Prelude(topic) {
		if p.publishMessage(m) == nil {
			return false
		}
	}
	return true
}

// unsendable says why a record can never reach the broker, or "" if it
// can: a topic the broker would refuse (a spool written under an older
// configuration), or a packet larger than mqtt.max_packet_size.
func (p *Publisher) unsendable(topic string, payloadLen int) string {
	if size := payload.PacketSize(topic, payloadLen, p.qos); size > p.maxPacket {
		return fmt.Sprintf("packet of %d bytes, over mqtt.max_packet_size (%d)", size, p.maxPacket)
	}
	if _, ok := p.goodTopics[topic]; ok {
		return ""
	}
	if err := payload.CheckTopic(topic); err != nil {
		return "topic " + err.Error()
	}
	if len(p.goodTopics) < maxGoodTopics {
		p.goodTopics[topic] = struct{}{}
	}
	return ""
}

// setAsideRecord moves the record at the spool's reader to the dead-letter
// file instead of handing it to paho; it is acknowledged to the spool in
// its turn, after the records handed over before it.
func (p *Publisher) setAsideRecord(topic string, payload []byte, seq uint64, reason string) {
	p.deadLetter(topic, payload, reason)
	_ = p.spool.Advance(seq)
	p.inflight.push(inflight{doneToken{}, topic, seq, p.readConn})
	if p.qos > 0 {
		p.pending = append(p.pending, pending{p.handed, seq, ""})
	}
}

// deadLetter writes a message the broker cannot take to the spool's
// dead-letter file, counts it, and logs the first one.
func (p *Publisher) deadLetter(topic string, payload []byte, reason string) {
	p.setAside.Add(1)
	p.owners.of(topic).dropped.Add(1)
	err := p.spool.DeadLetter(topic, payload)
	p.mu.Lock()
	first := !p.asideLog
	p.asideLog = true
	p.mu.Unlock()
	switch {
	case err != nil:
		p.log.Error().Err(err).Str("topic", topic).Str("reason", reason).Msg("cannot write a message the broker cannot take to the dead-letter file: dropped")
	case first:
		p.log.Error().Str("topic", topic).Str("reason", reason).Str("file", p.spool.DeadLetterPath()).
			Msg("set a message the broker cannot take aside in the dead-letter file, so that the rest flows; later ones are counted (set_aside), not logged")
	}
}

// skipRecord passes over a record the format says need not go out; it is
// acknowledged to the spool in its turn, as one set aside is.
func (p *Publisher) skipRecord(topic string, seq uint64) {
	_ = p.spool.Advance(seq)
	p.inflight.push(inflight{doneToken{}, topic, seq, p.readConn})
	if p.qos > 0 {
		p.pending = append(p.pending, pending{p.handed, seq, ""})
	}
}

// doneToken is the completed token of a record set aside, never handed to paho.
type doneToken struct{}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (doneToken) Wait() bool { return true }

func (doneToken) WaitTimeout(time.Duration) bool { return true }

func (doneToken) Done() <-chan struct{} { return closedChan }

func (doneToken) Error() error { return nil }

// acknowledge tells the spool which records the broker has (QoS 1, 2).
func (p *Publisher) acknowledge() {
	acked := p.store.Acked()
	i := 0
	for i < len(p.pending) && p.pending[i].n <= acked {
		if t := p.pending[i].topic; t != "" {
			p.owners.of(t).published.Add(1)
		}
		i++
	}
	if i == 0 {
		return
	}
	p.ackSpool(p.pending[i-1].seq)
	p.pending = append(p.pending[:0], p.pending[i:]...)
}

// ackSpool tells the spool the broker has the records up to seq, and the
// latency histogram when they got there.
func (p *Publisher) ackSpool(seq uint64) {
	p.spool.Ack(seq)
	p.latency.acked(seq, time.Now())
}

// publish hands a spooled record to paho if the link is still up, and
// returns nil if not.
func (p *Publisher) publish(topic string, payload []byte) mqtt.Token {
	return p.handOver(topic, p.qos, p.retain, payload)
}

// handOver calls paho if the link is still up, and returns nil if not; a
// reconnect attempt waits while it is inside Publish (see notify).
func (p *Publisher) handOver(topic string, qos byte, retain bool, payload []byte) mqtt.Token {
	p.mu.Lock()
	if !p.isUp {
		p.mu.Unlock()
		return nil
	}
	p.publishing = true
	p.mu.Unlock()
	tok := p.client.Publish(topic, qos, retain, payload)
	p.mu.Lock()
	p.publishing = false
	p.idle.Broadcast()
	p.mu.Unlock()
	return tok
}

// reap takes the completed publishes off the front of the window; tokens
// complete in order, so the front is the one to wait for.
//
// For QoS 1 and 2 a token tells little: an error after the message got its
// packet id (a write on a dying connection) leaves it in the store, to be
// resent after reconnecting, and a resent message's token completes before
// the broker acknowledges it. So the store counts acknowledgements, and only
// a message that never reached the store (no packet id) has failed.
func (p *Publisher) reap() {
	for p.inflight.n > 0 {
		f := *p.inflight.front()
		select {
		case <-f.token.Done():
		default:
			return
		}
		p.inflight.pop()
		err := f.token.Error()
		if p.fenced {
			// Acknowledged to the spool by a fence; a record the link
			// lost is read again on the next connection.
			if err == nil && f.conn == p.readConn {
				p.handedSeq = max(p.handedSeq, f.seq+1)
				if _, aside := f.token.(doneToken); !aside {
					p.published.Add(1)
					p.owners.of(f.topic).published.Add(1)
				}
			}
			continue
		}
		if p.qos == 0 {
			p.ackSpool(f.seq) // at most once: handed to the connection, or lost
		}
		if _, aside := f.token.(doneToken); aside {
			continue
		}
		switch {
		case err == nil:
			if p.qos == 0 {
				p.published.Add(1)
				p.owners.of(f.topic).published.Add(1)
			}
		case p.qos > 0 && f.token.(*mqtt.PublishToken).MessageID() != 0:
			// Still in the store: paho resends it.
		default:
			p.failed.Add(1)
			p.owners.of(f.topic).failed.Add(1)
			if !p.failing {
				p.failing = true
				p.log.Error().Err(err).Str("topic", f.topic).Msg("publish failed")
			}
			continue
		}
		if p.failing {
			p.failing = false
			p.log.Info().Str("topic", f.topic).Msg("publishing again")
		}
	}
}

// inflight is a publish awaiting completion.
type inflight struct {
	token mqtt.Token
	topic string
	seq   uint64         // in the spool
	conn  *mqttconn.Conn // it was handed to, with fences
}

// ring is a fixed-size FIFO of inflight publishes.
type ring struct {
	buf     []inflight
	head, n int
	shown   atomic.Int64 // n, for Stats on other goroutines
}

func (r *ring) full() bool { return r.n == len(r.buf) }

func (r *ring) front() *inflight { return &r.buf[r.head] }

func (r *ring) push(f inflight) {
	r.buf[(r.head+r.n)%len(r.buf)] = f
	r.n++
	r.shown.Store(int64(r.n))
}

func (r *ring) pop() {
	r.buf[r.head] = inflight{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	r.shown.Store(int64(r.n))
}

// frontDone is the oldest publish's completion, or nil when there is none.
func (r *ring) frontDone() <-chan struct{} {
	if r.n == 0 {
		return nil
	}
	return r.front().token.Done()
}

// drain sends what is left in the spool and waits for every message to be
// acknowledged, then disconnects. tick is Run's sync ticker.
func (p *Publisher) drain(ctx context.Context, tick <-chan time.Time) error {
	for p.spool.Unread() || p.inflight.n > 0 || p.fencedTo < p.handedSeq {
		p.newConnection() // a rewind makes records unread again
		select {
		case <-p.sendable():
			p.pump()
		case <-p.inflight.frontDone():
			p.reap()
		case <-p.fenceWake:
			p.fenceAnswered()
		case <-tick:
			p.sync()
		case <-ctx.Done():
			return p.stop(ctx)
		}
		p.fence()
	}
	// Tokens of messages resent after a reconnect complete before the
	// broker acknowledges them; the store knows.
	for {
		_, out, changed := p.store.State()
		if out == 0 {
			break
		}
		select {
		case <-changed:
		case <-tick:
			p.sync()
		case <-ctx.Done():
			return p.stop(ctx)
		}
	}
	p.acknowledge()
	p.closeSpool()
	p.farewell()
	p.store.ResumeAll()
	p.client.Disconnect(quiesce)
	st := p.Stats()
	p.log.Info().Uint64("published", st.Published).Uint64("failed", st.Failed).Msg("disconnected from broker")
	return nil
}

// stop is the hard stop: disconnect now. What the broker has not
// acknowledged stays in the spool and is sent after the next start.
func (p *Publisher) stop(ctx context.Context) error {
	p.reap()
	p.acknowledge()
	p.closeSpool()
	p.farewell()
	p.store.ResumeAll()
	p.client.Disconnect(0)
	if st := p.spool.Stats(); st.Values > 0 {
		p.log.Info().Uint64("values", st.Values).Err(context.Cause(ctx)).
			Msg("stopped before the broker had everything; the spool keeps it for the next start")
	}
	return nil
}

func (p *Publisher) closeSpool() {
	if err := p.spool.Close(); err != nil {
		p.log.Error().Err(err).Msg("cannot close the spool")
	}
}
