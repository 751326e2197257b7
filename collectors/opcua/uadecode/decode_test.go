package uadecode

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// encodeService is what a server sends after the sequence header: the
// service's type id, then the service.
func encodeService(t testing.TB, v any) []byte {
	t.Helper()
	typeID := ua.ServiceTypeID(v)
	if typeID == 0 {
		t.Fatalf("%T is not a registered service", v)
	}
	head, err := ua.NewFourByteExpandedNodeID(0, typeID).Encode()
	if err != nil {
		t.Fatal(err)
	}
	body, err := ua.Encode(v)
	if err != nil {
		t.Fatalf("encode %T: %v", v, err)
	}
	return append(head, body...)
}

// requireSameAsGopcua decodes b with ua.DecodeService and with Service and
// requires equal results.
func requireSameAsGopcua(t *testing.T, b []byte) any {
	t.Helper()
	wantID, want, err := ua.DecodeService(b)
	if err != nil {
		t.Fatalf("gopcua cannot decode the test message: %v", err)
	}
	gotID, got, err := Service(b)
	if err != nil {
		t.Fatalf("Service: %v", err)
	}
	if !reflect.DeepEqual(gotID, wantID) {
		t.Fatalf("type id %#v, gopcua %#v", gotID, wantID)
	}
	if !reflect.DeepEqual(got, want) {
		wantEnc, _ := ua.Encode(want)
		gotEnc, _ := ua.Encode(got)
		t.Fatalf("decoded values differ (re-encodings equal: %v)\nours:   %s\ngopcua: %s", bytes.Equal(gotEnc, wantEnc), dump(got), dump(want))
	}
	return got
}

// dump shows a value with its private fields, to find where two differ.
func dump(v any) string { return fmt.Sprintf("%+v", deref(reflect.ValueOf(v), 0)) }

func deref(v reflect.Value, depth int) any {
	if depth > 12 {
		return "…"
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return deref(v.Elem(), depth+1)
	case reflect.Struct:
		if v.Type() == timeType {
			return v.Interface()
		}
		m := map[string]any{}
		for i := range v.NumField() {
			m[v.Type().Field(i).Name] = deref(v.Field(i), depth+1)
		}
		return m
	case reflect.Slice:
		if v.IsNil() {
			return "nil-slice"
		}
		var s []any
		for i := range min(v.Len(), 8) {
			s = append(s, deref(v.Index(i), depth+1))
		}
		return s
	}
	if v.CanInterface() {
		return v.Interface()
	}
	return fmt.Sprint(v)
}

var (
	t1 = time.Date(2026, 12, 3, 12, 0, 0, 123456700, time.UTC)
	t0 = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC) // before 1970: gopcua's unsigned arithmetic
)

func nodeIDs() []*ua.NodeID {
	uri := ua.NewNumericNodeID(3, 99)
	uri.SetURIFlag()
	return []*ua.NodeID{
		ua.NewTwoByteNodeID(85),
		ua.NewFourByteNodeID(2, 1001),
		ua.NewNumericNodeID(7, 0xdeadbeef),
		ua.NewStringNodeID(2, "Line1.Temp"),
		ua.NewStringNodeID(2, ""),
		ua.NewGUIDNodeID(4, "72962B91-FA75-4AE6-8D28-B404DC7DAF63"),
		ua.NewByteStringNodeID(5, []byte{1, 2, 3}),
		ua.NewByteStringNodeID(5, nil),
		uri,
	}
}

func expandedNodeIDs() []*ua.ExpandedNodeID {
	return []*ua.ExpandedNodeID{
		ua.NewFourByteExpandedNodeID(1, 300),
		ua.NewExpandedNodeID(ua.NewStringNodeID(1, "x"), "urn:plant:line1", 0),
		ua.NewExpandedNodeID(ua.NewNumericNodeID(0, 2258), "", 3),
		ua.NewExpandedNodeID(ua.NewNumericNodeID(0, 2258), "urn:x", 4),
	}
}

