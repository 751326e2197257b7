package uadecode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// readResponseWithDiagnostics is a ReadResponse whose ServiceDiagnostics are
// raw.
func readResponseWithDiagnostics(rawDiagnostics []byte) []byte {
	head, _ := ua.NewFourByteExpandedNodeID(0, id.ReadResponse_Encoding_DefaultBinary).Encode()
	return cat(head, make([]byte, 8), le32(1), le32(0), rawDiagnostics,
		le32(-1),           // StringTable
		[]byte{0, 0, 0},    // AdditionalHeader: empty extension object
		le32(-1), le32(-1)) // Results, DiagnosticInfos
}

// nestedWriteValues is a Variant holding an ExtensionObject (a WriteValue)
// whose DataValue holds a Variant holding an ExtensionObject ..., levels
// deep, with every length right.
func nestedWriteValues(levels int) []byte {
	const prefix = 2 + 4 + 4 + 1 + 1 // NodeId, AttributeId, IndexRange, DataValue mask, Variant mask
	const header = 4 + 1 + 4         // type id, encoding, length
	const innermost = 2 + 4 + 4 + 1  // NodeId, AttributeId, IndexRange, DataValue without value
	b := make([]byte, 0, 1+levels*(prefix+header)+innermost)
	b = append(b, byte(ua.TypeIDExtensionObject))
	for k := range levels {
		bodyLen := innermost + (levels-1-k)*(prefix+header)
		b = append(b, 1, 0)
		b = binary.LittleEndian.AppendUint16(b, id.WriteValue_Encoding_DefaultBinary)
		b = append(b, ua.ExtensionObjectBinary)
		b = binary.LittleEndian.AppendUint32(b, uint32(bodyLen))
		b = append(b, 0, 0) // NodeId i=0
		b = binary.LittleEndian.AppendUint32(b, uint32(ua.AttributeIDValue))
		b = append(b, 0xff, 0xff, 0xff, 0xff) // IndexRange null
		if k < levels-1 {
			b = append(b, ua.DataValueValue, byte(ua.TypeIDExtensionObject))
		} else {
			b = append(b, 0)
		}
	}
	return b
}

const (
	variantInt32Array  = byte(ua.TypeIDInt32) | ua.VariantArrayValues
	variantInt32Matrix = variantInt32Array | ua.VariantArrayDimensions
)

