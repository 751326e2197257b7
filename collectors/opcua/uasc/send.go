package uasc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors/opcua/secpolicy"
	"github.com/tagbridge/tagbridge/collectors/opcua/uastatus"
)

// Send sends req with a filled-in request header (handle, timestamp, timeout
// hint, authToken) and waits for its response. A ServiceFault or a Bad
// ServiceResult returns the response and a *uastatus.Error naming the
// service ("Read request: BadNodeIdUnknown (0x80340000)"). When the channel
// fails or is closed, the error wraps ErrChannelClosed and the cause.
func (ch *Channel) Send(ctx context.Context, req ua.Request, authToken *ua.NodeID) (ua.Response, error) {
	name := serviceName(req)
	ctx, cancel := ch.requestContext(ctx)
	defer cancel()
	res, err := ch.roundTrip(ctx, "MSG", req, authToken)
	if err != nil {
		return nil, fmt.Errorf("%s request: %w", name, err)
	}
	resp, err := decodeResponse(res.message)
	if err != nil {
		return nil, fmt.Errorf("%s request: %w", name, err)
	}
	if _, fault := resp.(*ua.ServiceFault); !fault && typeName(resp) != strings.TrimSuffix(typeName(req), "Request")+"Response" {
		return nil, fmt.Errorf("%s request: answered with %s", name, typeName(resp))
	}
	if h := resp.Header(); h != nil && uastatus.IsBad(h.ServiceResult) {
		return resp, &uastatus.Error{Step: name + " request", Code: h.ServiceResult}
	}
	if _, fault := resp.(*ua.ServiceFault); fault {
		return resp, &uastatus.Error{Step: name + " request", Code: ua.StatusBadUnexpectedError}
	}
	return resp, nil
}

// roundTrip sends req as a message of msgType and waits for the response's
// message bytes.
func (ch *Channel) roundTrip(ctx context.Context, msgType string, req ua.Request, authToken *ua.NodeID) (result, error) {
	select {
	case <-ch.done:
		return result{}, ch.Err()
	default:
	}
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	fillHeader(ctx, req, authToken, ch.handles.Add(1))
	msg, err := encodeRequest(req)
	if err != nil {
		return result{}, err
	}
	id := ch.nextRequestID()
	w := &waiter{msgType: msgType, result: make(chan result, 1)}
	ch.mu.Lock()
	if ch.err != nil {
		ch.mu.Unlock()
		return result{}, ch.err
	}
	ch.waiters[id] = w
	ch.mu.Unlock()
	forget := func() {
		ch.mu.Lock()
		delete(ch.waiters, id)
		ch.mu.Unlock()
	}
	if err := ch.writeMessage(msgType, id, msg); err != nil {
		forget()
		return result{}, err
	}
	select {
	case res := <-w.result:
		return res, res.err
	case <-ctx.Done():
		forget()
		return result{}, ctx.Err()
	}
}

func (ch *Channel) nextRequestID() uint32 {
	for {
		if id := ch.requestIDs.Add(1); id != 0 {
			return id
		}
	}
}

// fillHeader sets the request header the way Part 4, 7.33 asks, keeping
// what the caller asked for in diagnostics and audit.
func fillHeader(ctx context.Context, req ua.Request, authToken *ua.NodeID, handle uint32) {
	h := &ua.RequestHeader{}
	if old := req.Header(); old != nil {
		h.ReturnDiagnostics, h.AuditEntryID, h.AdditionalHeader = old.ReturnDiagnostics, old.AuditEntryID, old.AdditionalHeader
	}
	if h.AdditionalHeader == nil {
		h.AdditionalHeader = ua.NewExtensionObject(nil)
	}
	h.AuthenticationToken = authToken
	if h.AuthenticationToken == nil {
		h.AuthenticationToken = ua.NewTwoByteNodeID(0)
	}
	h.Timestamp = time.Now()
	h.RequestHandle = handle
	if d, ok := ctx.Deadline(); ok {
		h.TimeoutHint = uint32(min(max(time.Until(d).Milliseconds(), 1), math.MaxUint32))
	}
	req.SetHeader(h)
}

// sealRoom is what securing a chunk may add to it (padding and
// signature), so that sealing rarely grows the chunk's buffer.
const sealRoom = 1024

// writeMessage secures msg in chunks of msgType and sends them. A message
// beyond the server's limits is refused before anything is sent: the
// channel stays usable. A failed write ends the channel.
func (ch *Channel) writeMessage(msgType string, requestID uint32, msg []byte) error {
	ch.sendMu.Lock()
	defer ch.sendMu.Unlock()
	var secHeader []byte
	var crypto secpolicy.ChunkCrypto
	ch.mu.Lock()
	channelID := ch.channelID
	if msgType == "OPN" {
		secHeader, crypto = ch.asymHeader, ch.asym
	} else {
		if ch.cur == nil {
			ch.mu.Unlock()
			return errors.New("no security token")
		}
		secHeader = binary.LittleEndian.AppendUint32(nil, ch.cur.id)
		crypto = ch.cur.crypto
	}
	ch.mu.Unlock()

	hdrLen := channelHeaderSize + len(secHeader)
	maxPiece := crypto.MaxBody(int(ch.limits.SendChunkSize), hdrLen) - sequenceHeaderSize
	if maxPiece <= 0 {
		return fmt.Errorf("the server's receive buffer of %d bytes leaves no room for a message", ch.limits.SendChunkSize)
	}
	pieces := splitMessage(msg, maxPiece)
	if err := checkSendLimits(len(msg), len(pieces), ch.limits); err != nil {
		return err
	}
	// Sized to the message, not the chunk limit (often 64 KiB or more):
	// most requests, PublishRequests above all, are a few hundred bytes.
	buf := make([]byte, 0, min(int(ch.limits.SendChunkSize), hdrLen+sequenceHeaderSize+len(msg)+sealRoom))
	for i, piece := range pieces {
		chunkType := byte(chunkIntermediate)
		if i == len(pieces)-1 {
			chunkType = chunkFinal
		}
		seq := ch.seq.next()
		b := append(buf[:0], msgType...)
		b = append(b, chunkType, 0, 0, 0, 0)
		b = binary.LittleEndian.AppendUint32(b, channelID)
		b = append(b, secHeader...)
		b = binary.LittleEndian.AppendUint32(b, seq)
		b = binary.LittleEndian.AppendUint32(b, requestID)
		b = append(b, piece...)
		binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
		sealed, err := crypto.Seal(b, hdrLen)
		if err != nil {
			err = fmt.Errorf("secure %s chunk: %w", msgType, err)
			ch.fail(err)
			return err
		}
		if err := ch.conn.WriteChunk(sealed); err != nil {
			ch.fail(err)
			return err
		}
	}
	return nil
}
