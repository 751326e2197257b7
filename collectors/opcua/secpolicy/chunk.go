package secpolicy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// sequenceHeaderLen is the length of the sequence header (sequence number,
// request id) every chunk body starts with.
const sequenceHeaderLen = 8

// messageHeaderLen is the length of the message header: type, chunk type,
// size.
const messageHeaderLen = 8

// checkSealInput bounds hdrLen by the chunk before Seal writes into it.
func checkSealInput(chunk []byte, hdrLen int) error {
	if hdrLen < messageHeaderLen || hdrLen > len(chunk) {
		return fmt.Errorf("seal chunk: header length %d outside the chunk of %d bytes", hdrLen, len(chunk))
	}
	return nil
}

// checkOpenInput checks what Open reads before it trusts anything: the
// header length lies within the chunk and the size field is the chunk's.
func checkOpenInput(chunk []byte, hdrLen int) error {
	if len(chunk) < messageHeaderLen {
		return fmt.Errorf("open chunk: %d bytes, shorter than a message header", len(chunk))
	}
	if size := binary.LittleEndian.Uint32(chunk[4:8]); uint64(size) != uint64(len(chunk)) {
		return fmt.Errorf("open chunk: size field says %d bytes, chunk has %d", size, len(chunk))
	}
	if hdrLen < messageHeaderLen || hdrLen > len(chunk) {
		return fmt.Errorf("open chunk: header length %d outside the chunk of %d bytes", hdrLen, len(chunk))
	}
	return nil
}

// checkBody makes sure what Open returns holds at least a sequence header.
func checkBody(body []byte) ([]byte, error) {
	if len(body) < sequenceHeaderLen {
		return nil, fmt.Errorf("open chunk: body of %d bytes, shorter than a sequence header", len(body))
	}
	return body, nil
}

// putSize writes the final chunk size into the message header.
func putSize(chunk []byte, size int) error {
	if size > math.MaxUint32 {
		return fmt.Errorf("seal chunk: %d bytes do not fit the size field", size)
	}
	binary.LittleEndian.PutUint32(chunk[4:8], uint32(size))
	return nil
}

// Padding (Part 6 6.7.2.5): PaddingSize byte, PaddingSize bytes of value
// PaddingSize, and, when the encrypting key is larger than 2048 bits, an
// ExtraPaddingSize byte holding the high byte of the padding size (the
// PaddingSize byte and the padding bytes then hold its low byte).

// paddingLen is the length of the whole padding field (size byte, padding
// bytes, extra size byte) that makes n+paddingLen a multiple of block.
func paddingLen(n, block int, extra bool) int {
	fixed := 1
	if extra {
		fixed = 2
	}
	pad := 0
	if rem := (n + fixed) % block; rem != 0 {
		pad = block - rem
	}
	return fixed + pad
}

// appendPadding appends a padding field of fieldLen bytes.
func appendPadding(b []byte, fieldLen int, extra bool) []byte {
	n := fieldLen - 1
	if extra {
		n--
	}
	for range n + 1 {
		b = append(b, byte(n))
	}
	if extra {
		b = append(b, byte(n>>8))
	}
	return b
}

var errPadding = errors.New("bad padding")

// stripPadding removes the padding field from the end of p (signature
// already removed) and checks every padding byte.
func stripPadding(p []byte, extra bool) ([]byte, error) {
	fixed := 1
	if extra {
		fixed = 2
	}
	if len(p) < fixed {
		return nil, fmt.Errorf("open chunk: %w: no room for the padding size", errPadding)
	}
	n := int(p[len(p)-fixed])
	if extra {
		n |= int(p[len(p)-1]) << 8
	}
	fieldLen := n + fixed
	if fieldLen > len(p) {
		return nil, fmt.Errorf("open chunk: %w: padding of %d bytes in %d bytes of plaintext", errPadding, n, len(p))
	}
	for _, c := range p[len(p)-fieldLen : len(p)-fixed+1] {
		if c != byte(n) {
			return nil, fmt.Errorf("open chunk: %w: a padding byte differs from the padding size", errPadding)
		}
	}
	return p[:len(p)-fieldLen], nil
}

// passThrough is the ChunkCrypto of mode None: chunks travel as they are.
type passThrough struct{}

func (passThrough) MaxBody(chunkSize, hdrLen int) int { return max(chunkSize-hdrLen, 0) }

func (passThrough) Seal(chunk []byte, hdrLen int) ([]byte, error) {
	if err := checkSealInput(chunk, hdrLen); err != nil {
		return nil, err
	}
	if err := putSize(chunk, len(chunk)); err != nil {
		return nil, err
	}
	return chunk, nil
}

func (passThrough) Open(chunk []byte, hdrLen int) ([]byte, error) {
	if err := checkOpenInput(chunk, hdrLen); err != nil {
		return nil, err
	}
	return checkBody(chunk[hdrLen:])
}
