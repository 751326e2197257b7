package uatcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
	"unicode/utf8"
)

// MaxReverseHelloSize bounds a ReverseHello: two strings of at most 4096
// bytes (Part 6 7.1.2.6) and their lengths, after the header.
const MaxReverseHelloSize = HeaderSize + 2*(4+MaxEndpointURLLength)

// ReverseHello is what a server sends first on a connection it opened to
// the client (reverse connect, Part 6 7.1.2.6 and 7.1.3).
type ReverseHello struct {
	ServerURI   string // the server's ApplicationUri
	EndpointURL string // the endpoint the client should ask for
}

// ReadReverseHello reads the ReverseHello that starts a connection a
// server opened, by deadline. Anything else (an ERR, a message of another
// type, a size or string beyond Part 6's bounds) is an error; the caller
// closes the connection.
func ReadReverseHello(nc net.Conn, deadline time.Time) (ReverseHello, error) {
	if err := nc.SetReadDeadline(deadline); err != nil {
		return ReverseHello{}, err
	}
	defer nc.SetReadDeadline(time.Time{})
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(nc, hdr[:]); err != nil {
		return ReverseHello{}, fmt.Errorf("read reverse hello: %w", err)
	}
	if string(hdr[:4]) != "RHEF" {
		return ReverseHello{}, fmt.Errorf("read reverse hello: message %q, not RHEF", hdr[:4])
	}
	size := binary.LittleEndian.Uint32(hdr[4:])
	if size < HeaderSize+8 || size > MaxReverseHelloSize {
		return ReverseHello{}, fmt.Errorf("read reverse hello: size %d outside %d..%d", size, HeaderSize+8, MaxReverseHelloSize)
	}
	body := make([]byte, size-HeaderSize)
	if _, err := io.ReadFull(nc, body); err != nil {
		return ReverseHello{}, fmt.Errorf("read reverse hello: %w", err)
	}
	var rh ReverseHello
	var err error
	if rh.ServerURI, body, err = uaString(body); err != nil {
		return ReverseHello{}, fmt.Errorf("read reverse hello: server uri: %w", err)
	}
	if rh.EndpointURL, _, err = uaString(body); err != nil {
		return ReverseHello{}, fmt.Errorf("read reverse hello: endpoint url: %w", err)
	}
	return rh, nil
}

// uaString reads one UA String (Int32 length, UTF-8 bytes) of at most
// MaxEndpointURLLength bytes; null reads as "".
func uaString(b []byte) (string, []byte, error) {
	if len(b) < 4 {
		return "", nil, errors.New("truncated")
	}
	n := int32(binary.LittleEndian.Uint32(b))
	b = b[4:]
	if n <= 0 {
		return "", b, nil
	}
	if n > MaxEndpointURLLength || int(n) > len(b) {
		return "", nil, fmt.Errorf("length %d beyond %d bytes", n, min(len(b), MaxEndpointURLLength))
	}
	s := string(b[:n])
	if !utf8.ValidString(s) {
		return "", nil, errors.New("not UTF-8")
	}
	return s, b[n:], nil
}

// AppendReverseHello appends a ReverseHello message to b: the server side,
// for tests and tools.
func AppendReverseHello(b []byte, rh ReverseHello) []byte {
	start := len(b)
	b = append(b, "RHEF\x00\x00\x00\x00"...)
	for _, s := range []string{rh.ServerURI, rh.EndpointURL} {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	binary.LittleEndian.PutUint32(b[start+4:], uint32(len(b)-start))
	return b
}

// Handshake exchanges Hello and Acknowledge on a connection that is already
// open: one the server opened to us with a ReverseHello. It is bounded as
// Dial is; on failure the caller closes nc.
func Handshake(ctx context.Context, nc net.Conn, endpoint string, want Limits) (*Conn, error) {
	if err := checkLimits(want); err != nil {
		return nil, fmt.Errorf("hello %s: %w", endpoint, err)
	}
	if len(endpoint) > MaxEndpointURLLength {
		return nil, fmt.Errorf("hello: endpoint URL of %d bytes is longer than %d", len(endpoint), MaxEndpointURLLength)
	}
	ctx, cancel := withHandshakeTimeout(ctx)
	defer cancel()
	c, err := handshake(ctx, nc, endpoint, want)
	if err != nil {
		return nil, fmt.Errorf("hello %s: %w", endpoint, err)
	}
	return c, nil
}
