// Package hostileua is a hostile OPC UA server for tests (issue 20): it
// speaks just enough UA-TCP and UA Secure Conversation (policy None: Hello,
// OpenSecureChannel, then the GetEndpoints request a client sends before
// any certificate check) to deliver one attack per Mode, on every
// connection, for as long as the test runs.
//
// It is a test peer, independent of the client under test: it shares no
// code with collectors/opcua and uses gopcua's ua package only to encode
// the well-formed parts of its messages and to read the client's requests.
package hostileua

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// Mode is the attack a Server makes.
type Mode int

const (
	// Silent accepts TCP and never sends a byte.
	Silent Mode = iota
	// SlowACK answers Hello with a well-formed Acknowledge, one byte a second.
	SlowACK
	// VariantLengthMinus2 answers GetEndpoints with a Variant (in the
	// response header's AdditionalHeader) whose array length is -2.
	VariantLengthMinus2
	// NestedVariants answers GetEndpoints with 2,000,000 Variants nested
	// in one another: a 2 MB message, in chunks of the client's size.
	NestedVariants
	// DimensionsWrapToZero answers GetEndpoints with an empty Int32 array
	// of dimensions 65536 × 65536 × 1: the product wraps to 0 in 32 bits,
	// matching the length, and a decoder that trusts it builds 2³² empty
	// inner slices.
	DimensionsWrapToZero
	// DimensionMaxInt32 answers GetEndpoints with an empty Int32 array of
	// dimensions 2³¹−1 × 65536 × 65536 (an 8 GiB first dimension; the
	// product wraps to 0).
	DimensionMaxInt32
	// EndlessChunks answers GetEndpoints with intermediate chunks ('C'),
	// each under a new request id, without end.
	EndlessChunks
	// EndlessChunksAnsweredID answers GetEndpoints with intermediate chunks
	// without end, all under the request id of the client's
	// OpenSecureChannel request, answered already: ids the client did use.
	EndlessChunksAnsweredID
	// HugeChunk answers GetEndpoints with a chunk header claiming 4 GiB
	// (0xFFFFFFFF bytes), then a few bytes, then nothing.
	HugeChunk
	// SequenceJump serves a session and a subscription whose notification
	// sequence numbers jump from JumpAfter to JumpTo (see session.go).
	SequenceJump
)

// Modes lists every mode, in order.
var Modes = []Mode{Silent, SlowACK, VariantLengthMinus2, NestedVariants, DimensionsWrapToZero, DimensionMaxInt32, EndlessChunks, EndlessChunksAnsweredID, HugeChunk, SequenceJump}

func (m Mode) String() string {
	switch m {
	case Silent:
		return "silent"
	case SlowACK:
		return "slowloris-ACK"
	case VariantLengthMinus2:
		return "variant array length -2"
	case NestedVariants:
		return "2,000,000 nested variants"
	case DimensionsWrapToZero:
		return "dimensions whose product wraps to 0"
	case DimensionMaxInt32:
		return "a dimension of 2^31-1"
	case EndlessChunks:
		return "endless intermediate chunks"
	case EndlessChunksAnsweredID:
		return "endless intermediate chunks under an answered request id"
	case HugeChunk:
		return "chunk header claiming 4 GiB"
	case SequenceJump:
		return "sequence number jumping to 4e9"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Server is a running hostile server.
type Server struct {
	Endpoint string // opc.tcp://127.0.0.1:PORT
	mode     Mode
	ln       net.Listener
	done     chan struct{}
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}

	accepted atomic.Int64
	attacks  atomic.Int64
	active   atomic.Int64
	sent     atomic.Int64 // bytes of attack written
	errMu    sync.Mutex
	lastErr  error
}

// Start listens on a free loopback port and serves mode until the test
// ends; then it closes the listener and every connection.
func Start(t testing.TB, mode Mode) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("hostile OPC UA server: %v", err)
	}
	s := &Server{
		Endpoint: "opc.tcp://" + ln.Addr().String(),
		mode:     mode,
		ln:       ln,
		done:     make(chan struct{}),
		conns:    map[net.Conn]struct{}{},
	}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

// Close stops the server and waits for its goroutines.
func (s *Server) Close() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.done)
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Accepted is the number of TCP connections accepted so far.
func (s *Server) Accepted() int64 { return s.accepted.Load() }

// Attacks is the number of times the attack was delivered: for Silent, a
// connection held; for SlowACK, a trickle begun; for SequenceJump, the
// jump sent; for the others, the client's GetEndpoints request answered
// with it.
func (s *Server) Attacks() int64 { return s.attacks.Load() }

// Active is the number of connections under attack now: attacked and not
// yet closed by the client.
func (s *Server) Active() int64 { return s.active.Load() }

