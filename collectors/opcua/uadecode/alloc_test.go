package uadecode

import (
	"bytes"
	"reflect"
	"runtime"
	"testing"

	"github.com/gopcua/opcua/ua"
)

// TestAllocationEstimate: the budget's estimate follows what decoding
// really allocates, so MaxAlloc bounds memory.
func TestAllocationEstimate(t *testing.T) {
	msgs := map[string][]byte{
		"PublishResponse of 1,000 items":         encodeService(t, publishResponse(1000)),
		"100,000 DataValues without fields":      readResponseMany(t, 100_000, []byte{0}),
		"100,000 DataValues with a status":       readResponseMany(t, 100_000, []byte{ua.DataValueStatusCode, 0, 0, 0, 0}),
		"Variant array of 100,000 null Variants": readResponseWith(t, cat([]byte{byte(ua.TypeIDVariant) | ua.VariantArrayValues}, le32(100_000), make([]byte, 100_000))),
	}
	for name, msg := range msgs {
		t.Run(name, func(t *testing.T) {
			if _, _, err := Service(msg); err != nil { // plans and registries built
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			d := newDecoder(msg, DefaultLimits())
			typeID := d.expandedNodeID()
			typ := serviceType(msg[:d.pos], typeID.NodeID)
			planOf(typ).decode(d, reflect.New(typ).Elem())
			runtime.ReadMemStats(&after)
			if d.err != nil {
				t.Fatal(d.err)
			}
			estimate := float64(d.allocLimit - d.budget)
			actual := float64(after.TotalAlloc - before.TotalAlloc)
			t.Logf("%d bytes: estimate %.0f, allocated %.0f (%.0f× the message)", len(msg), estimate, actual, actual/float64(len(msg)))
			// Over-estimates only make the budget stricter (a null Variant
			// boxes no value: 36 bytes allocated for 52 estimated on 386).
			if actual > 1.3*estimate || actual < 0.5*estimate {
				t.Errorf("estimate %.0f bytes, allocated %.0f", estimate, actual)
			}
		})
	}
}

// readResponseMany is a ReadResponse of n results, each encoded as dv.
func readResponseMany(t testing.TB, n int, dv []byte) []byte {
	b := encodeService(t, &ua.ReadResponse{ResponseHeader: &ua.ResponseHeader{AdditionalHeader: ua.NewExtensionObject(nil), ServiceDiagnostics: &ua.DiagnosticInfo{}}})
	b = append(b[:len(b)-8], le32(int32(n))...)
	b = append(b, bytes.Repeat(dv, n)...)
	return append(b, le32(-1)...)
}
