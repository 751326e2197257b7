package mqttproto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MQTT 3.1.1 control packet types (section 2.2.1).
const (
	typeConnect    = 1
	typeConnack    = 2
	typePublish    = 3
	typePuback     = 4
	typePingreq    = 12
	typePingresp   = 13
	typeDisconnect = 14
)

// CONNECT flags (section 3.1.2.3).
const (
	flagCleanSession = 0x02
	flagWill         = 0x04
	flagWillRetain   = 0x20
	flagPassword     = 0x40
	flagUsername     = 0x80
)

// maxRemaining is the largest remaining length four bytes can encode.
const maxRemaining = 268_435_455

// appendLength appends the variable-length remaining length (section 2.2.3).
func appendLength(b []byte, n int) []byte {
	for {
		d := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// appendString appends a UTF-8 string or binary field with its two-byte length (section 1.5.3).
func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendBytes(b, p []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
	return append(b, p...)
}

// connectPacket encodes a CONNECT (section 3.1).
func connectPacket(o *Options) ([]byte, error) {
	if len(o.ClientID) > 65535 || len(o.Username) > 65535 || len(o.Password) > 65535 {
		return nil, errors.New("client id, username or password longer than 65,535 bytes")
	}
	keepAlive := o.KeepAlive.Seconds()
	if keepAlive > 65535 {
		return nil, fmt.Errorf("keep-alive %v over 65,535 s", o.KeepAlive)
	}
	var flags byte
	remaining := 10 + 2 + len(o.ClientID)
	if o.CleanSession {
		flags |= flagCleanSession
	}
	if w := o.Will; w != nil {
		if w.QoS > 1 {
			return nil, fmt.Errorf("will qos %d: this client knows 0 and 1", w.QoS)
		}
		flags |= flagWill | w.QoS<<3
		if w.Retain {
			flags |= flagWillRetain
		}
		remaining += 2 + len(w.Topic) + 2 + len(w.Payload)
	}
	if o.Username != "" {
		flags |= flagUsername
		remaining += 2 + len(o.Username)
	}
	if o.Password != "" {
		flags |= flagPassword
		remaining += 2 + len(o.Password)
	}
	b := make([]byte, 0, remaining+5)
	b = append(b, typeConnect<<4)
	b = appendLength(b, remaining)
	b = appendString(b, "MQTT")
	b = append(b, 4, flags) // protocol level 4 is 3.1.1
	b = binary.BigEndian.AppendUint16(b, uint16(keepAlive))
	b = appendString(b, o.ClientID)
	if w := o.Will; w != nil {
		b = appendString(b, w.Topic)
		b = appendBytes(b, w.Payload)
	}
	if o.Username != "" {
		b = appendString(b, o.Username)
	}
	if o.Password != "" {
		b = appendString(b, o.Password)
	}
	return b, nil
}

// appendPublish encodes a PUBLISH (section 3.3); id is used for QoS 1.
func appendPublish(b []byte, m *Message, id uint16) []byte {
	first := byte(typePublish<<4) | m.QoS<<1
	if m.Retain {
		first |= 1
	}
	remaining := 2 + len(m.Topic) + len(m.Payload)
	if m.QoS > 0 {
		remaining += 2
	}
	b = append(b, first)
	b = appendLength(b, remaining)
	b = appendString(b, m.Topic)
	if m.QoS > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	return append(b, m.Payload...)
}

// publishSize is the encoded size of m's PUBLISH, to refuse what the
// remaining length cannot carry.
func publishSize(m *Message) int {
	n := 2 + len(m.Topic) + len(m.Payload)
	if m.QoS > 0 {
		n += 2
	}
	return n
}

// errMalformed is a packet from the broker this client cannot parse.
var errMalformed = errors.New("malformed packet from broker")

// readPacket reads one packet: its type, the flags of its first byte and
// its body, which stays valid until the next call (it is buf, grown).
func readPacket(r *bufio.Reader, buf []byte) (typ, flags byte, body, next []byte, err error) {
	first, err := r.ReadByte()
	if err != nil {
		return 0, 0, nil, buf, err
	}
	remaining := 0
	for i := 0; ; i++ {
		d, err := r.ReadByte()
		if err != nil {
			return 0, 0, nil, buf, unexpected(err)
		}
		remaining |= int(d&0x7f) << (7 * i)
		if d&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, 0, nil, buf, fmt.Errorf("%w: remaining length longer than 4 bytes", errMalformed)
		}
	}
	if cap(buf) < remaining {
		buf = make([]byte, remaining)
	}
	body = buf[:remaining]
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, 0, nil, buf, unexpected(err)
	}
	return first >> 4, first & 0x0f, body, buf, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
