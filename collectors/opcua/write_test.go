package opcua

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/command"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
	"github.com/tagbridge/tagbridge/scripts/open62541/o62proc"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// writableTags are plcsim's -writable variables as tags.
const writableTags = `tags:
  - {name: bool, node: "ns=1;s=W.Boolean", writable: true}
  - {name: sbyte, node: "ns=1;s=W.SByte", writable: true}
  - {name: byte, node: "ns=1;s=W.Byte", writable: true}
  - {name: int16, node: "ns=1;s=W.Int16", writable: true}
  - {name: uint16, node: "ns=1;s=W.UInt16", writable: true}
  - {name: int32, node: "ns=1;s=W.Int32", writable: true}
  - {name: uint32, node: "ns=1;s=W.UInt32", writable: true}
  - {name: int64, node: "ns=1;s=W.Int64", writable: true}
  - {name: uint64, node: "ns=1;s=W.UInt64", writable: true}
  - {name: float, node: "ns=1;s=W.Float", writable: true}
  - {name: double, node: "ns=1;s=W.Double", writable: true}
  - {name: string, node: "ns=1;s=W.String", writable: true}
  - {name: datetime, node: "ns=1;s=W.DateTime", writable: true}
  - {name: bytes, node: "ns=1;s=W.ByteString", writable: true}
  - {name: doubles, node: "ns=1;s=W.DoubleArray", writable: true}
  - {name: three, node: "ns=1;s=W.Int32Array3", writable: true}
  - {name: counter, node: "ns=1;s=Int32.0001"}
commands:
  methods:
    - {name: scale, object: "ns=1;s=Machine", method: "ns=1;s=Machine.Scale", args: [Double, Int32]}`

