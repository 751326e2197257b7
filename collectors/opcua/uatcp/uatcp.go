// Package uatcp is the OPC UA TCP transport of Part 6, 7.1: a TCP connection
// opened with Hello/Acknowledge, over which whole message chunks are read and
// written within the negotiated buffer sizes. It knows nothing of what the
// chunks carry; an Error message from the server becomes a *ServerError.
package uatcp

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors/opcua/uastatus"
)

// HeaderSize is the size of the message header that starts every chunk:
// message type (3 bytes), chunk type (1 byte), message size (uint32).
const HeaderSize = 8

// MinBufferSize is the smallest buffer size Part 6 allows either side.
const MinBufferSize = 8192

// MaxEndpointURLLength and MaxReasonLength are Part 6's bounds on the
// endpoint URL of Hello and the reason of Error.
const (
	MaxEndpointURLLength = 4096
	MaxReasonLength      = 4096
)

// DefaultHandshakeTimeout bounds Dial when its context has no deadline: a
// server that accepts TCP but never answers Hello must not hang the caller.
const DefaultHandshakeTimeout = 10 * time.Second

// Limits are one side's buffer and message limits, as sent in Hello.
type Limits struct {
	ReceiveBufferSize uint32 // largest chunk we accept
	SendBufferSize    uint32 // largest chunk we send
	MaxMessageSize    uint32 // largest message we accept (sum of chunk bodies); 0 = no limit
	MaxChunkCount     uint32 // most chunks per message we accept; 0 = no limit
}

// DefaultLimits are 64 KiB chunks and 64 MiB messages, with a chunk count
// that allows such a message in such chunks.
func DefaultLimits() Limits {
	const chunk = 64 << 10
	const message = 64 << 20
	return Limits{
		ReceiveBufferSize: chunk,
		SendBufferSize:    chunk,
		MaxMessageSize:    message,
		MaxChunkCount:     message/(chunk-1024) + 1, // bodies are a little smaller than chunks
	}
}

// Negotiated are the limits in force after Acknowledge.
type Negotiated struct {
	// What we may send: chunks no larger than SendChunkSize (ours, lowered
	// to the server's receive buffer), messages of at most SendMessageSize
	// body bytes in at most SendChunkCount chunks (the server's; 0 = no
	// limit).
	SendChunkSize   uint32
	SendMessageSize uint32
	SendChunkCount  uint32
	// What we accept: chunks up to ReceiveChunkSize (our receive buffer),
	// messages up to ReceiveMessageSize bytes in ReceiveChunkCount chunks
	// (ours; 0 = no limit).
	ReceiveChunkSize   uint32
	ReceiveMessageSize uint32
	ReceiveChunkCount  uint32
	// ServerProtocolVersion is the version the server acknowledged.
	ServerProtocolVersion uint32
}

// ServerError is an Error message (ERR) from the server, or an abort chunk's
// status and reason.
type ServerError struct {
	Code   ua.StatusCode
	Reason string // as the server sent it, at most MaxReasonLength bytes of valid UTF-8
}

func (e *ServerError) Error() string {
	msg := fmt.Sprintf("server error %s (0x%08X)", uastatus.Name(e.Code), uint32(e.Code))
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Unwrap returns the status code, so errors.As finds a ua.StatusCode.
func (e *ServerError) Unwrap() error { return e.Code }

// Conn is an open UA-TCP connection. ReadChunk must be called from one
// goroutine at a time, and so must WriteChunk; the two may run concurrently.
type Conn struct {
	nc  net.Conn
	r   *bufio.Reader
	lim Negotiated
}

// Dial connects to endpoint (opc.tcp://host[:port][/path]; port 4840 by
// default) and exchanges Hello and Acknowledge with want as our limits. The
// whole of it is bounded by ctx, and by DefaultHandshakeTimeout when ctx has
// no deadline. An Error message from the server is returned as a
// *ServerError.
func Dial(ctx context.Context, endpoint string, want Limits) (*Conn, error) {
	if err := checkLimits(want); err != nil {
		return nil, fmt.Errorf("connect %s: %w", endpoint, err)
	}
	if len(endpoint) > MaxEndpointURLLength {
		return nil, fmt.Errorf("connect: endpoint URL of %d bytes is longer than %d", len(endpoint), MaxEndpointURLLength)
	}
	addr, err := hostPort(endpoint)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", endpoint, err)
	}
	ctx, cancel := withHandshakeTimeout(ctx)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", endpoint, err)
	}
	c, err := handshake(ctx, nc, endpoint, want)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("hello %s: %w", endpoint, err)
	}
	return c, nil
}

