package uadecode

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/gopcua/opcua/ua"
)

// keptBody is like collectors/opcua's rawBody: a type with its own Decode,
// registered while the agent runs for a PLC's structure encodings.
type keptBody []byte

func (k *keptBody) Decode(b []byte) (int, error) {
	*k = bytes.Clone(b)
	return len(b), nil
}

func (k *keptBody) Encode() ([]byte, error) { return *k, nil }

// plcStruct is a PLC structure type with a Go type, as plcsim registers one.
type plcStruct struct {
	Counter int32
	Name    string
	Extra   *ua.Variant
}

func readResponseOf(t *testing.T, eo *ua.ExtensionObject) []byte {
	return encodeService(t, &ua.ReadResponse{
		ResponseHeader: &ua.ResponseHeader{AdditionalHeader: ua.NewExtensionObject(nil), ServiceDiagnostics: &ua.DiagnosticInfo{}},
		Results:        []*ua.DataValue{{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(eo)}},
	})
}

func decodedExtensionObject(t *testing.T, msg []byte) *ua.ExtensionObject {
	t.Helper()
	got := requireSameAsGopcua(t, msg).(*ua.ReadResponse)
	return got.Results[0].Value.ExtensionObject()
}

var runs int

// TestRegisteredAtRunTime: an encoding id unknown at the first decode and
// registered afterwards decodes into its type from then on (unknown ids are
// not cached).
func TestRegisteredAtRunTime(t *testing.T) {
	runs++ // gopcua's registry outlives a run of -count=N: fresh ids each run
	t.Run("own decoder", func(t *testing.T) {
		encID := ua.NewStringNodeID(7, fmt.Sprintf("uadecode.test.kept.%d", runs))
		body := keptBody{1, 2, 3, 4}
		msg := readResponseOf(t, &ua.ExtensionObject{TypeID: ua.NewExpandedNodeID(encID, "", 0), EncodingMask: ua.ExtensionObjectBinary, Value: &body})
		if eo := decodedExtensionObject(t, msg); eo.Value != nil {
			t.Fatalf("unknown type decoded into %T", eo.Value)
		}
		ua.RegisterExtensionObject(encID, new(keptBody))
		eo := decodedExtensionObject(t, msg)
		if got, ok := eo.Value.(*keptBody); !ok || !bytes.Equal(*got, body) {
			t.Fatalf("value %#v, want the body %v", eo.Value, body)
		}
	})
	t.Run("walked", func(t *testing.T) {
		encID := ua.NewNumericNodeID(7, uint32(4710+runs))
		v := &plcStruct{Counter: 7, Name: "press", Extra: ua.MustVariant([]*ua.Variant{ua.MustVariant(1.5), ua.MustVariant("x")})}
		msg := readResponseOf(t, &ua.ExtensionObject{TypeID: ua.NewExpandedNodeID(encID, "", 0), EncodingMask: ua.ExtensionObjectBinary, Value: v})
		if eo := decodedExtensionObject(t, msg); eo.Value != nil {
			t.Fatalf("unknown type decoded into %T", eo.Value)
		}
		ua.RegisterExtensionObject(encID, new(plcStruct))
		eo := decodedExtensionObject(t, msg)
		if got, ok := eo.Value.(*plcStruct); !ok || got.Counter != 7 || got.Name != "press" {
			t.Fatalf("value %s", dump(eo.Value))
		}
	})
}

func TestDecodeNeedsPointer(t *testing.T) {
	if _, err := DefaultLimits().Decode([]byte{1, 0, 0, 0}, ua.ReadValueID{}); err == nil {
		t.Fatal("decoded into a non-pointer")
	}
	var n uint32
	if used, err := DefaultLimits().Decode([]byte{1, 0, 0, 0, 9}, &n); err != nil || used != 4 || n != 1 {
		t.Fatalf("Decode = %d, %v, value %d", used, err, n)
	}
}
