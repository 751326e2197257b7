package uatcp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
	"github.com/tagbridge/tagbridge/scripts/open62541/o62proc"
)

// TestDialPeers opens a UA-TCP connection to both real servers and checks
// the negotiated limits against what we asked for.
func TestDialPeers(t *testing.T) {
	peer := peerproc.Start(t, peerproc.Options{Policies: []string{"None"}, Modes: []string{"None"}})
	o62 := o62proc.Start(t, o62proc.Options{Policies: []string{"None"}})
	want := Limits{ReceiveBufferSize: 32 << 10, SendBufferSize: 1 << 20, MaxMessageSize: 4 << 20, MaxChunkCount: 200}
	for name, endpoint := range map[string]string{"node-opcua": peer.Endpoint, "open62541": o62.Endpoint} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, endpoint, want)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := c.Limits()
			t.Logf("%s: %+v", name, got)
			// We offered to send 1 MiB chunks; both servers receive less,
			// and we must come down to their buffer.
			if got.SendChunkSize < MinBufferSize || got.SendChunkSize >= want.SendBufferSize {
				t.Errorf("send chunk size %d: want the server's receive buffer, in [%d, %d)", got.SendChunkSize, MinBufferSize, want.SendBufferSize)
			}
			if got.ReceiveChunkSize != want.ReceiveBufferSize || got.ReceiveMessageSize != want.MaxMessageSize || got.ReceiveChunkCount != want.MaxChunkCount {
				t.Errorf("receive limits %+v: want ours %+v", got, want)
			}
			if got.ServerProtocolVersion != 0 {
				t.Errorf("server protocol version %d, want 0", got.ServerProtocolVersion)
			}
		})
	}
}

// TestDialSilentServer: a server that accepts TCP and never answers Hello
// cannot hang Dial past its context's deadline (issue 20, finding 2).
func TestDialSilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			go io.Copy(io.Discard, c)
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Dial(ctx, "opc.tcp://"+ln.Addr().String(), DefaultLimits())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial: %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Dial returned after %s, want about 300ms", took)
	}
	if !strings.HasPrefix(err.Error(), "hello opc.tcp://") {
		t.Errorf("error %q does not name the step", err)
	}
}

// TestHandshakeDefaultTimeout: without a deadline in ctx, the handshake
// gives up after DefaultHandshakeTimeout.
func TestHandshakeDefaultTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		defer server.Close()
		go io.Copy(io.Discard, server) // reads Hello, never answers
		start := time.Now()
		ctx, cancel := withHandshakeTimeout(context.Background())
		defer cancel()
		_, err := handshake(ctx, client, "opc.tcp://silent:4840", DefaultLimits())
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("handshake: %v, want context.DeadlineExceeded", err)
		}
		if took := time.Since(start); took != DefaultHandshakeTimeout {
			t.Errorf("gave up after %s, want %s", took, DefaultHandshakeTimeout)
		}
	})
}

// TestDialServerError: an ERR answer to Hello is a *ServerError naming the
// status, and the connection's close right after it does not hide it.
func TestDialServerError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		readChunk(c, MinBufferSize) // Hello
		c.Write(errChunk(ua.StatusBadTCPEndpointURLInvalid, "no such endpoint\n"))
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = Dial(ctx, "opc.tcp://"+ln.Addr().String()+"/nothing", DefaultLimits())
	var se *ServerError
	if !errors.As(err, &se) {
		t.Fatalf("Dial: %v, want a *ServerError", err)
	}
	var code ua.StatusCode
	if !errors.As(err, &code) || code != ua.StatusBadTCPEndpointURLInvalid {
		t.Errorf("status code %v, want BadTcpEndpointUrlInvalid", code)
	}
	want := "server error BadTcpEndpointUrlInvalid (0x80830000): no such endpoint "
	if !strings.HasSuffix(err.Error(), want) || !strings.HasPrefix(err.Error(), "hello opc.tcp://") {
		t.Errorf("error %q, want hello ...: %q", err, want)
	}
}

func errChunk(code ua.StatusCode, reason string) []byte {
	b := []byte("ERRF\x00\x00\x00\x00")
	b = binary.LittleEndian.AppendUint32(b, uint32(code))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(reason)))
	b = append(b, reason...)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	return b
}

