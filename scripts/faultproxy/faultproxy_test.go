package faultproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// server is a target that hands over each connection it accepts.
func server(t *testing.T) (addr string, conns <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			ch <- c
		}
	}()
	return ln.Addr().String(), ch
}

// connect dials the proxy and returns both ends of the proxied connection.
func connect(t *testing.T, p *Proxy, conns <-chan net.Conn) (client, srv net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	select {
	case s := <-conns:
		return c, s
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy did not connect to the target")
		return nil, nil
	}
}

func send(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

func expect(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %q: %v (got %q)", want, err, buf)
	}
	if string(buf) != want {
		t.Fatalf("read %q, want %q", buf, want)
	}
}

// expectSilence asserts that nothing arrives on c for d and that c is still
// open: no data, no EOF, no reset.
func expectSilence(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read during silence: %q, %v; want a timeout", buf[:n], err)
	}
}

// expectReset asserts that c was torn down.
func expectReset(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after cut: %v; want the connection closed", err)
	}
}

// dialExpectReset connects to p and asserts the connection is reset: the
// reset may arrive before the dial returns or at the first read.
func dialExpectReset(t *testing.T, p *Proxy) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		return
	}
	defer c.Close()
	expectReset(t, c)
}

func TestForwardsBothWays(t *testing.T) {
	addr, conns := server(t)
	p := Start(t, addr)
	c, s := connect(t, p, conns)
	send(t, c, "ping")
	expect(t, s, "ping")
	send(t, s, "pong")
	expect(t, c, "pong")
	if p.Accepted() != 1 || p.Open() != 1 {
		t.Errorf("Accepted %d, Open %d; want 1, 1", p.Accepted(), p.Open())
	}
}

func TestFreezeHoldsBytesAndKeepsConnectionsOpen(t *testing.T) {
	addr, conns := server(t)
	p := Start(t, addr)
	c, s := connect(t, p, conns)
	send(t, c, "a")
	expect(t, s, "a")

	p.Freeze()
	send(t, c, "to-server")
	send(t, s, "to-client")
	expectSilence(t, s, 300*time.Millisecond)
	expectSilence(t, c, 300*time.Millisecond)

	// A connection made while frozen is held too.
	c2, s2 := connect(t, p, conns)
	send(t, c2, "second")
	expectSilence(t, s2, 200*time.Millisecond)

	p.Thaw()
	expect(t, s, "to-server")
	expect(t, c, "to-client")
	expect(t, s2, "second")
	send(t, c, "after")
	expect(t, s, "after")
	if n := p.Accepted(); n != 2 {
		t.Errorf("Accepted %d, want 2", n)
	}
}

func TestCutResetsBothSidesAndAcceptsNewConnections(t *testing.T) {
	addr, conns := server(t)
	p := Start(t, addr)
	c, s := connect(t, p, conns)
	send(t, c, "x")
	expect(t, s, "x")

	p.Cut()
	expectReset(t, c)
	expectReset(t, s)

	c2, s2 := connect(t, p, conns)
	send(t, c2, "again")
	expect(t, s2, "again")
}

func TestCutWhileFrozen(t *testing.T) {
	addr, conns := server(t)
	p := Start(t, addr)
	c, s := connect(t, p, conns)
	p.Freeze()
	send(t, c, "held")
	p.Cut()
	expectReset(t, c)
	expectReset(t, s)
	// Still frozen for new connections until Thaw.
	p.Thaw()
	c2, s2 := connect(t, p, conns)
	send(t, c2, "y")
	expect(t, s2, "y")
}

func TestRefuse(t *testing.T) {
	addr, conns := server(t)
	p := Start(t, addr)
	c, s := connect(t, p, conns)

	p.Refuse(true)
	dialExpectReset(t, p)
	select {
	case <-conns:
		t.Error("a refused connection reached the target")
	default:
	}
	// The connection opened before is not touched.
	send(t, c, "still")
	expect(t, s, "still")

	p.Refuse(false)
	c2, s2 := connect(t, p, conns)
	send(t, c2, "ok")
	expect(t, s2, "ok")
	if n := p.Accepted(); n != 3 {
		t.Errorf("Accepted %d, want 3", n)
	}
}

func TestTargetDownResetsClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := Start(t, addr)
	dialExpectReset(t, p)
}

func TestHalfCloseIsPassedOn(t *testing.T) {
	addr, conns := server(t)
	p := Start(t, addr)
	c, s := connect(t, p, conns)
	send(t, c, "request")
	c.(*net.TCPConn).CloseWrite()
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "request" {
		t.Fatalf("server read %q, %v; want %q then EOF", got, err, "request")
	}
	send(t, s, "reply")
	s.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err = io.ReadAll(c)
	if err != nil || string(got) != "reply" {
		t.Fatalf("client read %q, %v; want %q then EOF", got, err, "reply")
	}
	// The finished link is forgotten.
	deadline := time.Now().Add(5 * time.Second)
	for p.Open() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d links open after both sides closed", p.Open())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCloseStopsListening(t *testing.T) {
	addr, conns := server(t)
	p, err := Listen("127.0.0.1:0", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, s := connect(t, p, conns)
	p.Close()
	expectReset(t, c)
	expectReset(t, s)
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		c.Close()
		t.Error("the proxy still accepts connections after Close")
	}
}
