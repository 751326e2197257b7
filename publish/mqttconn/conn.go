// Package mqttconn is the connection paho writes to and reads from: writes
// coalesced, reads buffered and bounded by mqtt.max_packet_size, and fences
// (a PINGREQ whose answer confirms every packet written before it).
package mqttconn

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"
)

// paho writes every packet with one write system call and reads every
// packet with three or more (type byte, each length byte, the rest). At
// thousands of messages a second these calls were the agent's largest cost
// (a CPU profile at 10,000 values/s: 30 % in write, 13 % in read). openConn
// dials as paho's own openConnection does and wraps the connection in a
// coalescingConn.

// openConn returns the mqtt.OpenConnectionFunc of the Publisher: the dial
// of paho v1.5.1's openConnection (netconn.go) for the schemes the
// configuration accepts, with the connection wrapped so that no packet
// from the broker larger than maxPacket is read. broken is called when a
// read fails: the connection is lost. opened, if not nil, is given each
// connection made.
func Open(maxPacket int, broken func(), opened func(*Conn)) mqtt.OpenConnectionFunc {
	return func(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
		conn, err := dial(uri, o)
		if err != nil {
			return nil, err
		}
		cc := newCoalescingConn(conn, o.WriteTimeout)
		cc.maxPacket, cc.broken = maxPacket, broken
		if opened != nil {
			opened(cc)
		}
		return cc, nil
	}
}

func dial(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	dialer := o.Dialer
	if dialer == nil { // as paho does
		dialer = &net.Dialer{Timeout: 30 * time.Second}
	}
	var conn net.Conn
	var err error
	switch uri.Scheme {
	case "ws", "wss":
		dialURI := *uri // gorilla/websocket refuses URLs with user info
		dialURI.User = nil
		var tc *tls.Config
		if uri.Scheme == "wss" {
			tc = o.TLSConfig
		}
		conn, err = mqtt.NewWebsocket(dialURI.String(), tc, o.ConnectTimeout, o.HTTPHeaders, o.WebsocketOptions)
	case "tcp", "mqtt":
		conn, err = proxy.FromEnvironmentUsing(dialer).Dial("tcp", uri.Host)
	case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
		if os.Getenv("all_proxy") == "" {
			conn, err = tls.DialWithDialer(dialer, "tcp", uri.Host, o.TLSConfig)
			break
		}
		raw, perr := proxy.FromEnvironment().Dial("tcp", uri.Host)
		if perr != nil {
			return nil, perr
		}
		tc := tls.Client(raw, o.TLSConfig)
		if err = tc.Handshake(); err != nil {
			raw.Close()
			return nil, err
		}
		conn = tc
	default:
		return nil, fmt.Errorf("scheme %q is not supported", uri.Scheme)
	}
	return conn, err
}

const (
	// maxPending bounds the bytes a coalescingConn holds unwritten: a
	// Write beyond it waits for the connection.
	maxPending = 256 << 10
	// readBuffer is the read buffer of a coalescingConn: many
	// acknowledgements (4 bytes each) in one read.
	readBuffer = 16 << 10
	// flushOnClose bounds how long Close waits for the bytes still
	// pending (a DISCONNECT) to be written.
	flushOnClose = time.Second
	// defaultWriteTimeout bounds one write of pending bytes when the
	// options set no write timeout.
	defaultWriteTimeout = 30 * time.Second
)

// coalescingConn reads through a buffer and writes behind: Write appends to
// a pending buffer and returns, and one goroutine writes whatever has
// gathered in one system call, so that the packets paho writes while a
// write is under way go out together. An idle connection adds no delay: the
// writer starts at once.
//
// A Write returns the error of an earlier failed write; paho then closes
// the connection and resends, after reconnecting, what the broker has not
// acknowledged (QoS 1, 2), as it does after any broken connection. The
// write timeout applies to each write of gathered bytes; paho's own
// SetWriteDeadline, which bounds one packet, is ignored.
type Conn struct {
	net.Conn
	r       *bufio.Reader
	timeout time.Duration

	// paho allocates a packet's whole length as soon as it has read it
	// (a 256 MB PUBLISH: 256 MB), so Read looks at each packet's fixed
	// header before passing it on; 0 is no limit.
	maxPacket int
	left      int   // bytes of the current packet not yet read
	readErr   error // a packet over maxPacket: every later Read fails
	broken    func()

	mu      sync.Mutex
	room    sync.Cond // signalled when pending shrinks or err is set
	pending []byte
	spare   []byte
	err     error // of the last write, or net.ErrClosed after Close
	closing bool
	wake    chan struct{} // capacity 1: pending has bytes, or closing
	done    chan struct{} // closed when the writer returns

	// Fences (see fence): the PINGREQs written, oldest first, each with
	// its callback (nil for paho's own keep-alive pings), and whether the
	// broker has accepted the CONNECT.
	pings     []func()
	connacked bool
	aborted   error // set by abort: what reads fail with
}

