package opcua

import (
	"context"
	"math"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/uafast"
)

// The fast path of a value: uafast decodes a PublishResponse into flat
// items, and handleItems turns them into samples without a gopcua
// DataValue or Variant per value, and without an allocation per numeric
// scalar. Its samples are those handle makes from the same message decoded
// by uadecode (TestSamplesFromItems and FuzzSamplesFromItems hold it to
// that, through Sample.Any): Booleans, numbers, StatusCodes and DateTimes
// are carried unboxed (Sample.SetBits), values that are not scalars go
// through convert.

// handleItems is handle for a notification the fast decoder read.
func (s *Session) handleItems(ctx context.Context, n *uafast.DataChange, out chan<- collectors.Batch, dog *watchdog) {
	batch := s.samplesFromItems(n)
	for i := range n.Items {
		if it := &n.Items[i]; it.ClientHandle >= heartbeatHandle {
			s.noteHeartbeat(itemDataValue(it), dog)
		}
	}
	if len(batch) == 0 {
		return
	}
	s.states.Collected(batch)
	s.link.delivered(batch) // read-back of writes (write.go)
	select {
	case out <- batch:
	case <-ctx.Done():
	}
}

// samplesFromItems is the batch of n's items that belong to tags.
func (s *Session) samplesFromItems(n *uafast.DataChange) collectors.Batch {
	batch := make(collectors.Batch, len(n.Items))
	var seen itemCache
	k, unknown := 0, 0
	for i := range n.Items {
		it := &n.Items[i]
		if it.ClientHandle >= heartbeatHandle {
			continue
		}
		if int(it.ClientHandle) >= len(s.tags) {
			unknown++
			continue
		}
		if s.tags[it.ClientHandle].Tag == removedTag {
			continue // removed by a reload; a notification already on its way (retag.go)
		}
		tag := &s.tags[it.ClientHandle]
		smp := &batch[k] // filled in place: a Sample is 128 bytes
		smp.PLC, smp.Tag, smp.Node = tag.plc, tag.Name, tag.Node.String()
		fillSample(smp, it, &seen)
		if s.fencedAt(it.ClientHandle, smp.SourceTime) {
			*smp = collectors.Sample{}
			continue // handed on from the PLC's history already (history.go)
		}
		k++
		s.noteSent(it.ClientHandle, smp.SourceTime)
		if !smp.HasValue() && int(it.ClientHandle) < len(s.declared) && s.declared[it.ClientHandle] != collectors.TypeNull {
			smp.Type = s.declared[it.ClientHandle] // no value: say what the node holds
		}
	}
	if unknown > 0 {
		s.log.Warn().Int("items", unknown).Msg("notification for an unknown monitored item; ignored")
	}
	return batch[:k]
}

// itemCache remembers the last timestamps converted: the items of one
// notification mostly share them (a PLC stamps a scan's changes alike).
type itemCache struct {
	src, srv stampCache
}

type stampCache struct {
	ticks uint64
	picos uint16 // 0xffff: not sent
	t     time.Time
	valid bool
}

// of is itemTime of ticks and picos, converted once per distinct pair.
func (c *stampCache) of(ticks uint64, withPicos bool, picos uint16) time.Time {
	if !withPicos {
		picos = 0xffff
	}
	if !c.valid || c.ticks != ticks || c.picos != picos {
		c.ticks, c.picos, c.valid = ticks, picos, true
		c.t = itemTime(uafast.DateTime(ticks), withPicos, picos)
	}
	return c.t
}

// fillSample fills the value, type, status and timestamps of s from it,
// as sampleFrom does from a DataValue.
func fillSample(s *collectors.Sample, it *uafast.Item, seen *itemCache) {
	s.Value, s.Type, s.Bits, s.Unboxed = nil, collectors.TypeNull, 0, false
	if it.Mask&ua.DataValueValue != 0 {
		setItemValue(s, it)
	}
	s.StatusCode = 0
	if it.Mask&ua.DataValueStatusCode != 0 {
		s.StatusCode = collectors.StatusCode(it.Status)
	}
	if it.Mask&ua.DataValueSourceTimestamp != 0 {
		s.SourceTime = seen.src.of(it.SourceTicks(), it.Mask&ua.DataValueSourcePicoseconds != 0, it.SourcePicos)
	}
	if it.Mask&ua.DataValueServerTimestamp != 0 {
		s.ServerTime = seen.srv.of(it.ServerTicks(), it.Mask&ua.DataValueServerPicoseconds != 0, it.ServerPicos)
	}
}

// itemTime is a timestamp as dataValueParts makes it: zero when null.
func itemTime(t time.Time, withPicos bool, picos uint16) time.Time {
	if isNullTime(t) {
		return time.Time{}
	}
	t = t.UTC()
	if withPicos {
		t = t.Add(time.Duration(picos / 100))
	}
	return t
}

// setItemValue sets s's value and type as convertValue gives them for an
// item: fixed-size scalars unboxed from their bits, strings copied out,
// everything else converted from the value gopcua would have decoded.
func setItemValue(s *collectors.Sample, it *uafast.Item) {
	typ := it.Type()
	if typ == ua.TypeIDNull {
		return
	}
	name := collectors.Type(typ)
	if it.IsArray() {
		s.Value, s.Type = convert(it.Value(), 0), name
		return
	}
	bits := it.Bits()
	switch typ {
	case ua.TypeIDBoolean, ua.TypeIDByte, ua.TypeIDUint16, ua.TypeIDUint32, ua.TypeIDUint64, ua.TypeIDStatusCode:
		s.SetBits(name, bits) // zero-extended by uafast, Boolean as 0 or 1
	case ua.TypeIDSByte:
		s.SetBits(name, uint64(int64(int8(bits))))
	case ua.TypeIDInt16:
		s.SetBits(name, uint64(int64(int16(bits))))
	case ua.TypeIDInt32:
		s.SetBits(name, uint64(int64(int32(bits))))
	case ua.TypeIDInt64:
		s.SetBits(name, bits)
	case ua.TypeIDFloat:
		s.SetBits(name, uint64(math.Float32bits(uafast.Float32(bits))))
	case ua.TypeIDDouble:
		s.SetBits(name, math.Float64bits(uafast.Float64(bits)))
	case ua.TypeIDDateTime:
		s.Type = name
		if t := uafast.DateTime(bits); !isNullTime(t) {
			s.SetBits(name, uint64(t.UnixNano())) // gopcua's times are ns since 1970: exact
		}
	case ua.TypeIDString:
		s.Value, s.Type = it.String(), name
	default:
		s.Value, s.Type = convert(it.Value(), 0), name
	}
}

// itemDataValue is a heartbeat item as a gopcua DataValue, for
// noteHeartbeat.
func itemDataValue(it *uafast.Item) *ua.DataValue {
	v, err := ua.NewVariant(it.Value())
	if err != nil {
		return &ua.DataValue{}
	}
	return &ua.DataValue{EncodingMask: it.Mask, Value: v}
}
