package uasc

import (
	"crypto/sha1"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/tagbridge/tagbridge/collectors/opcua/uatcp"
)

// Chunk layout (Part 6, 6.7.2): message header (8 bytes), secure channel id
// (4), security header (asymmetric for OPN, the token id for MSG and CLO),
// then the body: sequence number (4), request id (4), message bytes; padding
// and signature are the chunk crypto's.
const (
	channelHeaderSize  = uatcp.HeaderSize + 4
	symmetricHdrSize   = channelHeaderSize + 4
	sequenceHeaderSize = 8
)

// Chunk types: the last chunk of a message, an intermediate one, and the
// abort of a message whose remaining chunks will not come.
const (
	chunkFinal        = 'F'
	chunkIntermediate = 'C'
	chunkAbort        = 'A'
)

// asymmetricHeader is the security header of OPN chunks (Part 6, 6.7.2.3).
type asymmetricHeader struct {
	PolicyURI          string
	SenderCertificate  []byte // DER, possibly followed by its chain; nil for None
	ReceiverThumbprint []byte // SHA-1 of the receiver's certificate; nil for None
}

func appendByteString(b, s []byte) []byte {
	if s == nil {
		return binary.LittleEndian.AppendUint32(b, math.MaxUint32) // -1: null
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func (h asymmetricHeader) append(b []byte) []byte {
	b = appendByteString(b, []byte(h.PolicyURI))
	b = appendByteString(b, h.SenderCertificate)
	return appendByteString(b, h.ReceiverThumbprint)
}

// parseAsymmetricHeader reads the security header of an OPN chunk starting
// at b and returns it with its encoded length. Lengths are bounded by b.
func parseAsymmetricHeader(b []byte) (asymmetricHeader, int, error) {
	var h asymmetricHeader
	pos := 0
	field := func(name string) ([]byte, error) {
		if len(b)-pos < 4 {
			return nil, fmt.Errorf("asymmetric security header: %s length cut off", name)
		}
		n := int32(binary.LittleEndian.Uint32(b[pos:]))
		pos += 4
		if n < 0 {
			return nil, nil
		}
		if int(n) > len(b)-pos {
			return nil, fmt.Errorf("asymmetric security header: %s of %d bytes in a chunk with %d left", name, n, len(b)-pos)
		}
		v := b[pos : pos+int(n)]
		pos += int(n)
		return v, nil
	}
	uri, err := field("security policy URI")
	if err != nil {
		return h, 0, err
	}
	h.PolicyURI = string(uri)
	if h.SenderCertificate, err = field("sender certificate"); err != nil {
		return h, 0, err
	}
	if h.ReceiverThumbprint, err = field("receiver certificate thumbprint"); err != nil {
		return h, 0, err
	}
	return h, pos, nil
}

// leafCertificate returns the first certificate of a DER chain.
func leafCertificate(chain []byte) ([]byte, error) {
	var raw asn1.RawValue
	rest, err := asn1.Unmarshal(chain, &raw)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return chain[:len(chain)-len(rest)], nil
}

// thumbprint is the SHA-1 of the leaf certificate of a chain, as the
// asymmetric security header names the receiver's certificate.
func thumbprint(chain []byte) ([]byte, error) {
	leaf, err := leafCertificate(chain)
	if err != nil {
		return nil, err
	}
	sum := sha1.Sum(leaf)
	return sum[:], nil
}

// Sequence numbers (Part 6, 6.7.2.4): they increase by one per chunk sent on
// the channel, whatever its message type. Legacy numbering (the RSA
// policies) wraps around only once they are above MaxUint32-1024, to a value
// below 1024; the ECC policies' numbering starts at 0 and wraps from
// MaxUint32 to 0 (secpolicy.LegacySequenceNumbers).
const sequenceWrapAbove = math.MaxUint32 - 1024

// nextSequenceNumber is the number of the chunk after the one numbered n.
func nextSequenceNumber(n uint32) uint32 {
	if n > sequenceWrapAbove {
		return 1
	}
	return n + 1
}

// sequenceNumbers numbers the chunks we send.
type sequenceNumbers struct {
	last   uint32
	sent   bool
	legacy bool
}

// next is the number of the next chunk.
func (s *sequenceNumbers) next() uint32 {
	switch {
	case s.legacy:
		s.last = nextSequenceNumber(s.last)
	case !s.sent:
		s.last = 0
	default:
		s.last++ // from MaxUint32 to 0
	}
	s.sent = true
	return s.last
}

// sequenceCheck follows the server's sequence numbers; strict refuses the
// legacy wrap to below 1024 (ECC policies).
type sequenceCheck struct {
	last    uint32
	started bool
	strict  bool
}

// errSequence is a received sequence number that is not the next one: a
// chunk was lost, replayed or reordered, which TCP never does by itself.
var errSequence = errors.New("sequence number out of order")

// accept checks that n follows the last number received.
func (s *sequenceCheck) accept(n uint32) error {
	if !s.started {
		s.last, s.started = n, true
		return nil
	}
	ok := n == s.last+1 && s.last != math.MaxUint32
	switch {
	case s.strict:
		ok = n == s.last+1 // from MaxUint32 to 0 included
	case s.last > sequenceWrapAbove && n < 1024:
		ok = true
	}
	if !ok {
		return fmt.Errorf("%w: %d after %d", errSequence, n, s.last)
	}
	s.last = n
	return nil
}

// splitMessage cuts msg into pieces of at most maxPiece bytes; an empty
// message is one empty piece.
func splitMessage(msg []byte, maxPiece int) [][]byte {
	if len(msg) == 0 {
		return [][]byte{msg}
	}
	pieces := make([][]byte, 0, (len(msg)+maxPiece-1)/maxPiece)
	for len(msg) > 0 {
		n := min(maxPiece, len(msg))
		pieces = append(pieces, msg[:n])
		msg = msg[n:]
	}
	return pieces
}

// checkSendLimits says why a message of size bytes in chunks chunks may
// not be sent within the server's limits (0 = no limit).
func checkSendLimits(size, chunks int, lim uatcp.Negotiated) error {
	if lim.SendMessageSize != 0 && uint64(size) > uint64(lim.SendMessageSize) {
		return fmt.Errorf("message of %d bytes exceeds the server's max message size of %d bytes", size, lim.SendMessageSize)
	}
	if lim.SendChunkCount != 0 && uint64(chunks) > uint64(lim.SendChunkCount) {
		return fmt.Errorf("message of %d bytes needs %d chunks, the server accepts at most %d", size, chunks, lim.SendChunkCount)
	}
	return nil
}