func newCoalescingConn(c net.Conn, timeout time.Duration) *Conn {
	if timeout <= 0 {
		timeout = defaultWriteTimeout
	}
	cc := &Conn{
		Conn:    c,
		r:       bufio.NewReaderSize(c, readBuffer),
		timeout: timeout,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	cc.room.L = &cc.mu
	go cc.writer()
	return cc
}

// Read reads through the buffer, one packet at most, and fails on a packet
// over maxPacket before paho has seen its length.
func (c *Conn) Read(p []byte) (int, error) {
	if c.maxPacket > 0 {
		if c.left == 0 {
			if err := c.nextPacket(); err != nil {
				return 0, c.readFailed(err)
			}
		}
		p = p[:min(len(p), c.left)]
	}
	n, err := c.r.Read(p)
	c.left -= n
	if err != nil {
		err = c.readFailed(err)
	}
	return n, err
}

// ErrPacketTooLarge is the error of a connection whose broker sent a
// packet larger than mqtt.max_packet_size.
var ErrPacketTooLarge = errors.New("packet larger than mqtt.max_packet_size")

// nextPacket peeks at the fixed header of the next packet (a type byte and
// a remaining length of one to four bytes) and sets left to the packet's
// size, or fails if it is over maxPacket or malformed.
func (c *Conn) nextPacket() error {
	if c.readErr != nil {
		return c.readErr
	}
	remaining := 0
	for i := 1; ; i++ {
		b, err := c.r.Peek(i + 1)
		if err != nil {
			return err
		}
		remaining |= int(b[i]&0x7f) << (7 * (i - 1))
		if b[i]&0x80 == 0 {
			size := 1 + i + remaining
			if size > c.maxPacket {
				c.readErr = fmt.Errorf("broker sent a packet of %d bytes (type %d), over %d: %w", size, b[0]>>4, c.maxPacket, ErrPacketTooLarge)
				return c.readErr
			}
			c.left = size
			c.seen(b[0] >> 4)
			return nil
		}
		if i == 4 {
			c.readErr = errors.New("broker sent a malformed packet: remaining length longer than 4 bytes")
			return c.readErr
		}
	}
}

// readFailed reports a read that fails while Close runs as net.ErrClosed,
// as a plain connection would after Close: the broker may close its end
// once it has our DISCONNECT, before Close has flushed and closed ours, and
// paho logs an EOF it did not expect as an error.
func (c *Conn) readFailed(err error) error {
	if c.broken != nil {
		c.broken()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.aborted != nil:
		return c.aborted
	case c.closing:
		return net.ErrClosed
	}
	return err
}

// abort drops the connection under paho, which reads it as lost (with
// reason) and reconnects: paho takes a read error that says the
// connection is closed for its own Close, and does nothing.
func (c *Conn) Abort(reason error) {
	c.mu.Lock()
	c.aborted = reason
	c.mu.Unlock()
	c.Conn.Close()
}

func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	for c.err == nil && !c.closing && len(c.pending) > 0 && len(c.pending)+len(p) > maxPending {
		c.room.Wait()
	}
	switch {
	case c.err != nil:
		err := c.err
		c.mu.Unlock()
		return 0, err
	case c.closing:
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	c.pending = append(c.pending, p...)
	if len(p) == 2 && p[0] == pingreq<<4 && p[1] == 0 { // paho writes each packet in one Write
		c.pings = append(c.pings, nil)
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // the writer is already woken
	}
	return len(p), nil
}

// MQTT control packet types that fences follow.
const (
	connack  = 2
	pingreq  = 12
	pingresp = 13
)

// fence writes a PINGREQ after everything written so far and calls done
// (on paho's reading goroutine; it must not block) once the broker has
// answered it: a broker handles a connection's packets in order, so by
// then it has taken every PUBLISH written before, QoS 0 ones included.
// It returns false, and done is never called, if the connection is not
// established (no CONNACK yet) or is closed or broken.
func (c *Conn) Fence(done func()) bool {
	c.mu.Lock()
	if c.err != nil || c.closing || !c.connacked {
		c.mu.Unlock()
		return false
	}
	c.pending = append(c.pending, pingreq<<4, 0)
	c.pings = append(c.pings, done)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// seen notes a packet from the broker, by its type, as Read starts on it.
func (c *Conn) seen(typ byte) {
	switch typ {
	case connack:
		c.mu.Lock()
		c.connacked = true
		c.mu.Unlock()
	case pingresp:
		c.mu.Lock()
		var done func()
		if len(c.pings) > 0 {
			done = c.pings[0]
			c.pings = c.pings[1:]
		}
		c.mu.Unlock()
		if done != nil {
			done()
		}
	}
}

// writer writes the pending bytes, all that gathered, in one call each.
func (c *Conn) writer() {
	defer close(c.done)
	for range c.wake {
		for {
			c.mu.Lock()
			b := c.pending
			closing := c.closing
			if len(b) == 0 {
				c.mu.Unlock()
				if closing {
					return
				}
				break
			}
			// Two buffers take turns: Write fills one while this writes the other.
			c.pending, c.spare = c.spare[:0], nil
			c.mu.Unlock()
			err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
			if err == nil {
				_, err = c.Conn.Write(b)
			}
			c.mu.Lock()
			c.spare = b[:0]
			if err != nil && c.err == nil {
				c.err = err
			}
			c.room.Broadcast()
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

// SetWriteDeadline is a no-op: see coalescingConn.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets the read deadline only: see coalescingConn.
func (c *Conn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// Close writes what is pending, waiting at most flushOnClose, and closes
// the connection.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closing = true
	c.room.Broadcast()
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(flushOnClose)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
	}
	err := c.Conn.Close()
	<-c.done // the close ends a write still under way
	c.mu.Lock()
	if c.err == nil {
		c.err = net.ErrClosed
	}
	c.mu.Unlock()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