func diagnostic(levels int) *ua.DiagnosticInfo {
	d := &ua.DiagnosticInfo{SymbolicID: 1, NamespaceURI: 2, Locale: 3, LocalizedText: 4, AdditionalInfo: "why", InnerStatusCode: ua.StatusBadTimeout}
	if levels > 1 {
		d.InnerDiagnosticInfo = diagnostic(levels - 1)
	}
	d.UpdateMask()
	return d
}

func dataValueAll(v *ua.Variant) *ua.DataValue {
	return &ua.DataValue{
		EncodingMask: ua.DataValueValue | ua.DataValueStatusCode | ua.DataValueSourceTimestamp |
			ua.DataValueServerTimestamp | ua.DataValueSourcePicoseconds | ua.DataValueServerPicoseconds,
		Value: v, Status: ua.StatusUncertain, SourceTimestamp: t1, ServerTimestamp: t1.Add(time.Millisecond),
		SourcePicoseconds: 10, ServerPicoseconds: 20,
	}
}

func serverStatus() *ua.ServerStatusDataType {
	return &ua.ServerStatusDataType{
		StartTime: t1, CurrentTime: t1, State: ua.ServerStateRunning,
		BuildInfo:      &ua.BuildInfo{ProductURI: "urn:p", ManufacturerName: "m", ProductName: "p", SoftwareVersion: "1", BuildNumber: "2", BuildDate: t1},
		ShutdownReason: ua.NewLocalizedTextWithLocale("none", "en"),
	}
}

// variants covers every built-in type as a scalar, an array (empty, null
// and filled) and matrices.
func variants(t testing.TB) []*ua.Variant {
	xml := ua.XMLElement("<a/>")
	scalars := []any{
		nil, true, false, int8(-8), uint8(200), int16(-16), uint16(16), int32(-32), uint32(32),
		int64(-64), uint64(1 << 63), float32(1.5), -2.25, math.Inf(1), "Grüße", "",
		t1, t0, time.Time{}, ua.NewGUID("72962B91-FA75-4AE6-8D28-B404DC7DAF63"),
		[]byte{0, 1, 2}, []byte(nil), xml, ua.XMLElement(""), ua.StatusBadNodeIDUnknown,
		&ua.QualifiedName{NamespaceIndex: 2, Name: "Temp"}, &ua.QualifiedName{},
		ua.NewLocalizedText("hot"), ua.NewLocalizedTextWithLocale("heiß", "de"), &ua.LocalizedText{},
		ua.NewExtensionObject(serverStatus()),
		&ua.ExtensionObject{TypeID: ua.NewFourByteExpandedNodeID(0, 0), EncodingMask: ua.ExtensionObjectEmpty},
		&ua.ExtensionObject{TypeID: ua.NewStringExpandedNodeID(9, "Unknown"), EncodingMask: ua.ExtensionObjectBinary, Value: []byte{9, 9, 9}},
		&ua.ExtensionObject{TypeID: ua.NewNumericExpandedNodeID(0, 123), EncodingMask: ua.ExtensionObjectXML, Value: &xml},
		dataValueAll(ua.MustVariant(int32(5))), &ua.DataValue{EncodingMask: ua.DataValueStatusCode, Status: ua.StatusBadWaitingForInitialData},
		ua.MustVariant("inner"), ua.MustVariant(ua.MustVariant([]int32{1, 2})),
		diagnostic(3), &ua.DiagnosticInfo{},
		[]bool{true, false}, []int8{-1, 1}, ua.ByteArray{1, 2, 3}, ua.ByteArray{}, ua.ByteArray(nil),
		[]int16{-1}, []uint16{1}, []int32{}, []int32(nil), []uint32{1, 2}, []int64{-5}, []uint64{5},
		[]float32{1.25}, []float64{2.5, -0.0}, []string{"a", "", "c"}, []time.Time{t1, {}},
		[]*ua.GUID{ua.NewGUID("72962B91-FA75-4AE6-8D28-B404DC7DAF63")},
		[]ua.XMLElement{"<x/>"}, nodeIDs(), expandedNodeIDs(), []ua.StatusCode{ua.StatusOK, ua.StatusBad},
		[]*ua.QualifiedName{{NamespaceIndex: 1, Name: "q"}}, []*ua.LocalizedText{ua.NewLocalizedText("t")},
		[]*ua.ExtensionObject{ua.NewExtensionObject(serverStatus()), ua.NewExtensionObject(&ua.ReadValueID{NodeID: ua.NewNumericNodeID(1, 2), DataEncoding: &ua.QualifiedName{}})},
		[]*ua.DataValue{dataValueAll(ua.MustVariant(1.5)), {EncodingMask: 0}},
		[]*ua.Variant{ua.MustVariant(int32(1)), ua.MustVariant("two"), ua.MustVariant([]float64{3})},
		[]*ua.DiagnosticInfo{diagnostic(2)},
		[][]int32{{1, 2, 3}, {4, 5, 6}}, [][][]int32{{{1, 2}, {3, 4}}, {{5, 6}, {7, 8}}},
		[][]string{{"a"}, {"b"}}, [][]*ua.Variant{{ua.MustVariant(int32(1)), ua.MustVariant(true)}},
		[]ua.ByteArray{{1, 2}, {3, 4}}, [][]float64{{1}},
		[][]*ua.DataValue{{dataValueAll(ua.MustVariant(int16(3)))}, {{EncodingMask: 0}}},
	}
	var out []*ua.Variant
	for _, s := range scalars {
		v, err := ua.NewVariant(s)
		if err != nil {
			t.Fatalf("variant of %T: %v", s, err)
		}
		out = append(out, v)
	}
	for _, n := range nodeIDs() {
		out = append(out, ua.MustVariant(n))
	}
	for _, e := range expandedNodeIDs() {
		out = append(out, ua.MustVariant(e))
	}
	return out
}

