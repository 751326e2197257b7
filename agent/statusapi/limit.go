package statusapi

import (
	"net"
	"sync"
	"sync/atomic"
)

// limitListener caps the connections open at once. A connection beyond the
// cap is closed as soon as it is accepted, rather than left in the kernel's
// queue: local users without a token must not be able to exhaust the
// agent's file descriptors and memory, and a refused client learns at once.
type limitListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	peak    atomic.Int64 // the most open at once, for tests
	refused atomic.Uint64
	// full is set at the first refusal and cleared once half the slots are
	// free again: onFull runs once per episode, not once per connection.
	full   atomic.Bool
	onFull func()
}

func newLimitListener(ln net.Listener, max int, onFull func()) *limitListener {
	return &limitListener{Listener: ln, max: int64(max), onFull: onFull}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		n := l.open.Add(1)
		if n > l.max {
			l.open.Add(-1)
			l.refused.Add(1)
			c.Close()
			if l.full.CompareAndSwap(false, true) {
				l.onFull()
			}
			continue
		}
		for {
			p := l.peak.Load()
			if n <= p || l.peak.CompareAndSwap(p, n) {
				break
			}
		}
		return &limitConn{Conn: c, release: l.release}, nil
	}
}

func (l *limitListener) release() {
	if l.open.Add(-1) <= l.max/2 {
		l.full.Store(false)
	}
}

// limitConn gives its slot back once, however often it is closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
