package hostileua

import (
	"encoding/binary"
	"testing"

	"github.com/gopcua/opcua/ua"
)

// The envelope around each attack is well-formed: with a harmless Variant
// in its place, gopcua decodes the whole GetEndpointsResponse and finds the
// Variant in the AdditionalHeader. So a client reaches the hostile Variant
// only by decoding the reply it asked for.
func TestEnvelopeDecodes(t *testing.T) {
	harmless := binary.LittleEndian.AppendUint32(variantInt32Array(1), 42)
	_, v, err := ua.DecodeService(getEndpointsResponse(7, harmless))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := v.(*ua.GetEndpointsResponse)
	if !ok {
		t.Fatalf("decoded %T", v)
	}
	if r.ResponseHeader.RequestHandle != 7 {
		t.Errorf("request handle %d, want 7", r.ResponseHeader.RequestHandle)
	}
	p, ok := r.ResponseHeader.AdditionalHeader.Value.(*ua.AdditionalParametersType)
	if !ok || len(p.Parameters) != 1 {
		t.Fatalf("additional header %#v", r.ResponseHeader.AdditionalHeader.Value)
	}
	if got, ok := p.Parameters[0].Value.Value().([]int32); !ok || len(got) != 1 || got[0] != 42 {
		t.Errorf("parameter value %#v, want []int32{42}", p.Parameters[0].Value.Value())
	}
}