func responseHeader() *ua.ResponseHeader {
	return &ua.ResponseHeader{
		Timestamp: t1, RequestHandle: 42, ServiceResult: ua.StatusOK,
		ServiceDiagnostics: diagnostic(4), StringTable: []string{"s0", "s1"},
		AdditionalHeader: ua.NewExtensionObject(nil),
	}
}

func readResponse(t testing.TB) *ua.ReadResponse {
	var results []*ua.DataValue
	for _, v := range variants(t) {
		results = append(results, dataValueAll(v))
	}
	for mask := range byte(64) {
		dv := dataValueAll(ua.MustVariant(uint32(mask)))
		dv.EncodingMask = mask
		results = append(results, dv)
	}
	return &ua.ReadResponse{ResponseHeader: responseHeader(), Results: results, DiagnosticInfos: []*ua.DiagnosticInfo{diagnostic(1), diagnostic(5)}}
}

func publishResponse(items int) *ua.PublishResponse {
	var mi []*ua.MonitoredItemNotification
	for i := range items {
		mi = append(mi, &ua.MonitoredItemNotification{ClientHandle: uint32(i), Value: &ua.DataValue{
			EncodingMask: ua.DataValueValue | ua.DataValueStatusCode | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
			Value:        ua.MustVariant(float64(i) * 0.5), Status: ua.StatusOK, SourceTimestamp: t1, ServerTimestamp: t1,
		}})
	}
	return &ua.PublishResponse{
		ResponseHeader: responseHeader(), SubscriptionID: 7, AvailableSequenceNumbers: []uint32{3, 4}, MoreNotifications: true,
		NotificationMessage: &ua.NotificationMessage{SequenceNumber: 4, PublishTime: t1, NotificationData: []*ua.ExtensionObject{
			ua.NewExtensionObject(&ua.DataChangeNotification{MonitoredItems: mi, DiagnosticInfos: []*ua.DiagnosticInfo{diagnostic(2)}}),
			ua.NewExtensionObject(&ua.StatusChangeNotification{Status: ua.StatusBadTimeout, DiagnosticInfo: diagnostic(3)}),
			ua.NewExtensionObject(&ua.EventNotificationList{Events: []*ua.EventFieldList{{ClientHandle: 1, EventFields: []*ua.Variant{ua.MustVariant("alarm"), ua.MustVariant(t1)}}}}),
		}},
		Results: []ua.StatusCode{ua.StatusOK}, DiagnosticInfos: nil,
	}
}