// TestSessionWriteAndCall writes every built-in scalar type and arrays to
// plcsim and reads each back; refusals come before anything is sent.
func TestSessionWriteAndCall(t *testing.T) {
	plc := simproc.Start(t, "-tags", "4", "-interval", "200ms", "-writable")
	cfg := plcConfig(t, plc.Endpoint, writableTags)
	r, s := startSessionValue(t, cfg)
	waitUntil(t, "the counter", 10*time.Second, func() bool { return r.tagsSeen() > 0 })

	ctx := t.Context()
	num := func(s string) any { return json.Number(s) }
	when := time.Date(2026, 12, 3, 10, 0, 0, 123000000, time.UTC)
	for _, c := range []struct {
		tag  string
		in   any
		want any
	}{
		{"bool", true, true},
		{"sbyte", num("-128"), int8(-128)},
		{"byte", num("255"), uint8(255)},
		{"int16", num("-32768"), int16(-32768)},
		{"uint16", num("65535"), uint16(65535)},
		{"int32", num("-2147483648"), int32(-2147483648)},
		{"uint32", num("4294967295"), uint32(4294967295)},
		{"int64", num("-9223372036854775808"), int64(-9223372036854775808)},
		{"uint64", num("18446744073709551615"), uint64(18446744073709551615)},
		{"float", num("1.5"), float32(1.5)},
		{"double", num("-2.25e10"), -2.25e10},
		{"string", "Grüße", "Grüße"},
		{"datetime", "2026-12-03T10:00:00.123Z", when},
		{"bytes", "AAEC/w==", []byte{0, 1, 2, 255}},
		{"doubles", []any{num("1"), num("2.5")}, []any{1.0, 2.5}},
		{"three", []any{num("1"), num("2"), num("3")}, []any{int32(1), int32(2), int32(3)}},
	} {
		out, err := s.Write(ctx, "sim", c.tag, c.in, "")
		if err != nil {
			t.Errorf("write %s: %v", c.tag, err)
			continue
		}
		if out.Status != command.Good || out.ReadBack != "read" || !reflect.DeepEqual(out.Value, c.want) {
			t.Errorf("write %s = %+v (%T), want Good, read back %v (%T)", c.tag, out, out.Value, c.want, c.want)
		}
	}

	for _, c := range []struct {
		tag    string
		in     any
		status command.Status
	}{
		{"byte", num("256"), command.OutOfRange},
		{"sbyte", num("-129"), command.OutOfRange},
		{"uint64", num("-1"), command.OutOfRange},
		{"int32", num("1.5"), command.WrongType},
		{"int32", "7", command.WrongType},
		{"bool", num("1"), command.WrongType},
		{"float", num("1e39"), command.OutOfRange},
		{"double", []any{num("1")}, command.WrongType},
		{"doubles", num("1"), command.WrongType},
		{"three", []any{num("1")}, command.WrongType},
		{"datetime", "yesterday", command.WrongType},
		{"counter", num("1"), command.NotAllowed},
	} {
		_, err := s.Write(ctx, "sim", c.tag, c.in, "")
		var r *command.Refusal
		if !errors.As(err, &r) || r.Status != c.status {
			t.Errorf("write %s %v: %v, want a %s refusal", c.tag, c.in, err, c.status.Name)
		}
	}

	out, err := s.Call(ctx, "sim", "scale", []any{num("2.5"), num("4")})
	if err != nil || out.Status != command.Good || !reflect.DeepEqual(out.Outputs, []any{10.0}) {
		t.Errorf("call scale(2.5, 4) = %+v, %v; want Good [10]", out, err)
	}
	if _, err := s.Call(ctx, "sim", "scale", []any{"x", num("4")}); !isRefusal(err, command.WrongType) {
		t.Errorf("call scale(\"x\", 4): %v, want WrongType", err)
	}

	plc.Kill()
	waitUntil(t, "the session to notice", 10*time.Second, func() bool { return s.link.client() == nil })
	start := time.Now()
	if _, err := s.Write(ctx, "sim", "int32", num("1"), ""); !isRefusal(err, command.PLCDown) {
		t.Errorf("write with the PLC down: %v, want PLCDown", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("PLC down answered after %v, want at once", d)
	}
}

func isRefusal(err error, s command.Status) bool {
	var r *command.Refusal
	return errors.As(err, &r) && r.Status == s
}

// TestSessionWriteOpen62541 writes the open62541 server's tags, whose values
// change only every hour here, and reads each back.
func TestSessionWriteOpen62541(t *testing.T) {
	srv := o62proc.Start(t, o62proc.Options{Tags: 4, Interval: time.Hour, Policies: []string{"None"}})
	cfg := plcConfig(t, srv.Endpoint, `tags:
  - {name: d, node: "ns=1;s=Tag0001", writable: true}
  - {name: i, node: "ns=1;s=Tag0002", writable: true}
  - {name: b, node: "ns=1;s=Tag0003", writable: true}
  - {name: s, node: "ns=1;s=Tag0004", writable: true}`)
	r, s := startSessionValue(t, cfg)
	waitUntil(t, "values", 10*time.Second, func() bool { return r.tagsSeen() == 4 })
	for _, c := range []struct {
		tag      string
		in, want any
	}{
		{"d", json.Number("-1.25"), -1.25},
		{"i", json.Number("2147483647"), int32(2147483647)},
		{"b", true, true},
		{"s", "set by tagbridge", "set by tagbridge"},
	} {
		out, err := s.Write(t.Context(), "sim", c.tag, c.in, "")
		if err != nil || out.Status != command.Good || !reflect.DeepEqual(out.Value, c.want) {
			t.Errorf("write %s = %+v, %v; want Good, read back %v", c.tag, out, err, c.want)
		}
	}
	if _, err := s.Write(t.Context(), "sim", "i", json.Number("2147483648"), ""); !isRefusal(err, command.OutOfRange) {
		t.Errorf("write 2^31 to an Int32: %v, want OutOfRange", err)
	}
}

// TestSessionWriteNodeOPCUA writes node-opcua's writable variables over a
// secured channel and calls its method.
func TestSessionWriteNodeOPCUA(t *testing.T) {
	p := peerproc.Start(t, peerproc.Options{Tags: 4, Args: []string{"-writable"}})
	cfg := plcConfig(t, p.Endpoint, `tags:
  - {name: i32, node: "ns=1;s=W.Int32", writable: true}
  - {name: u16, node: "ns=1;s=W.UInt16", writable: true}
  - {name: f, node: "ns=1;s=W.Float", writable: true}
  - {name: s, node: "ns=1;s=W.String", writable: true}
  - {name: dt, node: "ns=1;s=W.DateTime", writable: true}
  - {name: arr, node: "ns=1;s=W.DoubleArray", writable: true}
commands:
  methods:
    - {name: scale, object: "ns=1;s=Machine", method: "ns=1;s=Machine.Scale", args: [Double, Int32]}`)
	r, s := startSessionValue(t, cfg)
	waitUntil(t, "values", 15*time.Second, func() bool { return r.tagsSeen() == 6 })
	for _, c := range []struct {
		tag      string
		in, want any
	}{
		{"i32", json.Number("-5"), int32(-5)},
		{"u16", json.Number("65535"), uint16(65535)},
		{"f", json.Number("0.5"), float32(0.5)},
		{"s", "node-opcua", "node-opcua"},
		{"dt", "2026-01-02T03:04:05Z", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"arr", []any{json.Number("1.5"), json.Number("-2")}, []any{1.5, -2.0}},
	} {
		out, err := s.Write(t.Context(), "sim", c.tag, c.in, "")
		if err != nil || out.Status != command.Good || !reflect.DeepEqual(out.Value, c.want) {
			t.Errorf("write %s = %+v (%T), %v; want Good, read back %v", c.tag, out, out.Value, err, c.want)
		}
	}
	out, err := s.Call(t.Context(), "sim", "scale", []any{json.Number("1.5"), json.Number("-3")})
	if err != nil || out.Status != command.Good || !reflect.DeepEqual(out.Outputs, []any{-4.5}) {
		t.Errorf("call scale(1.5, -3) = %+v, %v; want Good [-4.5]", out, err)
	}
}

// TestSessionWriteSubscriptionReadBack confirms a write by the value the
// subscription delivers.
func TestSessionWriteSubscriptionReadBack(t *testing.T) {
	plc := simproc.Start(t, "-tags", "4", "-interval", "200ms", "-writable")
	cfg := plcConfig(t, plc.Endpoint, `commands: {read_back: subscription}
tags:
  - {name: int32, node: "ns=1;s=W.Int32", writable: true}
  - {name: none, node: "ns=1;s=W.Int16", writable: true}`)
	r, s := startSessionValue(t, cfg)
	waitUntil(t, "values", 10*time.Second, func() bool { return r.tagsSeen() == 2 })
	out, err := s.Write(t.Context(), "sim", "int32", json.Number("-42"), "")
	if err != nil || out.Status != command.Good || out.ReadBack != "subscription" || out.Value != int32(-42) {
		t.Errorf("write = %+v, %v; want Good, -42 from the subscription", out, err)
	}
}

// TestSessionWriteStructuresNodeOPCUA writes a structure, an array of
// structures (encoded by the DataTypeDefinition the peer serves) and a
// matrix, reads each back, and refuses what does not fit the definition
// or the shape.
func TestSessionWriteStructuresNodeOPCUA(t *testing.T) {
	p := peerproc.Start(t, peerproc.Options{Tags: 1, Policies: []string{"None"}, Modes: []string{"None"}, Args: []string{"-writable", "-structures"}})
	cfg := plcConfig(t, p.Endpoint, `tags:
  - {name: sp, node: "ns=1;s=W.Setpoint", writable: true}
  - {name: sps, node: "ns=1;s=W.SetpointArray", writable: true}
  - {name: m, node: "ns=1;s=W.DoubleMatrix", writable: true}`)
	r, s := startSessionValue(t, cfg)
	waitUntil(t, "values", 15*time.Second, func() bool { return r.tagsSeen() == 3 })
	num := func(s string) any { return json.Number(s) }
	setpoint := func(name string, value float64, limits []any) collectors.Structure {
		return collectors.Structure{TypeID: "ns=1;i=3002", Fields: []collectors.Field{{Name: "Name", Value: name}, {Name: "Value", Value: value}, {Name: "Limits", Value: limits}}}
	}
	for _, c := range []struct {
		tag      string
		in, want any
	}{
		{"sp", map[string]any{"Name": "feed", "Value": num("2.5"), "Limits": []any{num("0"), num("5")}}, setpoint("feed", 2.5, []any{0.0, 5.0})},
		{"sps", []any{map[string]any{"Name": "a", "Value": num("1"), "Limits": []any{}}, map[string]any{"Name": "b", "Value": num("-1"), "Limits": []any{num("3")}}},
			[]any{setpoint("a", 1, []any{}), setpoint("b", -1, []any{3.0})}},
		{"m", []any{[]any{num("1"), num("2"), num("3")}, []any{num("4"), num("5"), num("6.5")}}, []any{[]any{1.0, 2.0, 3.0}, []any{4.0, 5.0, 6.5}}},
	} {
		out, err := s.Write(t.Context(), "sim", c.tag, c.in, "")
		if err != nil || out.Status != command.Good || out.ReadBack != "read" || !reflect.DeepEqual(out.Value, c.want) {
			t.Errorf("write %s = %+v (%T), %v\nwant Good, read back %#v", c.tag, out, out.Value, err, c.want)
		}
	}
	for _, c := range []struct {
		name, tag string
		in        any
		status    command.Status
		reason    string
	}{
		{"missing field", "sp", map[string]any{"Name": "x", "Value": num("1")}, command.WrongType, `field "Limits": missing`},
		{"extra field", "sp", map[string]any{"Name": "x", "Value": num("1"), "Limits": []any{}, "Unit": "K"}, command.WrongType, `ns=1;i=3002 has no field "Unit" (fields: Name, Value, Limits)`},
		{"array element", "sps", []any{map[string]any{"Name": 1, "Value": num("1"), "Limits": []any{}}}, command.WrongType, `element 0: field "Name": a number for a String`},
		{"matrix shape", "m", []any{[]any{num("1"), num("2")}, []any{num("3"), num("4")}}, command.WrongType, `a 2x2 matrix; the node holds 2x3`},
		{"ragged matrix", "m", []any{[]any{num("1"), num("2"), num("3")}, []any{num("4")}}, command.WrongType, `rows of 3 and 1 elements at depth 2: a matrix is rectangular`},
	} {
		_, err := s.Write(t.Context(), "sim", c.tag, c.in, "")
		var ref *command.Refusal
		if !errors.As(err, &ref) || ref.Status != c.status || ref.Reason != c.reason {
			t.Errorf("%s: %v\nwant %s: %s", c.name, err, c.status.Name, c.reason)
		}
	}
}
