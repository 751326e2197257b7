package uasc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tagbridge/tagbridge/collectors/opcua/secpolicy"
	"github.com/tagbridge/tagbridge/collectors/opcua/uatcp"
)

// read is the channel's one reader: it reads chunks until the connection
// ends, checks them and dispatches complete messages to their waiters.
func (ch *Channel) read() {
	defer close(ch.readerExited)
	rx := newReassembler(ch.limits.ReceiveMessageSize, ch.limits.ReceiveChunkCount)
	seq := sequenceCheck{strict: !secpolicy.LegacySequenceNumbers(ch.cfg.Policy)}
	for {
		chunk, err := ch.conn.ReadChunk()
		if err != nil {
			ch.fail(err)
			return
		}
		if err := ch.receive(chunk, rx, &seq); err != nil {
			ch.fail(err)
			return
		}
	}
}

// receive handles one chunk; an error ends the channel.
func (ch *Channel) receive(chunk []byte, rx *reassembler, seq *sequenceCheck) error {
	msgType := string(chunk[:3])
	if len(chunk) < symmetricHdrSize {
		return fmt.Errorf("%s chunk of %d bytes is too short", msgType, len(chunk))
	}
	channelID := binary.LittleEndian.Uint32(chunk[8:])
	ch.mu.Lock()
	ourID := ch.channelID
	ch.mu.Unlock()
	if ourID != 0 && channelID != ourID {
		return fmt.Errorf("%s chunk for channel %d, ours is %d", msgType, channelID, ourID)
	}
	var body []byte
	var err error
	switch msgType {
	case "OPN":
		body, err = ch.openAsymmetric(chunk)
	case "MSG":
		body, err = ch.openSymmetric(chunk, seq.last)
	default:
		return fmt.Errorf("server sent an unexpected %s message", msgType)
	}
	if err != nil {
		return err
	}
	if len(body) < sequenceHeaderSize {
		return fmt.Errorf("%s chunk without sequence header", msgType)
	}
	if err := seq.accept(binary.LittleEndian.Uint32(body)); err != nil {
		return err
	}
	requestID := binary.LittleEndian.Uint32(body[4:])
	payload := body[sequenceHeaderSize:]

	ch.mu.Lock()
	w := ch.waiters[requestID]
	if w != nil && w.msgType != msgType {
		ch.mu.Unlock()
		return fmt.Errorf("response to request %d came as %s, not %s", requestID, msgType, w.msgType)
	}
	ch.mu.Unlock()
	if w == nil && !ch.sent(requestID) {
		// A late response is fine; one to a request never made is not.
		return fmt.Errorf("%s chunk for request %d, which we never sent", msgType, requestID)
	}
	got, complete, err := rx.add(requestID, chunk[3], payload, w != nil)
	if err != nil {
		return fmt.Errorf("%s chunk: %w", msgType, err)
	}
	if len(rx.partial) > 0 {
		rx.forget(ch.awaited)
	}
	if !complete {
		if w == nil {
			ch.log.Debug().Uint32("request_id", requestID).Msg("dropped a response chunk no request awaits")
		}
		return nil
	}
	res := result{message: got.message, arrived: time.Now(), err: got.err}
	if got.aborted {
		res = result{err: fmt.Errorf("server aborted the response: %w", uatcp.ParseAbort(got.message))}
	}
	ch.mu.Lock()
	if ch.waiters[requestID] == w {
		delete(ch.waiters, requestID)
		w.result <- res
	}
	ch.mu.Unlock()
	return nil
}

// sent reports whether requestID is one of ours: ids count up from 1, so
// it is at most the last one, modulo 2³² (within 2³¹ of it).
func (ch *Channel) sent(requestID uint32) bool {
	return requestID != 0 && int32(ch.requestIDs.Load()-requestID) >= 0
}

func (ch *Channel) awaited(requestID uint32) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.waiters[requestID] != nil
}

// openAsymmetric checks and opens an OPN chunk.
func (ch *Channel) openAsymmetric(chunk []byte) ([]byte, error) {
	h, n, err := parseAsymmetricHeader(chunk[channelHeaderSize:])
	if err != nil {
		return nil, err
	}
	if h.PolicyURI != ch.cfg.Policy.URI() {
		return nil, fmt.Errorf("OPN chunk under security policy %q, ours is %q", h.PolicyURI, ch.cfg.Policy.URI())
	}
	if ch.secured {
		leaf, err := leafCertificate(h.SenderCertificate)
		if err != nil {
			return nil, fmt.Errorf("OPN chunk: sender certificate: %w", err)
		}
		if !bytes.Equal(leaf, ch.remoteLeaf) {
			return nil, errors.New("OPN chunk signed with another certificate than the endpoint's")
		}
		if !bytes.Equal(h.ReceiverThumbprint, ch.localThumb) {
			return nil, errors.New("OPN chunk for another certificate than ours")
		}
	}
	body, err := ch.asym.Open(chunk, channelHeaderSize+n)
	if err != nil {
		return nil, fmt.Errorf("OPN chunk: %w", err)
	}
	return body, nil
}

// openSymmetric checks and opens a MSG chunk under the current token, or
// under the previous one while it is still accepted; prevSeq, the last
// sequence number received, is what the AEAD policies bind it to.
func (ch *Channel) openSymmetric(chunk []byte, prevSeq uint32) ([]byte, error) {
	id := binary.LittleEndian.Uint32(chunk[channelHeaderSize:])
	ch.mu.Lock()
	cur, prev := ch.cur, ch.prev
	ch.mu.Unlock()
	var crypto secpolicy.ChunkCrypto
	switch {
	case cur != nil && id == cur.id:
		crypto = cur.crypto
	case prev != nil && id == prev.id && time.Now().Before(acceptUntil(prev.arrived, prev.lifetime)):
		crypto = prev.crypto
	case prev != nil && id == prev.id:
		return nil, fmt.Errorf("MSG chunk under token %d, which expired more than a quarter of its lifetime ago", id)
	default:
		return nil, fmt.Errorf("MSG chunk under unknown token %d", id)
	}
	var body []byte
	var err error
	if b, ok := crypto.(secpolicy.SequenceBound); ok {
		body, err = b.OpenAfter(chunk, symmetricHdrSize, prevSeq)
	} else {
		body, err = crypto.Open(chunk, symmetricHdrSize)
	}
	if err != nil {
		return nil, fmt.Errorf("MSG chunk: %w", err)
	}
	return body, nil
}