func endpoints() []*ua.EndpointDescription {
	app := &ua.ApplicationDescription{ApplicationURI: "urn:srv", ProductURI: "urn:prod", ApplicationName: ua.NewLocalizedText("PLC"),
		ApplicationType: ua.ApplicationTypeServer, DiscoveryURLs: []string{"opc.tcp://127.0.0.1:4840"}}
	return []*ua.EndpointDescription{
		{EndpointURL: "opc.tcp://127.0.0.1:4840", Server: app, ServerCertificate: bytes.Repeat([]byte{0x30}, 900),
			SecurityMode: ua.MessageSecurityModeSignAndEncrypt, SecurityPolicyURI: ua.SecurityPolicyURIBasic256Sha256,
			UserIdentityTokens:  []*ua.UserTokenPolicy{{PolicyID: "anon", TokenType: ua.UserTokenTypeAnonymous}, {PolicyID: "user", TokenType: ua.UserTokenTypeUserName, SecurityPolicyURI: ua.SecurityPolicyURIBasic256}},
			TransportProfileURI: "http://opcfoundation.org/UA-Profile/Transport/uatcp-uasc-uabinary", SecurityLevel: 3},
		{EndpointURL: "opc.tcp://127.0.0.1:4840", Server: app, ServerCertificate: []byte{}, SecurityMode: ua.MessageSecurityModeNone,
			SecurityPolicyURI: ua.SecurityPolicyURINone, UserIdentityTokens: nil},
	}
}

func services(t testing.TB) map[string]any {
	return map[string]any{
		"ReadResponse":         readResponse(t),
		"PublishResponse":      publishResponse(20),
		"GetEndpointsResponse": &ua.GetEndpointsResponse{ResponseHeader: responseHeader(), Endpoints: endpoints()},
		"CreateSessionResponse": &ua.CreateSessionResponse{
			ResponseHeader: responseHeader(), SessionID: ua.NewNumericNodeID(1, 5), AuthenticationToken: ua.NewByteStringNodeID(0, bytes.Repeat([]byte{7}, 32)),
			RevisedSessionTimeout: 60000, ServerNonce: bytes.Repeat([]byte{1}, 32), ServerCertificate: []byte{0x30, 0x82},
			ServerEndpoints:            endpoints(),
			ServerSoftwareCertificates: []*ua.SignedSoftwareCertificate{{CertificateData: []byte{1}, Signature: nil}},
			ServerSignature:            &ua.SignatureData{Algorithm: "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", Signature: []byte{2, 3}},
			MaxRequestMessageSize:      1 << 24,
		},
		"BrowseResponse": &ua.BrowseResponse{ResponseHeader: responseHeader(), Results: []*ua.BrowseResult{{
			StatusCode: ua.StatusOK, ContinuationPoint: []byte{5, 6},
			References: []*ua.ReferenceDescription{{
				ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences), IsForward: true,
				NodeID: ua.NewExpandedNodeID(ua.NewStringNodeID(2, "Line1"), "urn:x", 0), BrowseName: &ua.QualifiedName{NamespaceIndex: 2, Name: "Line1"},
				DisplayName: ua.NewLocalizedText("Line 1"), NodeClass: ua.NodeClassObject, TypeDefinition: ua.NewFourByteExpandedNodeID(0, id.FolderType),
			}},
		}, {StatusCode: ua.StatusBadNodeIDUnknown}}},
		"ServiceFault":              &ua.ServiceFault{ResponseHeader: &ua.ResponseHeader{ServiceResult: ua.StatusBadSessionIDInvalid, ServiceDiagnostics: &ua.DiagnosticInfo{}, AdditionalHeader: ua.NewExtensionObject(nil)}},
		"OpenSecureChannelResponse": &ua.OpenSecureChannelResponse{ResponseHeader: responseHeader(), SecurityToken: &ua.ChannelSecurityToken{ChannelID: 1, TokenID: 2, CreatedAt: t1, RevisedLifetime: 3600000}, ServerNonce: []byte{}},
	}
}

func TestServiceMatchesGopcua(t *testing.T) {
	for name, v := range services(t) {
		t.Run(name, func(t *testing.T) {
			got := requireSameAsGopcua(t, encodeService(t, v))
			if reflect.TypeOf(got) != reflect.TypeOf(v) {
				t.Fatalf("decoded a %T, sent a %T", got, v)
			}
		})
	}
}