func TestReadChunk(t *testing.T) {
	header := func(typ string, size uint32) []byte {
		return binary.LittleEndian.AppendUint32([]byte(typ), size)
	}
	tests := []struct {
		name    string
		in      []byte
		limit   uint32
		want    []byte
		wantErr string
	}{
		{"whole chunk", append(header("MSGF", 12), 1, 2, 3, 4), 8192, append(header("MSGF", 12), 1, 2, 3, 4), ""},
		{"larger than our buffer", header("MSGF", 1<<30), 65536, nil, "read MSG chunk: size 1073741824 exceeds our receive buffer of 65536 bytes"},
		{"smaller than its header", header("OPNF", 7), 8192, nil, "read OPN chunk: size 7 is smaller than its header"},
		{"unknown type", header("XYZF", 8), 8192, nil, `read chunk: unknown message type "XYZ"`},
		{"truncated body", append(header("MSGC", 100), 1), 8192, nil, "read MSG chunk of 100 bytes: unexpected EOF"},
		{"truncated header", []byte("MSG"), 8192, nil, "read chunk header: unexpected EOF"},
		{"ERR", errChunk(ua.StatusBadSecurityChecksFailed, "untrusted"), 8192, nil, "server error BadSecurityChecksFailed (0x80130000): untrusted"},
		{"ERR with control characters and bad UTF-8", errChunk(ua.StatusBadTCPInternalError, "a\x1b[31m\xff"), 8192, nil, "server error BadTcpInternalError (0x80820000): a [31m\uFFFD"},
		{"ERR with a reason longer than its chunk", func() []byte {
			b := errChunk(ua.StatusBadTimeout, "abc")
			binary.LittleEndian.PutUint32(b[12:], 1<<31-1)
			return b
		}(), 8192, nil, "server error BadTimeout (0x800A0000): abc"},
		{"ERR without a reason", append(header("ERRF", 12), 0, 0, 0x13, 0x80), 8192, nil, "server error BadSecurityChecksFailed (0x80130000)"},
		{"ERR too short", header("ERRF", 8), 8192, nil, "server error BadTcpInternalError (0x80820000): malformed ERR message from the server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readChunk(bytes.NewReader(tt.in), tt.limit)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("got %x, %v; want %x", got, err, tt.want)
			}
		})
	}
}

func TestReasonBounded(t *testing.T) {
	_, err := readChunk(bytes.NewReader(errChunk(ua.StatusBadTimeout, strings.Repeat("x", 6000))), 1<<16)
	var se *ServerError
	if !errors.As(err, &se) || len(se.Reason) != MaxReasonLength {
		t.Fatalf("reason of %d bytes, want %d", len(se.Reason), MaxReasonLength)
	}
}

func TestParseAck(t *testing.T) {
	ack := func(recv, send uint32) []byte {
		var b []byte
		for _, v := range []uint32{0, recv, send, 1 << 20, 16} {
			b = binary.LittleEndian.AppendUint32(b, v)
		}
		return b
	}
	want := Limits{ReceiveBufferSize: 65536, SendBufferSize: 65536, MaxMessageSize: 1 << 24, MaxChunkCount: 300}
	got, err := parseAck(ack(16384, 65536), want)
	if err != nil {
		t.Fatal(err)
	}
	wantNeg := Negotiated{SendChunkSize: 16384, SendMessageSize: 1 << 20, SendChunkCount: 16, ReceiveChunkSize: 65536, ReceiveMessageSize: 1 << 24, ReceiveChunkCount: 300}
	if got != wantNeg {
		t.Errorf("negotiated %+v, want %+v", got, wantNeg)
	}
	for _, tc := range [][2]uint32{{8191, 65536}, {65536, 100}} {
		if _, err := parseAck(ack(tc[0], tc[1]), want); err == nil || !strings.Contains(err.Error(), "at least 8192") {
			t.Errorf("ACK with buffers %v: error %v, want a refusal", tc, err)
		}
	}
	if _, err := parseAck(ack(65536, 65536)[:19], want); err == nil {
		t.Error("short ACK accepted")
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"opc.tcp://127.0.0.1:4841":      "127.0.0.1:4841",
		"opc.tcp://plc.example/UA/Path": "plc.example:4840",
		"opc.tcp://[::1]:48500/":        "[::1]:48500",
		"http://plc:80":                 "error",
		"opc.tcp://:4840":               "error",
	} {
		got, err := hostPort(in)
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("hostPort(%q) = %q (%v), want %q", in, got, err, want)
		}
	}
}

// FuzzReadChunk: whatever a hostile server sends, readChunk neither panics
// nor allocates more than its limit, and returns a chunk only when it is
// whole and well formed.
func FuzzReadChunk(f *testing.F) {
	f.Add(errChunk(ua.StatusBadSecurityChecksFailed, "x"))
	f.Add([]byte("MSGF\x0c\x00\x00\x00abcd"))
	f.Add([]byte("ACKF\xff\xff\xff\xff"))
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := readChunk(bytes.NewReader(in), limit)
		if err != nil {
			var se *ServerError
			if errors.As(err, &se) && (len(se.Reason) > MaxReasonLength || !utf8.ValidString(se.Reason)) {
				t.Fatalf("reason of %d bytes", len(se.Reason))
			}
			return
		}
		if len(got) > limit || len(got) < HeaderSize || binary.LittleEndian.Uint32(got[4:]) != uint32(len(got)) || !bytes.Equal(got, in[:len(got)]) {
			t.Fatalf("chunk %x from %x", got, in)
		}
	})
}