// AttackBytes is the number of bytes of attack written so far.
func (s *Server) AttackBytes() int64 { return s.sent.Load() }

// Err is the last protocol error the server met with a client before it
// could attack (a client the server failed to understand), or nil.
func (s *Server) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.lastErr
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.accepted.Add(1)
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			if err := s.serve(c); err != nil && !s.closing() {
				s.errMu.Lock()
				s.lastErr = err
				s.errMu.Unlock()
			}
		}()
	}
}

func (s *Server) closing() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// conn is one client's connection and the server's state on it.
type conn struct {
	net.Conn
	s         *Server
	sendChunk int    // largest chunk the client accepts
	channelID uint32 // 0 until OpenSecureChannel
	tokenID   uint32
	wmu       sync.Mutex // one message's chunks at a time
	seq       uint32     // last sequence number sent
	openID    uint32     // request id of the client's OpenSecureChannel
	attacking bool       // counted in Server.active
}

// attacked counts an attack on this connection.
func (c *conn) attacked() {
	c.s.attacks.Add(1)
	if !c.attacking {
		c.attacking = true
		c.s.active.Add(1)
	}
}

func (c *conn) closed() {
	if c.attacking {
		c.s.active.Add(-1)
	}
}

const (
	headerSize    = 8
	channelID     = 0x6a6f6b65
	tokenID       = 1
	ourBufferSize = 64 << 10
	nonePolicyURI = "http://opcfoundation.org/UA/SecurityPolicy#None"
	nullLength    = math.MaxUint32 // -1: a null string, byte string or array
)

func (s *Server) serve(nc net.Conn) error {
	c := &conn{Conn: nc, s: s}
	defer c.closed()
	if s.mode == Silent {
		c.attacked()
		// Hold the connection, read nothing, send nothing.
		<-s.done
		return nil
	}
	hello, err := c.readChunk("HEL")
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if len(hello) < headerSize+20 {
		return fmt.Errorf("hello of %d bytes", len(hello))
	}
	clientReceive := binary.LittleEndian.Uint32(hello[headerSize+4:])
	c.sendChunk = int(min(clientReceive, ourBufferSize))
	ack := []byte("ACKF")
	ack = binary.LittleEndian.AppendUint32(ack, 28)
	for _, v := range []uint32{0, ourBufferSize, uint32(c.sendChunk), 0, 0} {
		ack = binary.LittleEndian.AppendUint32(ack, v)
	}
	if s.mode == SlowACK {
		c.attacked()
		for i := range ack {
			if _, err := nc.Write(ack[i : i+1]); err != nil {
				return nil // the client gave up, as it should
			}
			s.sent.Add(1)
			select {
			case <-time.After(time.Second):
			case <-s.done:
				return nil
			}
		}
		_, _ = io.Copy(io.Discard, nc) // whatever comes, until the client closes
		return nil
	}
	if _, err := nc.Write(ack); err != nil {
		return fmt.Errorf("acknowledge: %w", err)
	}
	if err := c.openChannel(); err != nil {
		return fmt.Errorf("open secure channel: %w", err)
	}
	if s.mode == SequenceJump {
		return c.session()
	}
	for {
		chunk, err := c.readChunk("MSG", "CLO")
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		if string(chunk[:3]) == "CLO" {
			return nil
		}
		requestID, req, err := c.openMessage(chunk)
		if err != nil {
			return err
		}
		r, ok := req.(*ua.GetEndpointsRequest)
		if !ok {
			return fmt.Errorf("request %T, want GetEndpointsRequest", req)
		}
		c.attacked()
		if err := c.attack(requestID, r.RequestHeader.RequestHandle); err != nil {
			return nil // the client hung up on the attack
		}
	}
}

// readChunk reads one whole chunk whose type is one of types. Chunks from
// the client are small; anything over our buffer size is refused.
func (c *conn) readChunk(types ...string) ([]byte, error) {
	hdr := make([]byte, headerSize)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, err
	}
	size := binary.LittleEndian.Uint32(hdr[4:])
	if size < headerSize || size > ourBufferSize {
		return nil, fmt.Errorf("%q chunk of %d bytes", hdr[:4], size)
	}
	chunk := make([]byte, size)
	copy(chunk, hdr)
	if _, err := io.ReadFull(c, chunk[headerSize:]); err != nil {
		return nil, err
	}
	for _, t := range types {
		if string(chunk[:3]) == t {
			if chunk[3] != 'F' {
				return nil, fmt.Errorf("%s chunk of type %q: only whole messages are expected", t, chunk[3])
			}
			return chunk, nil
		}
	}
	return nil, fmt.Errorf("got %q, want one of %v", chunk[:3], types)
}

