package uadecode

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"github.com/gopcua/opcua/ua"
)

// FuzzService: Service never panics, and whatever it decodes, gopcua
// decodes the same. gopcua runs only on messages Service accepted: on
// others it may overflow the stack or allocate gigabytes, which no recover
// catches; on accepted ones the bounds hold for it too (depth, dimensions,
// lengths against the bytes left).
func FuzzService(f *testing.F) {
	for _, v := range services(f) {
		f.Add(encodeService(f, v))
	}
	for _, v := range variants(f) {
		f.Add(encodeService(f, &ua.ReadResponse{ResponseHeader: &ua.ResponseHeader{AdditionalHeader: ua.NewExtensionObject(nil), ServiceDiagnostics: &ua.DiagnosticInfo{}}, Results: []*ua.DataValue{dataValueAll(v)}}))
	}
	f.Add(readResponseWith(f, cat([]byte{variantInt32Array}, le32(-2))))
	f.Add(readResponseWith(f, cat([]byte{variantInt32Matrix}, le32(4), le32(1), le32(2), le32(3), le32(4), le32(2), le32(2), le32(2))))
	f.Add(readResponseWith(f, cat([]byte{variantInt32Matrix}, le32(0), le32(2), le32(1<<16), le32(1<<16))))
	f.Add(readResponseWith(f, nestedWriteValues(5)))
	f.Add(readResponseWithDiagnostics(append(bytes.Repeat([]byte{ua.DiagnosticInfoInnerDiagnosticInfo}, 10), 0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		gotID, got, err := Service(b)
		if err != nil {
			if got != nil {
				t.Fatalf("a value with the error %v", err)
			}
			return
		}
		wantID, want, gopcuaErr := gopcuaDecode(b)
		if gopcuaErr != nil {
			return // we are more lenient (e.g. Variant arrays over 65535) or gopcua panicked
		}
		if !reflect.DeepEqual(gotID, wantID) {
			t.Fatalf("type id %s, gopcua %s", dump(gotID), dump(wantID))
		}
		if !reflect.DeepEqual(got, want) {
			gotEnc, err1 := ua.Encode(got)
			wantEnc, err2 := ua.Encode(want)
			if err1 == nil && err2 == nil && bytes.Equal(gotEnc, wantEnc) {
				return // NaN: not DeepEqual to itself, encoded alike
			}
			t.Fatalf("decoded values differ\nours:   %s\ngopcua: %s", dump(got), dump(want))
		}
	})
}

func gopcuaDecode(b []byte) (id *ua.ExpandedNodeID, v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("gopcua panicked: %v", r)
		}
	}()
	return ua.DecodeService(b)
}