// TestVariantsOneByOne pins a difference on one Variant.
func TestVariantsOneByOne(t *testing.T) {
	for i, v := range variants(t) {
		t.Run(fmt.Sprintf("%d_%T", i, v.Value()), func(t *testing.T) {
			requireSameAsGopcua(t, encodeService(t, &ua.ReadResponse{ResponseHeader: &ua.ResponseHeader{AdditionalHeader: ua.NewExtensionObject(nil), ServiceDiagnostics: &ua.DiagnosticInfo{}}, Results: []*ua.DataValue{dataValueAll(v)}}))
		})
	}
}

// readResponseWith is a ReadResponse whose one result is a DataValue with
// the Variant encoded as raw (for encodings gopcua's encoder never makes).
func readResponseWith(t testing.TB, rawVariant []byte) []byte {
	t.Helper()
	b := encodeService(t, &ua.ReadResponse{
		ResponseHeader: &ua.ResponseHeader{AdditionalHeader: ua.NewExtensionObject(nil), ServiceDiagnostics: &ua.DiagnosticInfo{}},
	})
	// The encoding ends with Results (-1) and DiagnosticInfos (-1).
	b = b[:len(b)-8]
	b = append(b, 1, 0, 0, 0, ua.DataValueValue)
	b = append(b, rawVariant...)
	return append(b, 0xff, 0xff, 0xff, 0xff)
}

func le32(v int32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// TestNonCanonicalVariants: encodings a server may send that ua.NewVariant
// cannot reproduce; they must still come out as gopcua's.
func TestNonCanonicalVariants(t *testing.T) {
	int32Array := byte(ua.TypeIDInt32) | ua.VariantArrayValues
	cases := map[string][]byte{
		"null with array flag":       {ua.VariantArrayValues},
		"null with both flags":       {ua.VariantArrayValues | ua.VariantArrayDimensions},
		"scalar with dimension flag": cat([]byte{byte(ua.TypeIDInt32) | ua.VariantArrayDimensions}, le32(7)),
		"one dimension":              cat([]byte{int32Array | ua.VariantArrayDimensions}, le32(2), le32(1), le32(2), le32(1), le32(2)),
		"no dimensions":              cat([]byte{int32Array | ua.VariantArrayDimensions}, le32(2), le32(1), le32(2), le32(0)),
		"null array, no dimensions":  cat([]byte{int32Array | ua.VariantArrayDimensions}, le32(-1), le32(0)),
		"one dimension of variants":  cat([]byte{byte(ua.TypeIDVariant) | ua.VariantArrayValues | ua.VariantArrayDimensions}, le32(1), []byte{byte(ua.TypeIDBoolean), 1}, le32(1), le32(1)),
		// gopcua's encoder writes nothing for ByteString arrays, so these are raw.
		"ByteString array":  cat([]byte{byte(ua.TypeIDByteString) | ua.VariantArrayValues}, le32(3), le32(1), []byte{9}, le32(-1), le32(0)),
		"ByteString matrix": cat([]byte{byte(ua.TypeIDByteString) | ua.VariantArrayValues | ua.VariantArrayDimensions}, le32(4), le32(1), []byte{9}, le32(-1), le32(0), le32(2), []byte{7, 8}, le32(2), le32(2), le32(2)),
		"nan":               cat([]byte{byte(ua.TypeIDDouble)}, []byte{1, 0, 0, 0, 0, 0, 0xf8, 0x7f}),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			b := readResponseWith(t, raw)
			if name == "nan" { // NaN is not DeepEqual to itself: compare bits
				_, v, err := Service(b)
				if err != nil {
					t.Fatal(err)
				}
				got := v.(*ua.ReadResponse).Results[0].Value.Value().(float64)
				if math.Float64bits(got) != 0x7ff8000000000001 {
					t.Fatalf("NaN bits %#x", math.Float64bits(got))
				}
				return
			}
			requireSameAsGopcua(t, b)
		})
	}
}

