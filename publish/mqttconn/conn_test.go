package mqttconn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the calls that reach the socket.
type countingConn struct {
	net.Conn
	reads, writes atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// loopbackPair returns the two ends of a TCP connection on 127.0.0.1.
func loopbackPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// Many small writes reach the peer complete and in order, in far fewer
// system calls, and Close writes what is still pending.
func TestCoalescingConnWrites(t *testing.T) {
	client, server := loopbackPair(t)
	raw := &countingConn{Conn: client}
	c := newCoalescingConn(raw, 5*time.Second)
	received := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(server)
		received <- b
	}()

	const packets = 10000
	var want bytes.Buffer
	for i := range packets {
		p := fmt.Appendf(nil, "packet %d;", i)
		want.Write(p)
		if n, err := c.Write(p); err != nil || n != len(p) {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	got := <-received
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("peer received %d bytes, want %d in order", len(got), want.Len())
	}
	// How many writes coalesce depends on scheduling; on a loaded 2-core
	// machine about one in five was seen, unloaded one in hundreds.
	if w := raw.writes.Load(); w > packets/2 {
		t.Errorf("%d write calls for %d packets: not coalesced", w, packets)
	}
	if _, err := c.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v, want net.ErrClosed", err)
	}
}

// Reads go through a buffer: 4-byte acknowledgements read byte by byte, as
// paho's packet reader does, take a few calls, not one per byte.
func TestCoalescingConnReads(t *testing.T) {
	client, server := loopbackPair(t)
	raw := &countingConn{Conn: client}
	c := newCoalescingConn(raw, 5*time.Second)
	defer c.Close()

	const acks = 1000
	var sent bytes.Buffer
	for i := range acks {
		sent.Write([]byte{0x40, 0x02, byte(i >> 8), byte(i)}) // PUBACK
	}
	go server.Write(sent.Bytes())
	got := make([]byte, sent.Len())
	for i := range got {
		if _, err := io.ReadFull(c, got[i:i+1]); err != nil {
			t.Fatalf("read byte %d: %v", i, err)
		}
	}
	if !bytes.Equal(got, sent.Bytes()) {
		t.Fatal("read bytes differ from those sent")
	}
	if r := raw.reads.Load(); r > acks/10 {
		t.Errorf("%d read calls for %d bytes: not buffered", r, len(got))
	}
}

// A peer that stops reading makes the pending writes time out; Write then
// reports the error instead of growing without bound.
func TestCoalescingConnWriteTimeout(t *testing.T) {
	client, _ := loopbackPair(t) // the server end never reads
	c := newCoalescingConn(client, 200*time.Millisecond)
	defer c.Close()
	p := make([]byte, 32<<10)
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = c.Write(p)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a peer that does not read: %v, want a deadline error", err)
	}
}

// A connection reset by the peer fails the following writes.
func TestCoalescingConnPeerGone(t *testing.T) {
	client, server := loopbackPair(t)
	c := newCoalescingConn(client, 5*time.Second)
	defer c.Close()
	server.(*net.TCPConn).SetLinger(0) // close with RST
	server.Close()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = c.Write([]byte("publish"))
	}
	if err == nil || errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after the peer reset: %v, want the connection's error", err)
	}
}

// A packet of maxPacket bytes is read whole; one byte more fails the
// connection at its fixed header, before any of it reaches the reader, and
// so does a remaining length of more than four bytes.
func TestCoalescingConnMaxPacket(t *testing.T) {
	publish := func(size int) []byte { // a PUBLISH of size bytes, QoS 0, topic "x"
		rem := size - 2
		if rem >= 128 {
			rem = size - 3
		}
		b := []byte{0x30}
		for v := rem; ; v >>= 7 {
			if v < 128 {
				b = append(b, byte(v))
				break
			}
			b = append(b, byte(v&0x7f|0x80))
		}
		b = append(b, 0, 1, 'x')
		return append(b, make([]byte, size-len(b))...)
	}
	for _, tc := range []struct {
		name    string
		packets [][]byte
		ok      int // packets read before the error
		err     error
	}{
		{"at the limit", [][]byte{{0x40, 0x02, 0, 1}, publish(1000)}, 2, nil},
		{"one byte over", [][]byte{{0x40, 0x02, 0, 1}, publish(1001)}, 1, ErrPacketTooLarge},
		{"256 MB", [][]byte{{0x30, 0xff, 0xff, 0xff, 0x7f}}, 0, ErrPacketTooLarge},
		{"five length bytes", [][]byte{{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}}, 0, errors.New("malformed")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := loopbackPair(t)
			c := newCoalescingConn(client, 5*time.Second)
			c.maxPacket = 1000
			defer c.Close()
			go func() {
				for _, p := range tc.packets {
					server.Write(p)
				}
			}()
			for i := range tc.ok {
				want := tc.packets[i]
				got := make([]byte, len(want))
				if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("packet %d: %v", i, err)
				}
			}
			if tc.err == nil {
				return
			}
			_, err := c.Read(make([]byte, 1))
			if err == nil || !errors.Is(err, tc.err) && !strings.Contains(err.Error(), tc.err.Error()) {
				t.Fatalf("read after %d packets: %v, want %v", tc.ok, err, tc.err)
			}
			if _, again := c.Read(make([]byte, 1)); again == nil {
				t.Fatal("a read after the error succeeded")
			}
		})
	}
}
