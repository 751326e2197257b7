// Package mqttproto is a prototype MQTT 3.1.1 client for measuring what one
// message per value costs without paho's per-message design (issue 16): no
// token per message, no store of packets, no goroutine hand-off per
// message. Publish appends to an in-flight window and a queue; one writer
// goroutine encodes into a bufio.Writer and flushes when the queue is
// empty, so a burst leaves in few system calls; one reader goroutine takes
// PUBACKs and PINGRESPs and reports acknowledgements in order to one
// callback, as a position (what a spool needs to confirm records).
//
// It is a benchmark prototype, not the product's client: QoS 0 and 1 only,
// no subscriptions, no reconnect of its own (the caller dials again and
// publishes what Unacked returns, as tagbridge's spool would read it
// again), written from the MQTT 3.1.1 specification (OASIS, 2014).
package mqttproto

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Message is one application message.
type Message struct {
	Topic   string
	Payload []byte // kept, not copied, until acknowledged (QoS 1) or written (QoS 0)
	QoS     byte   // 0 or 1
	Retain  bool
}

// Options configure a connection.
type Options struct {
	ClientID     string
	Username     string
	Password     string
	CleanSession bool
	// KeepAlive is sent in CONNECT; the client pings when it has not
	// written or read for half of it, and gives the connection up when the
	// broker has been silent for one and a half times it. 0 turns it off.
	KeepAlive time.Duration
	Will      *Message
	// Window bounds the QoS 1 messages awaiting PUBACK (default 1,024, at
	// most 32,767: packet ids cycle over 65,535, and a late PUBACK for a
	// message already confirmed must not match one in flight).
	Window int
	// Acked, if set, is called on the reading goroutine with n each time
	// the first n QoS 1 messages published on this connection are all
	// acknowledged (n only grows). It must not block.
	Acked func(n uint64)
	// ConnectTimeout bounds CONNECT/CONNACK (default 10 s); WriteTimeout
	// each flush (default 5 s).
	ConnectTimeout time.Duration
	WriteTimeout   time.Duration
}

// maxWindow is half the packet ids: see Options.Window.
const maxWindow = 32767

// ErrClosed is the error of a Publish after Close.
var ErrClosed = errors.New("mqtt connection closed")

// Client is one MQTT connection.
type Client struct {
	conn    net.Conn
	opts    Options
	queue   chan queued
	closing chan struct{} // closed by Close: the writer sends DISCONNECT
	dead    chan struct{} // closed when the connection ends
	wrote   chan struct{} // closed when the writer returns
	read    chan struct{} // closed when the reader returns
	lastIO  atomic.Int64  // unix ns of the last read from the broker
	pings   atomic.Uint64 // PINGRESPs received

	mu        sync.Mutex
	room      sync.Cond // the window has room, or the connection ended
	window    []inflight
	published uint64 // QoS 1 messages published: their numbers are 1..published
	confirmed uint64 // every message up to it is acknowledged
	err       error  // why the connection ended
	closed    bool
}

type inflight struct {
	msg   Message
	acked bool
}

type queued struct {
	msg Message
	n   uint64 // QoS 1: its number; 0 for QoS 0
}