// openChannel answers the client's OpenSecureChannel request (policy None).
func (c *conn) openChannel() error {
	chunk, err := c.readChunk("OPN")
	if err != nil {
		return err
	}
	b := ua.NewBuffer(chunk[headerSize+4:]) // after the secure channel id
	policy := b.ReadString()
	_ = b.ReadBytes() // sender certificate
	_ = b.ReadBytes() // receiver thumbprint
	_ = b.ReadUint32()
	requestID := b.ReadUint32()
	if b.Error() != nil {
		return fmt.Errorf("OPN headers: %w", b.Error())
	}
	if policy != nonePolicyURI {
		return fmt.Errorf("security policy %q: only None is spoken here", policy)
	}
	_, v, err := ua.DecodeService(b.Bytes())
	if err != nil {
		return fmt.Errorf("decode OPN request: %w", err)
	}
	req, ok := v.(*ua.OpenSecureChannelRequest)
	if !ok {
		return fmt.Errorf("OPN carries %T", v)
	}
	c.channelID, c.tokenID, c.openID = channelID, tokenID, requestID
	resp := &ua.OpenSecureChannelResponse{
		ResponseHeader: responseHeader(req.RequestHeader.RequestHandle),
		SecurityToken: &ua.ChannelSecurityToken{
			ChannelID:       c.channelID,
			TokenID:         c.tokenID,
			CreatedAt:       time.Now(),
			RevisedLifetime: req.RequestedLifetime,
		},
		ServerNonce: []byte{},
	}
	body, err := encodeService(id.OpenSecureChannelResponse_Encoding_DefaultBinary, resp)
	if err != nil {
		return err
	}
	h := []byte("OPNF")
	h = binary.LittleEndian.AppendUint32(h, 0)
	h = binary.LittleEndian.AppendUint32(h, c.channelID)
	h = appendString(h, nonePolicyURI)
	h = binary.LittleEndian.AppendUint32(h, nullLength) // sender certificate
	h = binary.LittleEndian.AppendUint32(h, nullLength) // receiver thumbprint
	c.seq++
	h = binary.LittleEndian.AppendUint32(h, c.seq)
	h = binary.LittleEndian.AppendUint32(h, requestID)
	h = append(h, body...)
	binary.LittleEndian.PutUint32(h[4:], uint32(len(h)))
	_, err = c.Write(h)
	return err
}

// openMessage reads a MSG chunk's request id and request.
func (c *conn) openMessage(chunk []byte) (uint32, ua.Request, error) {
	const bodyAt = headerSize + 4 + 4 + 8 // channel id, token id, sequence header
	if len(chunk) < bodyAt {
		return 0, nil, fmt.Errorf("MSG chunk of %d bytes", len(chunk))
	}
	requestID := binary.LittleEndian.Uint32(chunk[bodyAt-4:])
	_, v, err := ua.DecodeService(chunk[bodyAt:])
	if err != nil {
		return 0, nil, fmt.Errorf("decode request: %w", err)
	}
	req, ok := v.(ua.Request)
	if !ok {
		return 0, nil, fmt.Errorf("MSG carries %T", v)
	}
	return requestID, req, nil
}

// attack answers the GetEndpoints request requestID as the mode says. An
// error means the client closed the connection.
func (c *conn) attack(requestID, handle uint32) error {
	switch c.s.mode {
	case VariantLengthMinus2:
		return c.sendMessage(requestID, getEndpointsResponse(handle, variantInt32Array(-2)))
	case NestedVariants:
		v := append(bytes.Repeat([]byte{byte(ua.TypeIDVariant)}, 2_000_000), 0)
		return c.sendMessage(requestID, getEndpointsResponse(handle, v))
	case DimensionsWrapToZero:
		return c.sendMessage(requestID, getEndpointsResponse(handle, variantInt32Matrix(1<<16, 1<<16, 1)))
	case DimensionMaxInt32:
		return c.sendMessage(requestID, getEndpointsResponse(handle, variantInt32Matrix(math.MaxInt32, 1<<16, 1<<16)))
	case EndlessChunks:
		return c.endlessChunks(func(i uint32) uint32 { return requestID + i*1000 })
	case EndlessChunksAnsweredID:
		return c.endlessChunks(func(uint32) uint32 { return c.openID })
	case HugeChunk:
		b := []byte("MSGF")
		b = binary.LittleEndian.AppendUint32(b, math.MaxUint32)
		b = binary.LittleEndian.AppendUint32(b, c.channelID)
		b = binary.LittleEndian.AppendUint32(b, c.tokenID)
		b = append(b, make([]byte, 64)...)
		if _, err := c.Write(b); err != nil {
			return err
		}
		c.s.sent.Add(int64(len(b)))
		// The rest of the 4 GiB never comes; wait for the client to hang up.
		_, err := io.Copy(io.Discard, c)
		if err == nil {
			err = io.EOF
		}
		return err
	}
	return fmt.Errorf("mode %v has no attack after the handshake", c.s.mode)
}

