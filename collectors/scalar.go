package collectors

import (
	"math"
	"time"
)

// A scalar number in a Sample's Bits instead of its Value: a float64 or
// int64 boxed into an interface costs an allocation per value, which at
// 100,000 values a second is most of the collector's garbage.

// SetBits sets s's value to a scalar of type t held in bits, and Value to
// nil. bits holds a Boolean as 0 or 1, a signed integer (SByte, Int16,
// Int32, Int64) as its int64 value, an unsigned one (Byte ... UInt64) as
// its uint64 value, a Float as math.Float32bits, a Double as
// math.Float64bits, a StatusCode as its code, and a DateTime as
// nanoseconds since 1970 (UTC). Other types cannot be unboxed.
func (s *Sample) SetBits(t Type, bits uint64) {
	s.Value, s.Type, s.Bits, s.Unboxed = nil, t, bits, true
}

// HasValue tells whether s carries a value, boxed or not.
func (s *Sample) HasValue() bool { return s.Unboxed || s.Value != nil }

// Any is s's value as the Go value Value would hold (bool, int8 ...
// uint64, float32, float64, StatusCode, time.Time for an unboxed scalar):
// Value itself unless Unboxed. Boxing allocates: hot encoders read Bits.
func (s *Sample) Any() any {
	if !s.Unboxed {
		return s.Value
	}
	switch s.Type {
	case TypeBoolean:
		return s.Bool()
	case TypeSByte:
		return int8(s.Int())
	case TypeInt16:
		return int16(s.Int())
	case TypeInt32:
		return int32(s.Int())
	case TypeInt64:
		return s.Int()
	case TypeByte:
		return uint8(s.Uint())
	case TypeUInt16:
		return uint16(s.Uint())
	case TypeUInt32:
		return uint32(s.Uint())
	case TypeUInt64:
		return s.Uint()
	case TypeFloat:
		return s.Float32()
	case TypeDouble:
		return s.Float64()
	case TypeStatusCode:
		return StatusCode(s.Bits)
	case TypeDateTime:
		return s.DateTime()
	}
	return nil
}

// Bool, Int, Uint, Float32, Float64 and DateTime read Bits for the types
// SetBits names; only meaningful when Unboxed and of such a Type.
func (s *Sample) Bool() bool          { return s.Bits != 0 }
func (s *Sample) Int() int64          { return int64(s.Bits) }
func (s *Sample) Uint() uint64        { return s.Bits }
func (s *Sample) Float32() float32    { return math.Float32frombits(uint32(s.Bits)) }
func (s *Sample) Float64() float64    { return math.Float64frombits(s.Bits) }
func (s *Sample) DateTime() time.Time { return time.Unix(0, int64(s.Bits)).UTC() }

// Unbox moves a scalar Value of the Go type its Type gives (float64 for
// Double, time.Time in UTC for DateTime, ...) into Bits, and tells
// whether it did; any other value stays where it is. Producers that build
// boxed samples, and tests, use it to get the unboxed form.
func (s *Sample) Unbox() bool {
	if s.Unboxed {
		return true
	}
	var bits uint64
	switch v := s.Value.(type) {
	case bool:
		if v {
			bits = 1
		}
		return s.unboxAs(TypeBoolean, bits)
	case int8:
		return s.unboxAs(TypeSByte, uint64(int64(v)))
	case int16:
		return s.unboxAs(TypeInt16, uint64(int64(v)))
	case int32:
		return s.unboxAs(TypeInt32, uint64(int64(v)))
	case int64:
		return s.unboxAs(TypeInt64, uint64(v))
	case uint8:
		return s.unboxAs(TypeByte, uint64(v))
	case uint16:
		return s.unboxAs(TypeUInt16, uint64(v))
	case uint32:
		return s.unboxAs(TypeUInt32, uint64(v))
	case uint64:
		return s.unboxAs(TypeUInt64, v)
	case float32:
		return s.unboxAs(TypeFloat, uint64(math.Float32bits(v)))
	case float64:
		return s.unboxAs(TypeDouble, math.Float64bits(v))
	case StatusCode:
		return s.unboxAs(TypeStatusCode, uint64(v))
	case time.Time:
		if v != time.Unix(0, v.UnixNano()).UTC() {
			return false // outside 1678-2262, or not UTC, or with a monotonic reading
		}
		return s.unboxAs(TypeDateTime, uint64(v.UnixNano()))
	}
	return false
}

func (s *Sample) unboxAs(t Type, bits uint64) bool {
	if s.Type != t {
		return false
	}
	s.SetBits(t, bits)
	return true
}