// TestHostileMessages: each attack of issue 20 finding 1 is refused with an
// error, fast, in little memory, without a panic.
func TestHostileMessages(t *testing.T) {
	cases := []struct {
		name string
		msg  func() []byte
		want ua.StatusCode
		// gopcuaPanics: ua.DecodeService panics on it (run only where that
		// is recoverable; the others overflow the stack or exhaust memory).
		gopcuaPanics bool
	}{
		{"variant array length -2", func() []byte { return readResponseWith(t, cat([]byte{variantInt32Array}, le32(-2))) }, ua.StatusBadDecodingError, true},
		{"2,000,000 nested variants in 2 MB", func() []byte {
			return readResponseWith(t, append(bytes.Repeat([]byte{byte(ua.TypeIDVariant)}, 2_000_000), 0))
		}, ua.StatusBadEncodingLimitsExceeded, false},
		{"dimensions whose product wraps to 0", func() []byte {
			return readResponseWith(t, cat([]byte{variantInt32Matrix}, le32(0), le32(2), le32(1<<16), le32(1<<16)))
		}, ua.StatusBadDecodingError, false},
		{"dimensions whose product wraps to -1 on a null array", func() []byte {
			return readResponseWith(t, cat([]byte{variantInt32Matrix}, le32(-1), le32(2), le32(1431655765), le32(3)))
		}, ua.StatusBadDecodingError, false},
		{"a dimension of 2^31-1 (product wraps to 0)", func() []byte {
			return readResponseWith(t, cat([]byte{variantInt32Matrix}, le32(0), le32(3), le32(math.MaxInt32), le32(1<<16), le32(1<<16)))
		}, ua.StatusBadDecodingError, false},
		{"a dimension of 2^31-1 in a 2-element array", func() []byte {
			return readResponseWith(t, cat([]byte{variantInt32Matrix}, le32(2), le32(1), le32(2), le32(2), le32(math.MaxInt32), le32(1)))
		}, ua.StatusBadDecodingError, false},
		{"2^31-1 dimensions", func() []byte {
			return readResponseWith(t, cat([]byte{variantInt32Matrix}, le32(1), le32(1), le32(math.MaxInt32), le32(1)))
		}, ua.StatusBadEncodingLimitsExceeded, false},
		{"string length 2^31-1 with 10 bytes left", func() []byte {
			b := readResponseWith(t, cat([]byte{byte(ua.TypeIDString)}, le32(math.MaxInt32)))
			return append(b[:len(b)-4], make([]byte, 10)...)
		}, ua.StatusBadEncodingLimitsExceeded, false},
		{"string length 2^30 with 10 bytes left", func() []byte {
			b := readResponseWith(t, cat([]byte{byte(ua.TypeIDString)}, le32(1<<25)))
			return append(b[:len(b)-4], make([]byte, 10)...)
		}, ua.StatusBadDecodingError, false},
		{"variant array of 2^24 elements in 20 bytes", func() []byte {
			return readResponseWith(t, cat([]byte{byte(ua.TypeIDVariant) | ua.VariantArrayValues}, le32(1<<24-1), make([]byte, 20)))
		}, ua.StatusBadDecodingError, false},
		{"results array of 2^31-1 in a short message", func() []byte {
			b := readResponseWith(t, []byte{0})
			return append(b[:len(b)-4-2-4], le32(math.MaxInt32)...)
		}, ua.StatusBadEncodingLimitsExceeded, false},
		{"2,000,000 nested DiagnosticInfos", func() []byte {
			return readResponseWithDiagnostics(append(bytes.Repeat([]byte{ua.DiagnosticInfoInnerDiagnosticInfo}, 2_000_000), 0))
		}, ua.StatusBadEncodingLimitsExceeded, false},
		{"100,000 nested ExtensionObjects in Variants", func() []byte { return readResponseWith(t, nestedWriteValues(100_000)) },
			ua.StatusBadEncodingLimitsExceeded, false},
		{"extension object length past the end", func() []byte {
			return readResponseWith(t, cat([]byte{byte(ua.TypeIDExtensionObject), 0, 0, 1}, le32(math.MaxInt32)))
		}, ua.StatusBadDecodingError, false},
		{"invalid node id type", func() []byte { return readResponseWith(t, []byte{byte(ua.TypeIDNodeID), 6, 0}) }, ua.StatusBadDecodingError, false},
		{"invalid variant type", func() []byte { return readResponseWith(t, []byte{30}) }, ua.StatusBadDecodingError, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := c.msg()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, v, err := Service(msg)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			allocated := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d-byte message: %v in %v, %d bytes allocated", len(msg), err, took, allocated)
			if err == nil {
				t.Fatalf("decoded %T without error", v)
			}
			if !errors.Is(err, c.want) {
				t.Errorf("err = %v, want %v", err, c.want)
			}
			if v != nil {
				t.Errorf("returned a value (%T) with the error", v)
			}
			if allocated > 10<<20 {
				t.Errorf("allocated %d bytes, want < 10 MiB", allocated)
			}
			if took > 2*time.Second {
				t.Errorf("took %v", took)
			}
			if c.gopcuaPanics {
				requirePanics(t, func() { _, _, _ = ua.DecodeService(msg) })
			}
		})
	}
}

// requirePanics shows that the case is a real attack on gopcua's decoder.
func requirePanics(t *testing.T, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("gopcua's decoder did not panic: the case no longer shows the attack")
		}
	}()
	f()
}

// TestDepthLimit: nesting up to MaxDepth decodes, one level more does not.
func TestDepthLimit(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxDepth = 20
	// ReadResponse (1), DataValue (2), then Variants.
	ok := readResponseWith(t, append(bytes.Repeat([]byte{byte(ua.TypeIDVariant)}, lim.MaxDepth-3), 0))
	if _, _, err := lim.Service(ok); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	tooDeep := readResponseWith(t, append(bytes.Repeat([]byte{byte(ua.TypeIDVariant)}, lim.MaxDepth-2), 0))
	if _, _, err := lim.Service(tooDeep); !errors.Is(err, ua.StatusBadEncodingLimitsExceeded) {
		t.Fatalf("past the limit: err = %v", err)
	}
	requireSameAsGopcua(t, ok)
}

