// Package faultproxy is a TCP proxy for tests that injects network faults
// between a client and a server: it can freeze a connection (neither side
// notices anything but silence), cut it abruptly, or refuse new ones.
//
//	p := faultproxy.Start(t, "127.0.0.1:4840")
//	// point the client at p.Addr() ...
//	p.Freeze()   // no bytes move either way; both TCP connections stay open
//	p.Thaw()
//	p.Cut()      // reset every open connection; new ones are accepted
//	p.Refuse(true)
package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy forwards every connection accepted on Addr to its target.
type Proxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	gate     chan struct{} // closed while forwarding; open (blocking) while frozen
	refuse   bool
	conns    map[*link]struct{}
	accepted int
	closed   bool

	wg sync.WaitGroup
}

// link is one proxied connection: the client's and the target's side.
type link struct {
	client net.Conn
	done   chan struct{} // closed when the link is torn down
	once   sync.Once

	mu     sync.Mutex
	server net.Conn // nil until the target answered
}

// Start listens on 127.0.0.1:0 and forwards to target (host:port) until the
// test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := Listen("127.0.0.1:0", target)
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// Listen starts a proxy on addr that forwards to target. Close stops it.
func Listen(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	open := make(chan struct{})
	close(open)
	p := &Proxy{ln: ln, target: target, gate: open, conns: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listening address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Freeze stops forwarding bytes in both directions, on open connections and
// on those accepted later, until Thaw. The connections stay open, so each
// side sees only silence; what they send waits in the proxy and the kernel's
// buffers. Bytes sent after Freeze returns are not forwarded before Thaw.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default: // already frozen
	}
}

// Thaw resumes forwarding, the held bytes first.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

// Cut resets every open connection on both sides (TCP RST, as a dropped
// route followed by a reboot would look), frozen ones included. New
// connections are still accepted.
func (p *Proxy) Cut() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.reset()
	}
}

// Refuse makes the proxy reset new connections as soon as they are accepted
// (true), or forward them again (false). Open connections are not touched.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = on
}

// Accepted is the number of connections accepted so far, refused ones
// included: a client that reconnected shows as a higher count.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Open is the number of connections currently forwarded.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, resets every connection and waits for the proxy's
// goroutines to end.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		p.mu.Lock()
		p.accepted++
		if p.refuse || p.closed {
			p.mu.Unlock()
			resetConn(c)
			continue
		}
		// Registered before the target answers, so that a Cut right after
		// the client connected reaches this connection too.
		l := &link{client: c, done: make(chan struct{})}
		p.conns[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, l)
		p.mu.Unlock()
	}()
	client := l.client
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		l.reset() // the client sees what it would see without the proxy
		return
	}
	l.mu.Lock()
	select {
	case <-l.done: // cut while dialling
		l.mu.Unlock()
		resetConn(server)
		return
	default:
		l.server = server
	}
	l.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(l, server, client) }()
	go func() { defer wg.Done(); p.pipe(l, client, server) }()
	wg.Wait()
	l.once.Do(func() { // both sides closed in order: close ours in order too
		close(l.done)
		client.Close()
		server.Close()
	})
}

// pipe copies src to dst, holding each chunk while the proxy is frozen. An
// orderly close is passed on as such, so only Cut and Close produce resets.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.gate
			p.mu.Unlock()
			select {
			case <-gate:
			case <-l.done:
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				l.reset()
				return
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				// Half close: the other direction may still carry data.
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
					return
				}
			}
			l.reset()
			return
		}
	}
}

// reset closes both sides with an RST.
func (l *link) reset() {
	l.once.Do(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		close(l.done)
		resetConn(l.client)
		if l.server != nil {
			resetConn(l.server)
		}
	})
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0) // close sends RST instead of FIN
	}
	c.Close()
}
