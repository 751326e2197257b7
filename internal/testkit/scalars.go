package testkit

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
)

// Scalars are boxed samples of every type a Sample can carry unboxed
// (collectors.Sample.SetBits), n of each with random bits plus the edge
// values (zero, extremes, NaN, ±Inf, -0), for tests that hold an encoder's
// unboxed path to its boxed one.
func Scalars(n int) []collectors.Sample {
	r := rand.New(rand.NewPCG(16, 16))
	var out []collectors.Sample
	add := func(t collectors.Type, v any) {
		out = append(out, collectors.Sample{PLC: "p", Tag: "t", Node: "ns=1;s=t", Type: t, Value: v, StatusCode: collectors.StatusCode(r.Uint32() & 0xC0000000)})
	}
	edges := []uint64{0, 1, math.MaxUint64, 1 << 63, 1<<63 - 1, 0x7fc00000, 0xffc00000, 0x7f800000, 0xff800000, 0x80000000,
		0x7ff8000000000001, 0xfff8000000000000, 0x7ff0000000000000, 0xfff0000000000000}
	for i := range n + len(edges) {
		b := r.Uint64()
		if i < len(edges) {
			b = edges[i]
		}
		add(collectors.TypeBoolean, b&1 != 0)
		add(collectors.TypeSByte, int8(b))
		add(collectors.TypeByte, uint8(b))
		add(collectors.TypeInt16, int16(b))
		add(collectors.TypeUInt16, uint16(b))
		add(collectors.TypeInt32, int32(b))
		add(collectors.TypeUInt32, uint32(b))
		add(collectors.TypeInt64, int64(b))
		add(collectors.TypeUInt64, b)
		add(collectors.TypeFloat, math.Float32frombits(uint32(b)))
		add(collectors.TypeDouble, math.Float64frombits(b))
		add(collectors.TypeStatusCode, collectors.StatusCode(b))
		add(collectors.TypeDateTime, time.Unix(0, int64(b)).UTC())
	}
	return out
}