// TestLimits: each limit refuses what exceeds it and accepts what does not.
func TestLimits(t *testing.T) {
	msg := encodeService(t, publishResponse(100))
	cases := []struct {
		name string
		set  func(*Limits)
	}{
		{"MaxArrayLength", func(l *Limits) { l.MaxArrayLength = 99 }},
		{"MaxStringLength", func(l *Limits) { l.MaxStringLength = 1 }},
		{"MaxAlloc", func(l *Limits) { l.MaxAlloc = 10_000 }},
		{"MaxDepth", func(l *Limits) { l.MaxDepth = 5 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lim := DefaultLimits()
			if _, _, err := lim.Service(msg); err != nil {
				t.Fatalf("default limits: %v", err)
			}
			c.set(&lim)
			_, _, err := lim.Service(msg)
			if !errors.Is(err, ua.StatusBadEncodingLimitsExceeded) {
				t.Fatalf("err = %v, want BadEncodingLimitsExceeded", err)
			}
		})
	}
	t.Run("MaxArrayDimensions", func(t *testing.T) {
		lim := DefaultLimits()
		lim.MaxArrayDimensions = 2
		cube := readResponseWith(t, cat([]byte{variantInt32Matrix}, le32(1), le32(1), le32(3), le32(1), le32(1), le32(1)))
		if _, _, err := lim.Service(cube); !errors.Is(err, ua.StatusBadEncodingLimitsExceeded) {
			t.Fatalf("err = %v", err)
		}
		requireSameAsGopcua(t, cube)
	})
}

// TestNoAliasing: decoded byte strings do not share the message's memory,
// which the channel may reuse for the next message.
func TestNoAliasing(t *testing.T) {
	msg := encodeService(t, &ua.CreateSessionResponse{
		ResponseHeader: &ua.ResponseHeader{ServiceDiagnostics: &ua.DiagnosticInfo{}, AdditionalHeader: ua.NewExtensionObject(nil)},
		SessionID:      ua.NewByteStringNodeID(1, []byte("session")), AuthenticationToken: ua.NewStringNodeID(1, "token"),
		ServerNonce: []byte("nonce"), ServerSignature: &ua.SignatureData{Signature: []byte("sig")},
	})
	_, v, err := Service(msg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range msg {
		msg[i] = 0xAA
	}
	r := v.(*ua.CreateSessionResponse)
	if string(r.ServerNonce) != "nonce" || string(r.ServerSignature.Signature) != "sig" ||
		r.SessionID.StringID() != "c2Vzc2lvbg==" || r.AuthenticationToken.StringID() != "token" {
		t.Fatalf("decoded values changed with the message buffer: %s", dump(r))
	}
}

// TestNestedNonCanonicalVariants: Variants that gopcua builds again from
// their bytes (here a scalar with the dimensions flag), nested, each around
// the same large array, are decoded again at every level; the budget
// charges for it, so time and memory stay within it.
func TestNestedNonCanonicalVariants(t *testing.T) {
	const levels, n = 90, 20_000
	inner := cat([]byte{variantInt32Matrix}, le32(n), make([]byte, 4*n), le32(0))
	msg := readResponseWith(t, append(bytes.Repeat([]byte{byte(ua.TypeIDVariant) | ua.VariantArrayDimensions}, levels), inner...))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, _, err := Service(msg)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d-byte message: %v in %v, %d bytes allocated", len(msg), err, took, allocated)
	if err != nil && !errors.Is(err, ua.StatusBadEncodingLimitsExceeded) {
		t.Errorf("err = %v, want success or the allocation budget exceeded", err)
	}
	if err == nil {
		requireSameAsGopcua(t, msg)
	}
	if budget := 200*len(msg) + 1<<20; allocated > uint64(budget) {
		t.Errorf("allocated %d bytes, more than the budget of %d", allocated, budget)
	}
	if took > 5*time.Second { // gopcua decoding again is slow under the race detector
		t.Errorf("took %v", took)
	}
}
