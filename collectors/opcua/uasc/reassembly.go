package uasc

import (
	"fmt"
)

// reassembler joins the chunks of received messages by request id, within
// our limits. It keeps partial messages only for the request ids it is told
// are awaited: chunks for any other id are dropped as they come, so a server
// sending endless intermediate chunks under new request ids costs no
// memory, and the number of partial messages is bounded by our own pending
// requests. Dropped chunks are bounded too: a late response to a request
// that timed out is no longer than one message, so more chunks in a row
// than maxDropped is a server flooding the channel.
type reassembler struct {
	maxSize    uint32 // largest message, sum of its chunks' payloads; 0 = no limit
	maxChunks  uint32 // most chunks per message; 0 = no limit
	partial    map[uint32]*partialMessage
	dropped    int // chunks dropped since the last one awaited
	maxDropped int
}

// defaultMaxDropped bounds the chunks dropped in a row when the chunk count
// is not limited.
const defaultMaxDropped = 4096

type partialMessage struct {
	buf    []byte
	chunks uint32
}

func newReassembler(maxSize, maxChunks uint32) *reassembler {
	maxDropped := defaultMaxDropped
	if maxChunks != 0 {
		maxDropped = 2 * int(maxChunks)
	}
	return &reassembler{maxSize: maxSize, maxChunks: maxChunks, partial: make(map[uint32]*partialMessage), maxDropped: maxDropped}
}

// assembled is what one chunk completed.
type assembled struct {
	requestID uint32
	message   []byte // the whole message, on its final chunk
	aborted   bool   // an abort chunk: message holds its status and reason
	err       error  // the message broke our limits: fails its request only
}

// add takes the payload (after the sequence header) of one chunk of type
// chunkType for requestID. awaited tells whether a request with that id is
// pending. It returns a completed message (or its failure) and whether there
// is one; an unknown chunk type is an error of the channel.
func (r *reassembler) add(requestID uint32, chunkType byte, payload []byte, awaited bool) (assembled, bool, error) {
	switch chunkType {
	case chunkFinal, chunkIntermediate, chunkAbort:
	default:
		return assembled{}, false, fmt.Errorf("unknown chunk type %q", chunkType)
	}
	p := r.partial[requestID]
	if !awaited {
		delete(r.partial, requestID)
		if r.dropped++; r.dropped > r.maxDropped {
			return assembled{}, false, fmt.Errorf("%d chunks in a row that no request awaits", r.dropped)
		}
		return assembled{}, false, nil
	}
	r.dropped = 0
	if chunkType == chunkAbort {
		delete(r.partial, requestID)
		return assembled{requestID: requestID, message: payload, aborted: true}, true, nil
	}
	if p == nil && chunkType == chunkFinal {
		if err := r.check(uint64(len(payload)), 1); err != nil {
			return assembled{requestID: requestID, err: err}, true, nil
		}
		return assembled{requestID: requestID, message: payload}, true, nil
	}
	if p == nil {
		p = &partialMessage{}
		r.partial[requestID] = p
	}
	if err := r.check(uint64(len(p.buf))+uint64(len(payload)), uint64(p.chunks)+1); err != nil {
		delete(r.partial, requestID)
		return assembled{requestID: requestID, err: err}, true, nil
	}
	p.buf = append(p.buf, payload...)
	p.chunks++
	if chunkType == chunkIntermediate {
		return assembled{}, false, nil
	}
	delete(r.partial, requestID)
	return assembled{requestID: requestID, message: p.buf}, true, nil
}

func (r *reassembler) check(size, chunks uint64) error {
	if r.maxSize != 0 && size > uint64(r.maxSize) {
		return fmt.Errorf("response exceeds our max message size of %d bytes", r.maxSize)
	}
	if r.maxChunks != 0 && chunks > uint64(r.maxChunks) {
		return fmt.Errorf("response exceeds our max chunk count of %d", r.maxChunks)
	}
	return nil
}

// forget drops the partial messages of requests no longer awaited (timed
// out while their response was arriving).
func (r *reassembler) forget(awaited func(requestID uint32) bool) {
	for id := range r.partial {
		if !awaited(id) {
			delete(r.partial, id)
		}
	}
}

// buffered is the number of bytes held in partial messages.
func (r *reassembler) buffered() int {
	n := 0
	for _, p := range r.partial {
		n += len(p.buf)
	}
	return n
}