// Connect sends CONNECT on conn (TCP, TLS or a WebSocket, dialed by the
// caller), waits for CONNACK and starts the reader and the writer.
func Connect(ctx context.Context, conn net.Conn, o Options) (*Client, error) {
	if o.Window <= 0 {
		o.Window = 1024
	}
	if o.Window > maxWindow {
		return nil, fmt.Errorf("window %d over %d", o.Window, maxWindow)
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 5 * time.Second
	}
	pkt, err := connectPacket(&o)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	deadline := time.Now().Add(o.ConnectTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	conn.SetDeadline(deadline)
	if _, err := conn.Write(pkt); err != nil {
		return nil, fmt.Errorf("connect: write CONNECT: %w", err)
	}
	r := bufio.NewReaderSize(conn, 16<<10)
	typ, _, body, buf, err := readPacket(r, nil)
	if err != nil {
		return nil, fmt.Errorf("connect: read CONNACK: %w", err)
	}
	if typ != typeConnack || len(body) != 2 {
		return nil, fmt.Errorf("connect: expected CONNACK, got packet type %d of %d bytes", typ, len(body))
	}
	if rc := body[1]; rc != 0 {
		return nil, fmt.Errorf("connect: broker refused: %w", connackError(rc))
	}
	if !stop() {
		return nil, fmt.Errorf("connect: %w", ctx.Err())
	}
	conn.SetDeadline(time.Time{})

	c := &Client{
		conn:    conn,
		opts:    o,
		queue:   make(chan queued, 2*o.Window),
		closing: make(chan struct{}),
		dead:    make(chan struct{}),
		wrote:   make(chan struct{}),
		read:    make(chan struct{}),
		window:  make([]inflight, o.Window),
	}
	c.room.L = &c.mu
	c.lastIO.Store(time.Now().UnixNano())
	go c.writer()
	go c.reader(r, buf)
	return c, nil
}

// connackError names a CONNACK return code (section 3.2.2.3).
func connackError(rc byte) error {
	names := [...]string{1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable", 4: "bad user name or password", 5: "not authorized"}
	if int(rc) < len(names) && names[rc] != "" {
		return fmt.Errorf("return code %d: %s", rc, names[rc])
	}
	return fmt.Errorf("return code %d", rc)
}

// Publish queues m for the writer. A QoS 1 message gets the next number
// (returned), and Publish waits while Window of them await their PUBACK.
// It fails once the connection has ended; what was published before and
// not acknowledged is then in Unacked.
func (c *Client) Publish(m Message) (uint64, error) {
	if m.QoS > 1 {
		return 0, fmt.Errorf("publish %q: qos %d: this client knows 0 and 1", m.Topic, m.QoS)
	}
	if publishSize(&m) > maxRemaining || len(m.Topic) > 65535 {
		return 0, fmt.Errorf("publish %q: %d payload bytes: packet too large", m.Topic, len(m.Payload))
	}
	q := queued{msg: m}
	c.mu.Lock()
	if m.QoS > 0 {
		for c.err == nil && c.published-c.confirmed >= uint64(len(c.window)) {
			c.room.Wait()
		}
	}
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, fmt.Errorf("publish %q: %w", m.Topic, err)
	}
	if m.QoS > 0 {
		c.published++
		q.n = c.published
		c.window[q.n%uint64(len(c.window))] = inflight{msg: m}
	}
	c.mu.Unlock()
	select {
	case c.queue <- q:
	case <-c.dead:
		// Counted as unacknowledged (QoS 1) or lost (QoS 0).
	}
	return q.n, nil
}

// packetID is message n's packet id: 1..65535 in turn, unique among the
// messages in the window.
func packetID(n uint64) uint16 { return uint16((n-1)%65535 + 1) }

// Unacked returns the QoS 1 messages published and not acknowledged, in
// the order they were published, with the number of the first. Once the
// connection has ended, these are what a new connection must publish again.
func (c *Client) Unacked() (first uint64, msgs []Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for n := c.confirmed + 1; n <= c.published; n++ {
		if f := c.window[n%uint64(len(c.window))]; !f.acked {
			if first == 0 {
				first = n
			}
			msgs = append(msgs, f.msg)
		}
	}
	return first, msgs
}

// Confirmed returns n: every QoS 1 message up to the n-th is acknowledged.
func (c *Client) Confirmed() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.confirmed
}

// Pings returns the PINGRESPs received.
func (c *Client) Pings() uint64 { return c.pings.Load() }

// Done is closed when the connection has ended; Err says why.
func (c *Client) Done() <-chan struct{} { return c.dead }

// Err is why the connection ended: nil while it is up, ErrClosed after Close.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close sends DISCONNECT after what is queued (the broker then drops the
// will), waits for the writer and closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	close(c.closing)
	<-c.wrote
	c.end(ErrClosed)
	<-c.read
	return nil
}

