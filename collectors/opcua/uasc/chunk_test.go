package uasc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors/opcua/secpolicy"
	"github.com/tagbridge/tagbridge/collectors/opcua/uatcp"
)

func TestNextSequenceNumber(t *testing.T) {
	for in, want := range map[uint32]uint32{
		1:                     2,
		4294966271:            4294966272, // MaxUint32-1024: not yet
		4294966272:            1,          // above it: wrap to below 1024
		math.MaxUint32 - 1:    1,
		math.MaxUint32:        1,
		sequenceWrapAbove - 1: sequenceWrapAbove,
	} {
		if got := nextSequenceNumber(in); got != want {
			t.Errorf("nextSequenceNumber(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestSequenceNumbers(t *testing.T) {
	legacy := sequenceNumbers{legacy: true}
	if a, b := legacy.next(), legacy.next(); a != 1 || b != 2 {
		t.Errorf("legacy numbering starts %d, %d; want 1, 2", a, b)
	}
	ecc := sequenceNumbers{}
	if a, b := ecc.next(), ecc.next(); a != 0 || b != 1 {
		t.Errorf("ECC numbering starts %d, %d; want 0, 1", a, b)
	}
	ecc.last = math.MaxUint32 - 1
	if a, b, c := ecc.next(), ecc.next(), ecc.next(); a != math.MaxUint32 || b != 0 || c != 1 {
		t.Errorf("ECC numbering wraps %d, %d, %d; want MaxUint32, 0, 1", a, b, c)
	}
	legacy.last = math.MaxUint32 - 1
	if got := legacy.next(); got != 1 {
		t.Errorf("legacy numbering after MaxUint32-1: %d, want 1", got)
	}
}

func TestSequenceCheckStrict(t *testing.T) {
	for _, tc := range []struct {
		name string
		seq  []uint32
		ok   bool
	}{
		{"from 0 one by one", []uint32{0, 1, 2}, true},
		{"from MaxUint32 to 0", []uint32{math.MaxUint32 - 1, math.MaxUint32, 0, 1}, true},
		{"no legacy wrap to below 1024", []uint32{math.MaxUint32 - 5, 3}, false},
		{"no jump", []uint32{5, 7}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sequenceCheck{strict: true}
			var err error
			for _, n := range tc.seq {
				if err = s.accept(n); err != nil {
					break
				}
			}
			if (err == nil) != tc.ok {
				t.Fatalf("accept %v: %v", tc.seq, err)
			}
		})
	}
}

func TestSequenceCheck(t *testing.T) {
	tests := []struct {
		name    string
		seq     []uint32
		wantErr int // index of the first refused number; -1: none
	}{
		{"any start, then one by one", []uint32{51, 52, 53}, -1},
		{"a jump is an error", []uint32{1, 2, 4}, 2},
		{"a replay is an error", []uint32{7, 8, 8}, 2},
		{"backwards is an error", []uint32{7, 8, 3}, 2},
		{"wrap above MaxUint32-1024 to below 1024", []uint32{math.MaxUint32 - 5, 3, 4}, -1},
		{"wrap from MaxUint32 to 0", []uint32{math.MaxUint32, 0, 1}, -1},
		{"no wrap below the threshold", []uint32{sequenceWrapAbove - 1, 5}, 1},
		{"wrap only to below 1024", []uint32{math.MaxUint32 - 5, 1024}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sequenceCheck
			for i, n := range tt.seq {
				err := s.accept(n)
				if (err != nil) != (i == tt.wantErr) {
					t.Fatalf("accept(%d) at %d: %v", n, i, err)
				}
				if err != nil {
					if !errors.Is(err, errSequence) {
						t.Errorf("error %v does not wrap errSequence", err)
					}
					return
				}
			}
		})
	}
}

func TestSplitMessage(t *testing.T) {
	msg := bytes.Repeat([]byte("x"), 25)
	for maxPiece, want := range map[int][]int{10: {10, 10, 5}, 25: {25}, 100: {25}, 5: {5, 5, 5, 5, 5}} {
		var got []int
		for _, p := range splitMessage(msg, maxPiece) {
			got = append(got, len(p))
		}
		if len(got) != len(want) || string(bytes.Join(splitMessage(msg, maxPiece), nil)) != string(msg) {
			t.Errorf("split by %d: pieces %v, want %v", maxPiece, got, want)
		}
	}
	if got := splitMessage(nil, 10); len(got) != 1 || len(got[0]) != 0 {
		t.Errorf("empty message: %d pieces, want one empty", len(got))
	}
}

func TestCheckSendLimits(t *testing.T) {
	lim := uatcp.Negotiated{SendMessageSize: 1000, SendChunkCount: 3}
	for _, tt := range []struct {
		size, chunks int
		want         string
	}{
		{1000, 3, ""},
		{1001, 1, "message of 1001 bytes exceeds the server's max message size of 1000 bytes"},
		{900, 4, "message of 900 bytes needs 4 chunks, the server accepts at most 3"},
	} {
		err := checkSendLimits(tt.size, tt.chunks, lim)
		if (err == nil && tt.want != "") || (err != nil && err.Error() != tt.want) {
			t.Errorf("checkSendLimits(%d, %d) = %v, want %q", tt.size, tt.chunks, err, tt.want)
		}
	}
	if err := checkSendLimits(1<<30, 1<<20, uatcp.Negotiated{}); err != nil {
		t.Errorf("no server limits: %v", err)
	}
}

func TestReassembler(t *testing.T) {
	type step struct {
		id       uint32
		typ      byte
		payload  string
		awaited  bool
		complete bool
		message  string
		reqErr   string // the request's failure
		aborted  bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"single final chunk", []step{{1, 'F', "abc", true, true, "abc", "", false}}},
		{"intermediate chunks joined", []step{
			{1, 'C', "ab", true, false, "", "", false},
			{1, 'C', "cd", true, false, "", "", false},
			{1, 'F', "e", true, true, "abcde", "", false},
		}},
		{"interleaved requests", []step{
			{1, 'C', "a", true, false, "", "", false},
			{2, 'C', "x", true, false, "", "", false},
			{1, 'F', "b", true, true, "ab", "", false},
			{2, 'F', "y", true, true, "xy", "", false},
		}},
		{"abort fails only its request", []step{
			{1, 'C', "a", true, false, "", "", false},
			{2, 'C', "x", true, false, "", "", false},
			{1, 'A', "why", true, true, "why", "", true},
			{2, 'F', "y", true, true, "xy", "", false},
		}},
		{"too large", []step{
			{1, 'C', "0123456789", true, false, "", "", false},
			{1, 'C', "0", true, true, "", "response exceeds our max message size of 10 bytes", false},
			{1, 'F', "0", false, false, "", "", false}, // its waiter is gone: dropped
		}},
		{"too many chunks", []step{
			{1, 'C', "a", true, false, "", "", false},
			{1, 'C', "a", true, false, "", "", false},
			{1, 'C', "a", true, false, "", "", false},
			{1, 'F', "a", true, true, "", "response exceeds our max chunk count of 3", false},
		}},
		{"final chunk alone too large", []step{{1, 'F', "0123456789x", true, true, "", "response exceeds our max message size of 10 bytes", false}}},
		{"chunks nobody awaits are dropped", []step{
			{7, 'C', "0123456789", false, false, "", "", false},
			{8, 'C', "0123456789", false, false, "", "", false},
			{7, 'F', "", false, false, "", "", false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReassembler(10, 3)
			for i, s := range tt.steps {
				got, complete, err := r.add(s.id, s.typ, []byte(s.payload), s.awaited)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if complete != s.complete {
					t.Fatalf("step %d: complete %v, want %v", i, complete, s.complete)
				}
				if !complete {
					continue
				}
				if got.requestID != s.id || got.aborted != s.aborted {
					t.Errorf("step %d: %+v", i, got)
				}
				if s.reqErr != "" {
					if got.err == nil || got.err.Error() != s.reqErr {
						t.Errorf("step %d: request error %v, want %q", i, got.err, s.reqErr)
					}
					continue
				}
				if got.err != nil || string(got.message) != s.message {
					t.Errorf("step %d: message %q (%v), want %q", i, got.message, got.err, s.message)
				}
			}
			if n := r.buffered(); n != 0 {
				t.Errorf("%d bytes left buffered", n)
			}
		})
	}
	if _, _, err := newReassembler(0, 0).add(1, 'X', nil, true); err == nil {
		t.Error("chunk type X accepted")
	}
}

func TestAsymmetricHeader(t *testing.T) {
	h := asymmetricHeader{PolicyURI: "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256", SenderCertificate: []byte{1, 2, 3}, ReceiverThumbprint: bytes.Repeat([]byte{9}, 20)}
	b := h.append(nil)
	got, n, err := parseAsymmetricHeader(append(b, "body"...))
	if err != nil || n != len(b) || got.PolicyURI != h.PolicyURI || !bytes.Equal(got.SenderCertificate, h.SenderCertificate) || !bytes.Equal(got.ReceiverThumbprint, h.ReceiverThumbprint) {
		t.Fatalf("parsed %+v, %d, %v from %+v", got, n, err, h)
	}
	none := asymmetricHeader{PolicyURI: "http://opcfoundation.org/UA/SecurityPolicy#None"}
	b = none.append(nil)
	if got, n, err := parseAsymmetricHeader(b); err != nil || n != len(b) || got.SenderCertificate != nil || got.ReceiverThumbprint != nil {
		t.Errorf("None header: %+v, %d, %v", got, n, err)
	}
	for _, bad := range [][]byte{
		{1, 2},
		binary.LittleEndian.AppendUint32(nil, 1<<30),
		append(binary.LittleEndian.AppendUint32(nil, 2), "ab"...),
	} {
		if _, _, err := parseAsymmetricHeader(bad); err == nil {
			t.Errorf("header %x accepted", bad)
		}
	}
}

func TestDecodeResponse(t *testing.T) {
	fault := &ua.ServiceFault{ResponseHeader: faultHeader(ua.StatusBadSessionIDInvalid)}
	typeID, _ := ua.NewFourByteExpandedNodeID(0, ua.ServiceTypeID(fault)).Encode()
	body, err := ua.Encode(fault)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := decodeResponse(append(typeID, body...))
	if err != nil || resp.Header().ServiceResult != ua.StatusBadSessionIDInvalid {
		t.Fatalf("decoded %+v, %v", resp, err)
	}
	for name, b := range map[string][]byte{
		"empty":              nil,
		"unknown type":       {1, 0, 0xff, 0xff},
		"request, not reply": mustEncode(t, &ua.ReadRequest{RequestHeader: &ua.RequestHeader{AuthenticationToken: ua.NewTwoByteNodeID(0), AdditionalHeader: ua.NewExtensionObject(nil)}}),
		"cut off":            append(typeID, body[:5]...),
		"huge array":         append(append(typeID, body...)[:len(typeID)+len(body)-4], 0xff, 0xff, 0xff, 0x7f),
	} {
		if resp, err := decodeResponse(b); err == nil {
			t.Errorf("%s: decoded %+v", name, resp)
		}
	}
}

func faultHeader(code ua.StatusCode) *ua.ResponseHeader {
	return &ua.ResponseHeader{ServiceResult: code, ServiceDiagnostics: &ua.DiagnosticInfo{}, AdditionalHeader: ua.NewExtensionObject(nil)}
}

func mustEncode(t testing.TB, req ua.Request) []byte {
	b, err := encodeRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fuzzChannel is a channel as its reader sees it after opening with policy
// None: channel 5, token 1, an expired previous token 9, request ids up to
// 10 sent of which three pending (1 and 2 MSG, 3 OPN), limits of 4 KiB per
// message in at most 4 chunks.
func fuzzChannel() (*Channel, *reassembler, map[uint32]chan result) {
	return testChannel(false)
}

// testChannel is fuzzChannel, with a previous token 8 still accepted when
// previousWithinQuarter.
func testChannel(previousWithinQuarter bool) (*Channel, *reassembler, map[uint32]chan result) {
	ch := &Channel{
		cfg:     Config{Policy: secpolicy.None, Mode: ua.MessageSecurityModeNone},
		log:     zerolog.Nop(),
		asym:    mustCrypto(secpolicy.None.Asymmetric(ua.MessageSecurityModeNone, nil, nil)),
		waiters: make(map[uint32]*waiter),
		done:    make(chan struct{}),
	}
	ch.channelID = 5
	ch.cur = &token{id: 1, crypto: mustCrypto(noneSymmetric()), arrived: time.Now(), lifetime: time.Hour}
	ch.prev = &token{id: 9, crypto: ch.cur.crypto, arrived: time.Now().Add(-2 * time.Hour), lifetime: time.Hour}
	if previousWithinQuarter {
		// expired 10 min ago, accepted 5 min more
		ch.prev = &token{id: 8, crypto: ch.cur.crypto, arrived: time.Now().Add(-70 * time.Minute), lifetime: time.Hour}
	}
	ch.requestIDs.Store(10)
	results := make(map[uint32]chan result)
	for id, typ := range map[uint32]string{1: "MSG", 2: "MSG", 3: "OPN"} {
		results[id] = make(chan result, 1)
		ch.waiters[id] = &waiter{msgType: typ, result: results[id]}
	}
	return ch, newReassembler(4096, 4), results
}

func noneSymmetric() (secpolicy.ChunkCrypto, error) {
	ex, err := secpolicy.None.NewExchange()
	if err != nil {
		return nil, err
	}
	return ex.Symmetric(ua.MessageSecurityModeNone, nil)
}

func mustCrypto(c secpolicy.ChunkCrypto, err error) secpolicy.ChunkCrypto {
	if err != nil {
		panic(err)
	}
	return c
}

// msgChunk builds a MSG chunk of channel 5 under token.
func msgChunk(chunkType byte, token, seq, requestID uint32, payload []byte) []byte {
	b := append([]byte("MSG"), chunkType, 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, 5)
	b = binary.LittleEndian.AppendUint32(b, token)
	b = binary.LittleEndian.AppendUint32(b, seq)
	b = binary.LittleEndian.AppendUint32(b, requestID)
	b = append(b, payload...)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	return b
}

func TestReceive(t *testing.T) {
	fault := mustEncodeResponse(t, &ua.ServiceFault{ResponseHeader: faultHeader(ua.StatusBadTimeout)})
	abort := binary.LittleEndian.AppendUint32(nil, uint32(ua.StatusBadResponseTooLarge))
	abort = append(binary.LittleEndian.AppendUint32(abort, 8), "too much"...)
	tests := []struct {
		name    string
		chunks  [][]byte
		wantErr string            // channel error
		results map[uint32]string // request id -> its result: "message" or the error
	}{
		{"response in two chunks", [][]byte{msgChunk('C', 1, 10, 1, fault[:5]), msgChunk('F', 1, 11, 1, fault[5:])}, "", map[uint32]string{1: "message"}},
		{"abort fails one request", [][]byte{msgChunk('C', 1, 10, 1, fault[:5]), msgChunk('F', 1, 11, 2, fault), msgChunk('A', 1, 12, 1, abort)}, "",
			map[uint32]string{1: "server aborted the response: server error BadResponseTooLarge (0x80B90000): too much", 2: "message"}},
		{"endless chunks under new request ids end the channel", func() [][]byte {
			var cs [][]byte
			for i := range uint32(1000) {
				cs = append(cs, msgChunk('C', 1, 10+i, 100+i, make([]byte, 1000)))
			}
			return cs
		}(), "MSG chunk for request 100, which we never sent", map[uint32]string{}},
		{"late chunks of a request no longer awaited are dropped", [][]byte{msgChunk('C', 1, 10, 7, fault[:5]), msgChunk('F', 1, 11, 7, fault[5:]), msgChunk('F', 1, 12, 1, fault)}, "",
			map[uint32]string{1: "message"}},
		{"endless chunks under a request id answered already end the channel", func() [][]byte {
			var cs [][]byte
			for i := range uint32(1000) {
				cs = append(cs, msgChunk('C', 1, 10+i, 7, make([]byte, 1000)))
			}
			return cs
		}(), "MSG chunk: 9 chunks in a row that no request awaits", map[uint32]string{}},
		{"sequence gap", [][]byte{msgChunk('F', 1, 10, 1, fault), msgChunk('F', 1, 12, 2, fault)}, "sequence number out of order: 12 after 10", map[uint32]string{1: "message"}},
		{"unknown token", [][]byte{msgChunk('F', 2, 10, 1, fault)}, "MSG chunk under unknown token 2", nil},
		{"previous token past its quarter", [][]byte{msgChunk('F', 9, 10, 1, fault)}, "MSG chunk under token 9, which expired more than a quarter of its lifetime ago", nil},
		{"previous token within its quarter", [][]byte{msgChunk('F', 8, 10, 1, fault)}, "", map[uint32]string{1: "message"}},
		{"another channel", [][]byte{func() []byte { c := msgChunk('F', 1, 10, 1, fault); c[8] = 6; return c }()}, "MSG chunk for channel 6, ours is 5", nil},
		{"MSG for an OPN request", [][]byte{msgChunk('F', 1, 10, 3, fault)}, "response to request 3 came as MSG, not OPN", nil},
		{"too short", [][]byte{[]byte("MSGF\x0c\x00\x00\x00\x05\x00\x00\x00")}, "MSG chunk of 12 bytes is too short", nil},
		{"CLO from the server", [][]byte{append([]byte("CLOF\x10\x00\x00\x00\x05\x00\x00\x00"), 1, 0, 0, 0)}, "server sent an unexpected CLO message", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, rx, results := testChannel(strings.Contains(tt.name, "within its quarter"))
			var seq sequenceCheck
			var err error
			for _, c := range tt.chunks {
				if err = ch.receive(c, rx, &seq); err != nil {
					break
				}
			}
			if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if rx.buffered() > 4096*3 {
				t.Errorf("%d bytes buffered", rx.buffered())
			}
			for id, want := range tt.results {
				select {
				case res := <-results[id]:
					got := "message"
					if res.err != nil {
						got = res.err.Error()
					}
					if got != want {
						t.Errorf("request %d: %s, want %s", id, got, want)
					}
				default:
					t.Errorf("request %d: no result, want %s", id, want)
				}
			}
		})
	}
}

func mustEncodeResponse(t testing.TB, resp ua.Response) []byte {
	typeID, err := ua.NewFourByteExpandedNodeID(0, ua.ServiceTypeID(resp)).Encode()
	if err != nil {
		t.Fatal(err)
	}
	body, err := ua.Encode(resp)
	if err != nil {
		t.Fatal(err)
	}
	return append(typeID, body...)
}

// FuzzReceive feeds a hostile server's bytes, cut into chunks by their own
// size fields, to the channel's reader path: it never panics, holds at most
// its limits per pending request, and a complete response decodes or fails
// without a panic.
func FuzzReceive(f *testing.F) {
	fault, _ := ua.Encode(&ua.ServiceFault{ResponseHeader: faultHeader(ua.StatusBadTimeout)})
	typeID, _ := ua.NewFourByteExpandedNodeID(0, ua.ServiceTypeID(&ua.ServiceFault{})).Encode()
	msg := append(typeID, fault...)
	f.Add(append(msgChunk('C', 1, 1, 1, msg[:4]), msgChunk('F', 1, 2, 1, msg[4:])...))
	f.Add(msgChunk('A', 1, 1, 2, []byte{0, 0, 0x80, 0x80, 3, 0, 0, 0, 'a', 'b', 'c'}))
	f.Add(append(msgChunk('C', 1, 1, 77, make([]byte, 100)), msgChunk('C', 1, 2, 78, make([]byte, 100))...))
	opn := append([]byte("OPNF\x00\x00\x00\x00\x05\x00\x00\x00"), asymmetricHeader{PolicyURI: secpolicy.None.URI()}.append(nil)...)
	opn = binary.LittleEndian.AppendUint32(opn, 1)
	opn = binary.LittleEndian.AppendUint32(opn, 3)
	opn = append(opn, msg...)
	binary.LittleEndian.PutUint32(opn[4:], uint32(len(opn)))
	f.Add(opn)
	f.Fuzz(func(t *testing.T, in []byte) {
		ch, rx, results := fuzzChannel()
		var seq sequenceCheck
		for len(in) >= 8 {
			size := int(binary.LittleEndian.Uint32(in[4:]))
			if size < 8 || size > len(in) {
				return
			}
			chunk := in[:size]
			in = in[size:]
			if err := ch.receive(chunk, rx, &seq); err != nil {
				return
			}
			if n := rx.buffered(); n > 3*4096 {
				t.Fatalf("%d bytes buffered for 3 requests of at most 4096", n)
			}
			for _, r := range results {
				select {
				case res := <-r:
					if res.err == nil {
						decodeResponse(res.message) // must not panic
					}
				default:
				}
			}
		}
	})
}

// FuzzDecodeResponse: any message body decodes or fails, without a panic.
func FuzzDecodeResponse(f *testing.F) {
	f.Add(mustEncodeResponse(f, &ua.ServiceFault{ResponseHeader: faultHeader(ua.StatusBadTimeout)}))
	f.Add(mustEncodeResponse(f, &ua.GetEndpointsResponse{ResponseHeader: faultHeader(0), Endpoints: []*ua.EndpointDescription{}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, err := decodeResponse(b)
		if err == nil && resp.Header() == nil {
			t.Fatal("response without header")
		}
	})
}

// A server flooding the channel with chunks no request awaits (issue 20,
// finding 1: endless intermediate chunks) is cut off after twice the chunk
// count of one message in a row; an awaited chunk starts the count anew.
func TestReassemblerBoundsDroppedChunks(t *testing.T) {
	r := newReassembler(10, 3)
	for i := range 6 {
		if _, _, err := r.add(uint32(100+i), 'C', []byte("x"), false); err != nil {
			t.Fatalf("dropped chunk %d: %v", i+1, err)
		}
	}
	if _, complete, err := r.add(1, 'F', []byte("ok"), true); err != nil || !complete {
		t.Fatalf("awaited chunk: complete %v, %v", complete, err)
	}
	for i := range 6 {
		if _, _, err := r.add(uint32(200+i), 'C', []byte("x"), false); err != nil {
			t.Fatalf("dropped chunk %d after an awaited one: %v", i+1, err)
		}
	}
	_, _, err := r.add(300, 'C', []byte("x"), false)
	if err == nil || err.Error() != "7 chunks in a row that no request awaits" {
		t.Fatalf("7th dropped chunk in a row: %v", err)
	}
	if got := newReassembler(0, 0).maxDropped; got != defaultMaxDropped {
		t.Errorf("without a chunk count limit, maxDropped %d, want %d", got, defaultMaxDropped)
	}
}

func TestSentRequestIDs(t *testing.T) {
	var ch Channel
	for range 5 {
		ch.nextRequestID()
	}
	for id, want := range map[uint32]bool{0: false, 1: true, 5: true, 6: false, 1005: false, 1 << 31: false} {
		if got := ch.sent(id); got != want {
			t.Errorf("after ids 1 to 5, sent(%d) = %v, want %v", id, got, want)
		}
	}
	ch.requestIDs.Store(math.MaxUint32)
	ch.nextRequestID() // wraps past 0 to 1
	for id, want := range map[uint32]bool{math.MaxUint32: true, 1: true, 2: false} {
		if got := ch.sent(id); got != want {
			t.Errorf("after the wrap, sent(%d) = %v, want %v", id, got, want)
		}
	}
}