// TestEveryRegisteredType decodes a filled value of every service and
// extension object type gopcua registers, against gopcua.
func TestEveryRegisteredType(t *testing.T) {
	found := 0
	for n := range uint32(1 << 16) {
		encoded, _ := ua.NewFourByteExpandedNodeID(0, uint16(n)).Encode()
		node := ua.NewFourByteNodeID(0, uint16(n))
		for kind, typ := range map[string]reflect.Type{"service": serviceType(encoded, node), "extension object": extensionObjectType(encoded, node)} {
			if typ == nil {
				continue
			}
			found++
			v := reflect.New(typ.Elem())
			fill(v.Elem(), 0)
			body, err := ua.Encode(v.Interface())
			if err != nil {
				t.Fatalf("%s %d %v: encode: %v", kind, n, typ, err)
			}
			wantV := reflect.New(typ.Elem()).Interface()
			if _, err := ua.Decode(body, wantV); err != nil {
				t.Fatalf("%s %d %v: gopcua decode: %v", kind, n, typ, err)
			}
			gotV := reflect.New(typ.Elem()).Interface()
			used, err := DefaultLimits().Decode(body, gotV)
			if err != nil {
				t.Fatalf("%s %d %v: %v", kind, n, typ, err)
			}
			if used != len(body) {
				t.Fatalf("%s %d %v: read %d of %d bytes", kind, n, typ, used, len(body))
			}
			if !reflect.DeepEqual(gotV, wantV) {
				t.Fatalf("%s %d %v differs:\nours:   %s\ngopcua: %s", kind, n, typ, dump(gotV), dump(wantV))
			}
		}
	}
	if found < 300 {
		t.Fatalf("found %d registered types; expected gopcua's ~600", found)
	}
	t.Logf("%d registered types decode as gopcua decodes them", found)
}

// fill sets every field of v to something other than its zero value, so
// each field's encoding is exercised.
func fill(v reflect.Value, depth int) {
	switch x := v.Addr().Interface().(type) {
	case **ua.NodeID:
		*x = ua.NewStringNodeID(2, "n")
		return
	case **ua.ExpandedNodeID:
		*x = ua.NewExpandedNodeID(ua.NewNumericNodeID(1, 2), "urn:u", 1)
		return
	case **ua.Variant:
		*x = ua.MustVariant([]int32{1, 2})
		return
	case **ua.DataValue:
		*x = dataValueAll(ua.MustVariant("v"))
		return
	case **ua.ExtensionObject:
		*x = ua.NewExtensionObject(&ua.Range{Low: 1, High: 2})
		return
	case **ua.DiagnosticInfo:
		*x = diagnostic(2)
		return
	case **ua.LocalizedText:
		*x = ua.NewLocalizedTextWithLocale("t", "en")
		return
	case **ua.GUID:
		*x = ua.NewGUID("72962B91-FA75-4AE6-8D28-B404DC7DAF63")
		return
	case *time.Time:
		*x = t1
		return
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(-3)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(3)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(2.5)
	case reflect.String:
		v.SetString("s")
	case reflect.Slice:
		if depth > 3 {
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(s.Index(i), depth+1)
		}
		v.Set(s)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), depth+1)
		v.Set(p)
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i), depth+1)
		}
	}
}

func TestUnknownService(t *testing.T) {
	b, _ := ua.NewNumericExpandedNodeID(0, 999999).Encode()
	_, _, err := Service(b)
	if !errors.Is(err, ua.StatusBadServiceUnsupported) {
		t.Fatalf("err = %v, want BadServiceUnsupported", err)
	}
}

func BenchmarkPublishResponse(b *testing.B) {
	msg := encodeService(b, publishResponse(1000))
	b.Run("uadecode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := Service(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gopcua", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := ua.DecodeService(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestConcurrentDecoding: plans and registries are shared by every
// channel's goroutine.
func TestConcurrentDecoding(t *testing.T) {
	var msgs [][]byte
	for _, v := range services(t) {
		msgs = append(msgs, encodeService(t, v))
	}
	// Forget the plans built so far, so the goroutines build them together.
	plans.Lock()
	plans.m = nil
	plans.Unlock()
	ready.Clear()
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for _, m := range msgs {
				if _, _, err := Service(m); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
