package testkit

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Hostile is an MQTT broker of our own that misbehaves on purpose: it
// speaks just enough MQTT 3.1.1 (CONNECT, CONNACK) for a client to connect,
// then does what its mode says.
type HostileBroker struct {
	l     net.Listener
	mode  HostileMode
	conns atomic.Int64 // connections accepted
	sent  atomic.Int64 // bytes of the hostile packets written, all connections
	// closed receives a value each time a client closes a connection while
	// the broker was still writing to it.
	closed chan struct{}
}

// HostileMode is what a Hostile broker does once a client is connected.
type HostileMode int

const (
	// HugePublish sends a PUBLISH whose remaining length says 256 MB and
	// streams its body, as fast as the client reads, until the client
	// closes the connection or all of it is sent.
	HugePublish HostileMode = iota + 1
)

// HugeSize is the remaining length of HugePublish's packet: 256 MB, the
// largest MQTT allows.
const HugeSize = 268435455

// StartHostile listens on a free loopback port until the test ends.
func StartHostileBroker(t testing.TB, mode HostileMode) *HostileBroker {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("broker: hostile broker: %v", err)
	}
	h := &HostileBroker{l: l, mode: mode, closed: make(chan struct{}, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			h.conns.Add(1)
			go h.serve(c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return h
}

// URL is the broker's address, "tcp://127.0.0.1:PORT".
func (h *HostileBroker) URL() string {
	return "tcp://127.0.0.1:" + strconv.Itoa(h.l.Addr().(*net.TCPAddr).Port)
}

// Conns returns the number of connections accepted so far.
func (h *HostileBroker) Conns() int64 { return h.conns.Load() }

// Sent returns the bytes of hostile packets written so far.
func (h *HostileBroker) Sent() int64 { return h.sent.Load() }

// Closed receives a value each time a client hangs up on a hostile packet.
func (h *HostileBroker) Closed() <-chan struct{} { return h.closed }

func (h *HostileBroker) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if err := readConnect(c); err != nil {
		return
	}
	if _, err := c.Write([]byte{0x20, 0x02, 0x00, 0x00}); err != nil { // CONNACK, accepted
		return
	}
	go func() { _, _ = io.Copy(io.Discard, c) }() // SUBSCRIBE, PINGREQ: not answered
	switch h.mode {
	case HugePublish:
		hdr := []byte{0x30, 0xff, 0xff, 0xff, 0x7f} // PUBLISH QoS 0, remaining length 268435455
		body := make([]byte, 64<<10)
		copy(body, []byte{0x00, 0x01, 'x'}) // topic "x", then the payload
		if _, err := c.Write(hdr); err != nil {
			h.hungUp()
			return
		}
		h.sent.Add(int64(len(hdr)))
		for left := HugeSize; left > 0; {
			n, err := c.Write(body[:min(left, len(body))])
			h.sent.Add(int64(n))
			if err != nil {
				h.hungUp()
				return
			}
			left -= n
			clear(body[:3])
		}
	}
}

func (h *HostileBroker) hungUp() {
	select {
	case h.closed <- struct{}{}:
	default:
	}
}

// readConnect reads one packet and checks that it is a CONNECT.
func readConnect(c net.Conn) error {
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return err
	}
	if b[0]>>4 != 1 {
		return errors.New("first packet is not CONNECT")
	}
	n, shift := 0, 0
	for i := 0; ; i++ {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return err
		}
		n |= int(b[0]&0x7f) << shift
		shift += 7
		if b[0]&0x80 == 0 {
			break
		}
		if i == 3 {
			return errors.New("malformed remaining length")
		}
	}
	_, err := io.CopyN(io.Discard, c, int64(n))
	return err
}