// withHandshakeTimeout bounds ctx by DefaultHandshakeTimeout when it has no
// deadline of its own.
func withHandshakeTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, DefaultHandshakeTimeout)
}

func checkLimits(l Limits) error {
	if l.ReceiveBufferSize < MinBufferSize || l.SendBufferSize < MinBufferSize {
		return fmt.Errorf("buffer sizes %d (receive) and %d (send) must be at least %d", l.ReceiveBufferSize, l.SendBufferSize, MinBufferSize)
	}
	return nil
}

// hostPort returns the TCP address of an opc.tcp URL.
func hostPort(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("endpoint URL: %w", err)
	}
	if u.Scheme != "opc.tcp" {
		return "", fmt.Errorf("endpoint URL scheme %q is not opc.tcp", u.Scheme)
	}
	if u.Hostname() == "" {
		return "", errors.New("endpoint URL has no host")
	}
	port := u.Port()
	if port == "" {
		port = "4840"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// handshake sends Hello on nc and reads the server's Acknowledge, within
// ctx's deadline.
func handshake(ctx context.Context, nc net.Conn, endpoint string, want Limits) (*Conn, error) {
	c := &Conn{nc: nc, r: bufio.NewReaderSize(nc, 16<<10)}
	deadline, _ := ctx.Deadline()
	if err := nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	// Cancellation of ctx interrupts the blocked read or write.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	hello := make([]byte, HeaderSize, HeaderSize+24+len(endpoint))
	copy(hello, "HELF")
	hello = binary.LittleEndian.AppendUint32(hello, 0) // protocol version
	hello = binary.LittleEndian.AppendUint32(hello, want.ReceiveBufferSize)
	hello = binary.LittleEndian.AppendUint32(hello, want.SendBufferSize)
	hello = binary.LittleEndian.AppendUint32(hello, want.MaxMessageSize)
	hello = binary.LittleEndian.AppendUint32(hello, want.MaxChunkCount)
	hello = binary.LittleEndian.AppendUint32(hello, uint32(len(endpoint)))
	hello = append(hello, endpoint...)
	binary.LittleEndian.PutUint32(hello[4:8], uint32(len(hello)))
	if _, err := nc.Write(hello); err != nil {
		return nil, ctxErr(ctx, err)
	}

	// The answer is small; a server's ERR carries at most a 4 KiB reason.
	chunk, err := readChunk(c.r, MinBufferSize)
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	if string(chunk[:3]) != "ACK" {
		return nil, fmt.Errorf("server answered with %q, not ACK", chunk[:3])
	}
	if c.lim, err = parseAck(chunk[HeaderSize:], want); err != nil {
		return nil, err
	}
	if !stop() {
		return nil, ctx.Err() // the deadline is in the past now
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return c, nil
}

// ctxErr names the context's end as the cause of the deadline error it
// caused: the connection's deadline is ctx's, and may pass a moment before
// ctx's own timer fires.
func ctxErr(ctx context.Context, err error) error {
	var se *ServerError
	switch {
	case errors.As(err, &se):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	}
	return err
}

func parseAck(b []byte, want Limits) (Negotiated, error) {
	if len(b) < 20 {
		return Negotiated{}, fmt.Errorf("ACK of %d bytes, want 20", len(b))
	}
	u := func(i int) uint32 { return binary.LittleEndian.Uint32(b[4*i:]) }
	version, recv, send, maxMsg, maxChunks := u(0), u(1), u(2), u(3), u(4)
	if recv < MinBufferSize || send < MinBufferSize {
		return Negotiated{}, fmt.Errorf("ACK with buffer sizes %d (receive) and %d (send): Part 6 requires at least %d", recv, send, MinBufferSize)
	}
	return Negotiated{
		SendChunkSize:         min(want.SendBufferSize, recv),
		SendMessageSize:       maxMsg,
		SendChunkCount:        maxChunks,
		ReceiveChunkSize:      want.ReceiveBufferSize,
		ReceiveMessageSize:    want.MaxMessageSize,
		ReceiveChunkCount:     want.MaxChunkCount,
		ServerProtocolVersion: version,
	}, nil
}

// Limits returns the limits negotiated by Hello and Acknowledge.
func (c *Conn) Limits() Negotiated { return c.lim }

// ReadChunk reads one whole chunk, its 8-byte header included. A chunk larger
// than our receive buffer is refused from its header, before anything is
// allocated; an ERR chunk is returned as a *ServerError.
func (c *Conn) ReadChunk() ([]byte, error) {
	return readChunk(c.r, c.lim.ReceiveChunkSize)
}

// readChunk reads one chunk of at most limit bytes from r.
func readChunk(r io.Reader, limit uint32) ([]byte, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read chunk header: %w", err)
	}
	typ := string(hdr[:3])
	switch typ {
	case "MSG", "OPN", "CLO", "ACK", "ERR":
	default:
		return nil, fmt.Errorf("read chunk: unknown message type %q", hdr[:3])
	}
	size := binary.LittleEndian.Uint32(hdr[4:])
	if size < HeaderSize {
		return nil, fmt.Errorf("read %s chunk: size %d is smaller than its header", typ, size)
	}
	if size > limit {
		return nil, fmt.Errorf("read %s chunk: size %d exceeds our receive buffer of %d bytes", typ, size, limit)
	}
	chunk := make([]byte, size)
	copy(chunk, hdr[:])
	if _, err := io.ReadFull(r, chunk[HeaderSize:]); err != nil {
		return nil, fmt.Errorf("read %s chunk of %d bytes: %w", typ, size, err)
	}
	if typ == "ERR" {
		return nil, parseError(chunk[HeaderSize:])
	}
	return chunk, nil
}

// parseError reads an ERR body: status code and reason. A malformed reason
// still gives the code: what the server meant matters more than its form.
func parseError(b []byte) *ServerError {
	if len(b) < 4 {
		return &ServerError{Code: ua.StatusBadTCPInternalError, Reason: "malformed ERR message from the server"}
	}
	e := &ServerError{Code: ua.StatusCode(binary.LittleEndian.Uint32(b))}
	b = b[4:]
	if len(b) < 4 {
		return e
	}
	n := int32(binary.LittleEndian.Uint32(b))
	b = b[4:]
	if n <= 0 {
		return e
	}
	e.Reason = sanitizeReason(b[:min(int(n), len(b))])
	return e
}

// sanitizeReason bounds a server's reason and keeps it printable in logs.
func sanitizeReason(b []byte) string {
	if len(b) > MaxReasonLength {
		b = b[:MaxReasonLength]
	}
	s := strings.ToValidUTF8(string(b), string(utf8.RuneError))
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	for len(s) > MaxReasonLength { // replacement characters are longer than the bytes they replace
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// ParseAbort reads the body of an abort chunk ('A'): a status code and a
// reason, as in ERR.
func ParseAbort(b []byte) *ServerError { return parseError(b) }

// WriteChunk writes one whole chunk, which must fit the server's receive
// buffer.
func (c *Conn) WriteChunk(b []byte) error {
	if len(b) < HeaderSize {
		return fmt.Errorf("write chunk: %d bytes is less than a header", len(b))
	}
	if uint32(len(b)) > c.lim.SendChunkSize {
		return fmt.Errorf("write %s chunk: %d bytes exceeds the server's receive buffer of %d bytes", b[:3], len(b), c.lim.SendChunkSize)
	}
	if _, err := c.nc.Write(b); err != nil {
		return fmt.Errorf("write %s chunk: %w", b[:3], err)
	}
	return nil
}

// SetDeadline sets the read and write deadline of the connection.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// Close closes the TCP connection; a blocked ReadChunk returns.
func (c *Conn) Close() error { return c.nc.Close() }

// LocalAddr and RemoteAddr are the connection's addresses, for logs.
func (c *Conn) LocalAddr() net.Addr  { return c.nc.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }
