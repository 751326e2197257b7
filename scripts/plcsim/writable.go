package main

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

// With -writable, plcsim also serves variables that hold what a client
// writes (ns=1;s=W.<Type> for each scalar built-in type, W.DoubleArray,
// W.Int32Array3 of exactly 3 elements) and a method ns=1;s=Machine.Scale
// on the object ns=1;s=Machine: Scale(Double x, Int32 factor) -> Double.
// A write of another type than the node's is refused with BadTypeMismatch,
// as real servers do, and the written value goes to its monitored items.

// writableVar is one variable that holds its last written value.
type writableVar struct {
	node   *ua.NodeID
	typeID ua.TypeID
	rank   int32
	length uint32 // fixed array length; 0: any
	value  atomic.Pointer[ua.DataValue]
}

var (
	machineNode = ua.NewStringNodeID(namespaceIndex, "Machine")
	scaleNode   = ua.NewStringNodeID(namespaceIndex, "Machine.Scale")
)

// writableTypes are the variables' types and initial values.
var writableTypes = []struct {
	name  string
	id    ua.TypeID
	dt    uint32
	start any
}{
	{"Boolean", ua.TypeIDBoolean, id.Boolean, false},
	{"SByte", ua.TypeIDSByte, id.SByte, int8(0)},
	{"Byte", ua.TypeIDByte, id.Byte, uint8(0)},
	{"Int16", ua.TypeIDInt16, id.Int16, int16(0)},
	{"UInt16", ua.TypeIDUint16, id.UInt16, uint16(0)},
	{"Int32", ua.TypeIDInt32, id.Int32, int32(0)},
	{"UInt32", ua.TypeIDUint32, id.UInt32, uint32(0)},
	{"Int64", ua.TypeIDInt64, id.Int64, int64(0)},
	{"UInt64", ua.TypeIDUint64, id.UInt64, uint64(0)},
	{"Float", ua.TypeIDFloat, id.Float, float32(0)},
	{"Double", ua.TypeIDDouble, id.Double, float64(0)},
	{"String", ua.TypeIDString, id.String, ""},
	{"DateTime", ua.TypeIDDateTime, id.DateTime, time.Unix(0, 0).UTC()},
	{"ByteString", ua.TypeIDByteString, id.ByteString, []byte{}},
}

func (s *sim) addWritable(ns *server.NodeNameSpace, folder *server.Node, shared server.Attributes) {
	s.writable = map[string]*writableVar{}
	add := func(name string, typeID ua.TypeID, dt uint32, rank int32, length uint32, start any) {
		w := &writableVar{node: ua.NewStringNodeID(namespaceIndex, "W."+name), typeID: typeID, rank: rank, length: length}
		w.value.Store(dataValue(ua.MustVariant(start)))
		attrs := make(server.Attributes, len(shared)+6)
		for a, v := range shared {
			attrs[a] = v
		}
		access := server.DataValueFromValue(byte(ua.AccessLevelTypeCurrentRead | ua.AccessLevelTypeCurrentWrite))
		attrs[ua.AttributeIDAccessLevel] = access
		attrs[ua.AttributeIDUserAccessLevel] = access
		attrs[ua.AttributeIDValueRank] = server.DataValueFromValue(rank)
		if rank == 1 {
			attrs[ua.AttributeIDArrayDimensions] = server.DataValueFromValue([]uint32{length})
		}
		attrs[ua.AttributeIDBrowseName] = server.DataValueFromValue(&ua.QualifiedName{NamespaceIndex: namespaceIndex, Name: "W." + name})
		attrs[ua.AttributeIDDisplayName] = server.DataValueFromValue(&ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: "W." + name})
		attrs[ua.AttributeIDDataType] = server.DataValueFromValue(ua.NewNumericNodeID(0, dt))
		n := ns.AddNode(server.NewNode(w.node, attrs, nil, w.value.Load))
		folder.AddRef(n, id.HasComponent, true)
		s.writable[w.node.String()] = w
	}
	for _, t := range writableTypes {
		add(t.name, t.id, t.dt, -1, 0, t.start)
	}
	add("DoubleArray", ua.TypeIDDouble, id.Double, 1, 0, []float64{})
	add("Int32Array3", ua.TypeIDInt32, id.Int32, 1, 3, []int32{0, 0, 0})

	machine := server.NewNode(machineNode, server.Attributes{
		ua.AttributeIDNodeClass:   server.DataValueFromValue(int32(ua.NodeClassObject)),
		ua.AttributeIDBrowseName:  server.DataValueFromValue(&ua.QualifiedName{NamespaceIndex: namespaceIndex, Name: "Machine"}),
		ua.AttributeIDDisplayName: server.DataValueFromValue(&ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: "Machine"}),
	}, nil, nil)
	folder.AddRef(ns.AddNode(machine), id.Organizes, true)
	scale := server.NewNode(scaleNode, server.Attributes{
		ua.AttributeIDNodeClass:      server.DataValueFromValue(int32(ua.NodeClassMethod)),
		ua.AttributeIDBrowseName:     server.DataValueFromValue(&ua.QualifiedName{NamespaceIndex: namespaceIndex, Name: "Scale"}),
		ua.AttributeIDDisplayName:    server.DataValueFromValue(&ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: "Scale"}),
		ua.AttributeIDExecutable:     server.DataValueFromValue(true),
		ua.AttributeIDUserExecutable: server.DataValueFromValue(true),
	}, nil, nil)
	machine.AddRef(ns.AddNode(scale), id.HasComponent, true)
}

func dataValue(v *ua.Variant) *ua.DataValue {
	now := time.Now()
	return &ua.DataValue{
		EncodingMask:    ua.DataValueValue | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
		Value:           v,
		SourceTimestamp: now,
		ServerTimestamp: now,
	}
}

// write handles the Write service for the writable variables; every other
// node is not writable.
func (s *sim) write(srv *server.Server) server.Handler {
	return func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
		req, ok := r.(*ua.WriteRequest)
		if !ok {
			return nil, ua.StatusBadRequestTypeInvalid
		}
		results := make([]ua.StatusCode, len(req.NodesToWrite))
		for i, wv := range req.NodesToWrite {
			results[i] = s.writeOne(wv)
		}
		return &ua.WriteResponse{
			ResponseHeader:  responseHeader(req.RequestHeader),
			Results:         results,
			DiagnosticInfos: []*ua.DiagnosticInfo{},
		}, nil
	}
}

func (s *sim) writeOne(wv *ua.WriteValue) ua.StatusCode {
	if wv == nil || wv.NodeID == nil || wv.Value == nil {
		return ua.StatusBadNodeIDInvalid
	}
	w := s.writable[wv.NodeID.String()]
	switch {
	case w == nil:
		if _, known := s.byKey[wv.NodeID.String()]; known {
			return ua.StatusBadNotWritable
		}
		return ua.StatusBadNodeIDUnknown
	case wv.AttributeID != ua.AttributeIDValue:
		return ua.StatusBadNotWritable
	case wv.IndexRange != "":
		return ua.StatusBadIndexRangeInvalid
	}
	v := wv.Value.Value
	if v == nil || v.Type() != w.typeID || (w.rank == 1) != v.Has(ua.VariantArrayValues) {
		return ua.StatusBadTypeMismatch
	}
	if w.length > 0 && uint32(v.ArrayLength()) != w.length {
		return ua.StatusBadTypeMismatch
	}
	dv := dataValue(v)
	w.value.Store(dv)
	s.log.Info().Str("node", wv.NodeID.String()).Str("value", fmt.Sprint(v.Value())).Msg("written")

	mis := s.srv.MonitoredItemService
	mis.Mu.Lock()
	for _, it := range mis.Nodes[wv.NodeID.String()] {
		if it.Mode == ua.MonitoringModeReporting && it.Req.ItemToMonitor.AttributeID == ua.AttributeIDValue {
			s.pending = append(s.pending, delivery{it.Sub, &ua.MonitoredItemNotification{
				ClientHandle: it.Req.RequestedParameters.ClientHandle,
				Value:        dv,
			}})
		}
	}
	mis.Mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return ua.StatusOK
}

// call handles the Call service: Machine.Scale(Double x, Int32 factor) -> Double.
func (s *sim) call(srv *server.Server) server.Handler {
	return func(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
		req, ok := r.(*ua.CallRequest)
		if !ok {
			return nil, ua.StatusBadRequestTypeInvalid
		}
		results := make([]*ua.CallMethodResult, len(req.MethodsToCall))
		for i, m := range req.MethodsToCall {
			results[i] = s.callOne(m)
		}
		return &ua.CallResponse{
			ResponseHeader:  responseHeader(req.RequestHeader),
			Results:         results,
			DiagnosticInfos: []*ua.DiagnosticInfo{},
		}, nil
	}
}

func (s *sim) callOne(m *ua.CallMethodRequest) *ua.CallMethodResult {
	res := &ua.CallMethodResult{InputArgumentResults: []ua.StatusCode{}, InputArgumentDiagnosticInfos: []*ua.DiagnosticInfo{}, OutputArguments: []*ua.Variant{}}
	switch {
	case m == nil || m.ObjectID == nil || m.MethodID == nil:
		res.StatusCode = ua.StatusBadNodeIDInvalid
		return res
	case !m.ObjectID.Equal(machineNode):
		res.StatusCode = ua.StatusBadNodeIDUnknown
		return res
	case !m.MethodID.Equal(scaleNode):
		res.StatusCode = ua.StatusBadMethodInvalid
		return res
	case len(m.InputArguments) < 2:
		res.StatusCode = ua.StatusBadArgumentsMissing
		return res
	case len(m.InputArguments) > 2:
		res.StatusCode = ua.StatusBadTooManyArguments
		return res
	}
	x, okX := m.InputArguments[0].Value().(float64)
	f, okF := m.InputArguments[1].Value().(int32)
	res.InputArgumentResults = []ua.StatusCode{ua.StatusOK, ua.StatusOK}
	if !okX {
		res.InputArgumentResults[0] = ua.StatusBadTypeMismatch
	}
	if !okF {
		res.InputArgumentResults[1] = ua.StatusBadTypeMismatch
	}
	if !okX || !okF {
		res.StatusCode = ua.StatusBadInvalidArgument
		return res
	}
	res.StatusCode = ua.StatusOK
	res.OutputArguments = []*ua.Variant{ua.MustVariant(x * float64(f))}
	s.log.Info().Float64("x", x).Int32("factor", f).Msg("Machine.Scale called")
	return res
}

func responseHeader(h *ua.RequestHeader) *ua.ResponseHeader {
	return &ua.ResponseHeader{
		Timestamp:          time.Now(),
		RequestHandle:      h.RequestHandle,
		ServiceResult:      ua.StatusOK,
		ServiceDiagnostics: &ua.DiagnosticInfo{},
		StringTable:        []string{},
		AdditionalHeader:   ua.NewExtensionObject(nil),
	}
}