// end records why the connection ended, once, and closes it.
func (c *Client) end(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	c.room.Broadcast()
	c.mu.Unlock()
	close(c.dead)
	c.conn.Close()
}

// writer encodes queued messages into one buffer and flushes it when the
// queue is empty: one write for what gathered meanwhile.
func (c *Client) writer() {
	defer close(c.wrote)
	w := bufio.NewWriterSize(c.conn, 64<<10)
	var scratch []byte
	var tick <-chan time.Time
	half := c.opts.KeepAlive / 2
	if half > 0 {
		t := time.NewTicker(half)
		defer t.Stop()
		tick = t.C
	}
	lastWrite := time.Now()
	flush := func() bool {
		c.conn.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
		if err := w.Flush(); err != nil {
			c.end(fmt.Errorf("write: %w", err))
			return false
		}
		lastWrite = time.Now()
		return true
	}
	for {
		select {
		case q := <-c.queue:
			for {
				scratch = appendPublish(scratch[:0], &q.msg, packetID(q.n))
				w.Write(scratch) // an error stays in w and comes from Flush
				if len(c.queue) == 0 {
					break
				}
				q = <-c.queue
			}
			if !flush() {
				return
			}
		case now := <-tick:
			// Ping when idle either way: a publisher that only writes
			// QoS 0 would otherwise never hear from the broker.
			if now.Sub(lastWrite) >= half || now.Sub(time.Unix(0, c.lastIO.Load())) >= half {
				w.Write([]byte{typePingreq << 4, 0})
				if !flush() {
					return
				}
			}
		case <-c.closing:
			for len(c.queue) > 0 {
				q := <-c.queue
				w.Write(appendPublish(scratch[:0], &q.msg, packetID(q.n)))
			}
			w.Write([]byte{typeDisconnect << 4, 0})
			flush()
			return
		case <-c.dead:
			return
		}
	}
}

// reader takes the broker's packets until the connection ends.
func (c *Client) reader(r *bufio.Reader, buf []byte) {
	defer close(c.read)
	silence := c.opts.KeepAlive * 3 / 2
	for {
		if silence > 0 && r.Buffered() == 0 {
			c.conn.SetReadDeadline(time.Now().Add(silence))
		}
		typ, _, body, next, err := readPacket(r, buf)
		buf = next
		if err != nil {
			c.end(fmt.Errorf("read: %w", err))
			return
		}
		c.lastIO.Store(time.Now().UnixNano())
		switch typ {
		case typePuback:
			if len(body) != 2 {
				c.end(fmt.Errorf("read: PUBACK of %d bytes: %w", len(body), errMalformed))
				return
			}
			c.ack(binary.BigEndian.Uint16(body))
		case typePingresp:
			c.pings.Add(1)
		default:
			// Nothing else is expected: no subscriptions, no QoS 2.
			c.end(fmt.Errorf("read: unexpected packet type %d: %w", typ, errMalformed))
			return
		}
	}
}

// ack marks the message with packet id id acknowledged, moves the
// confirmed position over every acknowledged message at its front and
// reports it. A PUBACK for no message in flight (a repeated one) is ignored.
func (c *Client) ack(id uint16) {
	c.mu.Lock()
	base := c.confirmed + 1
	n := base + uint64((int(id)-int(packetID(base))+65535)%65535)
	if id == 0 || n > c.published {
		c.mu.Unlock()
		return
	}
	size := uint64(len(c.window))
	c.window[n%size].acked = true // a repeated PUBACK changes nothing
	moved := false
	for c.confirmed < c.published && c.window[(c.confirmed+1)%size].acked {
		c.confirmed++
		c.window[c.confirmed%size] = inflight{} // drop the payload
		moved = true
	}
	confirmed := c.confirmed
	if moved {
		c.room.Broadcast()
	}
	c.mu.Unlock()
	if moved && c.opts.Acked != nil {
		c.opts.Acked(confirmed)
	}
}
