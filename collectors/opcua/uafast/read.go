package uafast

import (
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

const readResponseID = id.ReadResponse_Encoding_DefaultBinary

// DecodeRead decodes a service message body if it is a ReadResponse whose
// values are all scalars of the types Decode covers: what the start-up
// reads get back (every tag's DataType and ValueRank, Historizing, the
// server's limits), 200,000 values at 100,000 tags. ok is false for
// anything else (arrays, structures, diagnostics, a malformed message),
// which the caller decodes with uadecode; what DecodeRead accepts,
// uadecode decodes to the same response (FuzzDecodeRead).
func DecodeRead(b []byte) (res *ua.ReadResponse, ok bool) {
	r := reader{b: b}
	if r.numericNodeID() != readResponseID || r.bad {
		return nil, false
	}
	res = &ua.ReadResponse{ResponseHeader: r.responseHeader()}
	if n, null := r.length(1); !null && !r.bad {
		res.Results = make([]*ua.DataValue, n)
		var it Item
		for i := range res.Results {
			it = Item{}
			r.dataValue(&it)
			if r.bad || it.IsArray() {
				return nil, false
			}
			res.Results[i] = scalarDataValue(&it)
		}
	}
	res.DiagnosticInfos = r.emptyDiagnostics()
	if r.bad {
		return nil, false
	}
	return res, true
}

// scalarDataValue is a scalar item as the DataValue uadecode makes of it.
func scalarDataValue(it *Item) *ua.DataValue {
	dv := &ua.DataValue{EncodingMask: it.Mask, Status: it.Status, SourcePicoseconds: it.SourcePicos, ServerPicoseconds: it.ServerPicos}
	if it.Mask&ua.DataValueValue != 0 {
		dv.Value = &ua.Variant{}
		if v := it.Value(); v != nil {
			dv.Value = ua.MustVariant(v)
		}
	}
	if it.Mask&ua.DataValueSourceTimestamp != 0 {
		dv.SourceTimestamp = it.SourceTime()
	}
	if it.Mask&ua.DataValueServerTimestamp != 0 {
		dv.ServerTimestamp = it.ServerTime()
	}
	return dv
}