// sendMessage sends body as the response to requestID, in chunks that fit
// the client's receive buffer.
func (c *conn) sendMessage(requestID uint32, body []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	const overhead = headerSize + 4 + 4 + 8
	maxPiece := c.sendChunk - overhead
	for first := true; first || len(body) > 0; first = false {
		n := min(maxPiece, len(body))
		chunkType := byte('C')
		if n == len(body) {
			chunkType = 'F'
		}
		if err := c.writeChunk(chunkType, requestID, body[:n]); err != nil {
			return err
		}
		body = body[n:]
	}
	return nil
}

// endlessChunks sends intermediate chunks of the largest size the client
// takes, chunk i under request id idOf(i), until the client hangs up.
func (c *conn) endlessChunks(idOf func(i uint32) uint32) error {
	piece := make([]byte, c.sendChunk-(headerSize+4+4+8))
	for i := uint32(1); ; i++ {
		if err := c.writeChunk('C', idOf(i), piece); err != nil {
			return err
		}
	}
}

func (c *conn) writeChunk(chunkType byte, requestID uint32, piece []byte) error {
	b := make([]byte, 0, headerSize+16+len(piece))
	b = append(b, 'M', 'S', 'G', chunkType, 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, c.channelID)
	b = binary.LittleEndian.AppendUint32(b, c.tokenID)
	c.seq++
	b = binary.LittleEndian.AppendUint32(b, c.seq)
	b = binary.LittleEndian.AppendUint32(b, requestID)
	b = append(b, piece...)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	if _, err := c.Write(b); err != nil {
		return err
	}
	c.s.sent.Add(int64(len(b)))
	return nil
}

func responseHeader(handle uint32) *ua.ResponseHeader {
	return &ua.ResponseHeader{
		Timestamp:          time.Now(),
		RequestHandle:      handle,
		ServiceDiagnostics: &ua.DiagnosticInfo{},
		StringTable:        []string{},
		AdditionalHeader:   ua.NewExtensionObject(nil),
	}
}

// encodeService encodes a service message body: its type id, then v.
func encodeService(typeID uint16, v any) ([]byte, error) {
	head, err := ua.NewFourByteExpandedNodeID(0, typeID).Encode()
	if err != nil {
		return nil, err
	}
	body, err := ua.Encode(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return append(head, body...), nil
}

// getEndpointsResponse is a GetEndpointsResponse whose response header
// carries, as its AdditionalHeader, an AdditionalParametersType with one
// parameter whose value is rawVariant: the hostile part sits in the reply
// a client asks for before it checks any certificate.
func getEndpointsResponse(handle uint32, rawVariant []byte) []byte {
	hdr, err := ua.Encode(responseHeader(handle))
	if err != nil {
		panic(err) // a fixed, complete value: cannot fail
	}
	hdr = hdr[:len(hdr)-3] // the null AdditionalHeader: node id 0, no body
	var params []byte
	params = binary.LittleEndian.AppendUint32(params, 1) // one KeyValuePair
	params = binary.LittleEndian.AppendUint16(params, 0) // its key: ns 0,
	params = appendString(params, "hostile")             // name "hostile"
	params = append(params, rawVariant...)

	b, err := ua.NewFourByteExpandedNodeID(0, id.GetEndpointsResponse_Encoding_DefaultBinary).Encode()
	if err != nil {
		panic(err)
	}
	b = append(b, hdr...)
	b = append(b, 0x01, 0) // four-byte node id, namespace 0
	b = binary.LittleEndian.AppendUint16(b, id.AdditionalParametersType_Encoding_DefaultBinary)
	b = append(b, ua.ExtensionObjectBinary)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(params)))
	b = append(b, params...)
	return binary.LittleEndian.AppendUint32(b, nullLength) // Endpoints: null array
}

// variantInt32Array is a Variant: an Int32 array of length n, and no
// elements.
func variantInt32Array(n int32) []byte {
	return binary.LittleEndian.AppendUint32([]byte{byte(ua.TypeIDInt32) | ua.VariantArrayValues}, uint32(n))
}

// variantInt32Matrix is a Variant: an empty Int32 array with dims.
func variantInt32Matrix(dims ...int32) []byte {
	b := []byte{byte(ua.TypeIDInt32) | ua.VariantArrayValues | ua.VariantArrayDimensions}
	b = binary.LittleEndian.AppendUint32(b, 0) // no elements
	b = binary.LittleEndian.AppendUint32(b, uint32(len(dims)))
	for _, d := range dims {
		b = binary.LittleEndian.AppendUint32(b, uint32(d))
	}
	return b
}

// appendString appends a UA String.
func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
