package opcua

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors/opcua/uatcp"
)

// Reverse connect (Part 6 7.1.3): plants that forbid connections into the
// control network let the PLC dial out. The agent listens; the PLC opens a
// connection and sends ReverseHello with its ApplicationUri; the agent
// checks that against the PLC entry and then runs over that connection
// exactly what it runs over one it opened: Hello, secure channel, session,
// recovery, trust checks. Each new channel needs a new connection from the
// PLC, which servers open again after a channel ends.

// reverseHelloTimeout bounds the wait for a ReverseHello on an accepted
// connection.
const reverseHelloTimeout = 10 * time.Second

// reverseListener accepts PLC connections on one address and hands each to
// the session waiting for the ServerUri its ReverseHello names. Sessions
// of several PLC entries may share one listener.
type reverseListener struct {
	addr string
	ln   net.Listener
	log  zerolog.Logger

	mu      sync.Mutex
	refs    int
	waiting map[string]chan net.Conn // by ServerUri: the newest connection not yet taken
	unknown map[string]bool          // ServerUris already logged as unknown
}

// reverseListeners are the listeners in use, by address: a process can
// listen on an address once, and sessions come and go (reload).
var reverseListeners = struct {
	sync.Mutex
	m map[string]*reverseListener
}{m: map[string]*reverseListener{}}

// listenReverse returns the listener on addr for serverURI, opening it for
// the first user. Each call is paired with release.
func listenReverse(addr, serverURI string, log zerolog.Logger) (*reverseListener, error) {
	reverseListeners.Lock()
	defer reverseListeners.Unlock()
	l := reverseListeners.m[addr]
	if l == nil {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("reverse connect: listen on %s: %w", addr, err)
		}
		l = &reverseListener{addr: addr, ln: ln, log: log.With().Str("listen", ln.Addr().String()).Logger(),
			waiting: map[string]chan net.Conn{}, unknown: map[string]bool{}}
		reverseListeners.m[addr] = l
		go l.accept()
		l.log.Info().Msg("reverse connect: listening for PLCs")
	}
	l.mu.Lock()
	l.refs++
	if l.waiting[serverURI] == nil {
		l.waiting[serverURI] = make(chan net.Conn, 1)
	}
	l.mu.Unlock()
	return l, nil
}

// release gives up one use of the listener; the last closes it.
func (l *reverseListener) release() {
	reverseListeners.Lock()
	defer reverseListeners.Unlock()
	l.mu.Lock()
	l.refs--
	last := l.refs == 0
	l.mu.Unlock()
	if !last {
		return
	}
	delete(reverseListeners.m, l.addr)
	l.ln.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ch := range l.waiting {
		select {
		case nc := <-ch:
			nc.Close()
		default:
		}
	}
}

// accept takes connections until the listener closes.
func (l *reverseListener) accept() {
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				l.log.Warn().Err(err).Msg("reverse connect: accept")
			}
			return
		}
		go l.hello(nc)
	}
}

// hello reads the ReverseHello of a new connection and parks it for the
// session of its ServerUri, replacing an older one not yet taken (the PLC
// may have given that up already).
func (l *reverseListener) hello(nc net.Conn) {
	rh, err := uatcp.ReadReverseHello(nc, time.Now().Add(reverseHelloTimeout))
	if err != nil {
		l.log.Debug().Err(err).Str("remote", nc.RemoteAddr().String()).Msg("reverse connect: no ReverseHello; closed")
		nc.Close()
		return
	}
	l.mu.Lock()
	ch := l.waiting[rh.ServerURI]
	if ch == nil {
		warn := !l.unknown[rh.ServerURI]
		l.unknown[rh.ServerURI] = true
		l.mu.Unlock()
		ev := l.log.Debug()
		if warn {
			ev = l.log.Warn()
		}
		ev.Str("server_uri", rh.ServerURI).Str("remote", nc.RemoteAddr().String()).
			Msg("reverse connect: ReverseHello from a server no PLC entry names in reverse.server_uri; closed")
		nc.Close()
		return
	}
	defer l.mu.Unlock()
	select {
	case old := <-ch:
		old.Close()
	default:
	}
	ch <- nc
	l.log.Debug().Str("server_uri", rh.ServerURI).Str("endpoint_url", rh.EndpointURL).Str("remote", nc.RemoteAddr().String()).
		Msg("reverse connect: PLC connected")
}

// take waits for a connection from the PLC of serverURI.
func (l *reverseListener) take(ctx context.Context, serverURI string) (net.Conn, error) {
	l.mu.Lock()
	ch := l.waiting[serverURI]
	l.mu.Unlock()
	select {
	case nc := <-ch:
		return nc, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("reverse connect: no connection from %q on %s: %w", serverURI, l.ln.Addr(), ctx.Err())
	}
}

// dialer opens connections for the secure channel layer: over the
// listener with reverse connect, else uatcp.Dial.
func (s *Session) dialer() func(context.Context, string, uatcp.Limits) (*uatcp.Conn, error) {
	l := s.reverse
	if l == nil {
		return nil
	}
	uri := s.plc.Reverse.ServerURI
	return func(ctx context.Context, endpoint string, want uatcp.Limits) (*uatcp.Conn, error) {
		nc, err := l.take(ctx, uri)
		if err != nil {
			return nil, err
		}
		c, err := uatcp.Handshake(ctx, nc, endpoint, want)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("reverse connect from %s: %w", nc.RemoteAddr(), err)
		}
		return c, nil
	}
}

// listen opens (or joins) the reverse connect listener of the PLC entry,
// once per Run; unlisten releases it.
func (s *Session) listen() error {
	r := s.plc.Reverse
	if r == nil || s.reverse != nil {
		return nil
	}
	l, err := listenReverse(r.Listen, r.ServerURI, s.log)
	if err != nil {
		return err
	}
	s.reverse = l
	return nil
}

func (s *Session) unlisten() {
	if s.reverse != nil {
		s.reverse.release()
		s.reverse = nil
	}
}
