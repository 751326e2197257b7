package command

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tagbridge/tagbridge/config"
)

// recorder is an Executor that records what reaches it: the refusals
// under test must never get this far.
type recorder struct {
	mu    sync.Mutex
	calls []string
	out   Outcome
	err   error
}

func (r *recorder) Write(_ context.Context, plc, tag string, value any, named string) (Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "write "+plc+"/"+tag+" "+show(value)+" "+named)
	return r.out, r.err
}

func (r *recorder) Call(_ context.Context, plc, method string, args []any) (Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "call "+plc+"/"+method+" "+show(args))
	return r.out, r.err
}

const testConfig = `agent: {id: ipc1}
mqtt: {payload: %s, sparkplug: {group_id: plant}}
plcs:
  - name: press1
    endpoint: opc.tcp://127.0.0.1:4840
    commands:
      secret_env: %s
      methods:
        - {name: scale, object: "ns=1;s=Machine", method: "ns=1;s=Machine.Scale", args: [Double, Int32]}
    tags:
      - {name: speed, node: "ns=1;s=Speed", writable: true, write: {min: 0, max: 100}}
      - {name: mode, node: "ns=1;s=Mode", writable: true, write: {allowed: [auto, manual]}}
      - {name: recipe, node: "ns=1;s=Recipe", writable: true, write: {max_length: 4}}
      - {name: counter, node: "ns=1;s=Counter"}
`

var now = time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)

func newTestHandler(t *testing.T, payload, secretEnv string) (*Handler, *recorder) {
	t.Helper()
	if secretEnv == "" {
		secretEnv = `""`
	}
	cfg, err := config.Parse("test.yaml", []byte(fmtConfig(payload, secretEnv)))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{out: Outcome{Status: Good, Value: 42.0, ReadBack: "read"}}
	h := New(cfg, rec, zerolog.Nop())
	h.now = func() time.Time { return now }
	return h, rec
}

func fmtConfig(payload, secretEnv string) string {
	s := strings.Replace(testConfig, "%s", payload, 1)
	return strings.Replace(s, "%s", secretEnv, 1)
}

const speedSet = "tagbridge/ipc1/press1/speed/set"

// TestRefusals runs each refusal through Handle and compares the whole
// result payload; none of them reaches the executor.
func TestRefusals(t *testing.T) {
	future := now.Add(3 * time.Second).Format(time.RFC3339)
	past := now.Add(-time.Second).Format(time.RFC3339)
	cases := []struct {
		name, topic, payload string
		retained             bool
		want                 string
	}{
		{"not writable", "tagbridge/ipc1/press1/counter/set", `{"id":"c1","value":1}`, false,
			`{"id":"c1","status":"TagbridgeNotAllowed","status_code":2149515264,"error":"tag \"counter\" of plc \"press1\" is not writable"}`},
		{"unknown plc", "tagbridge/ipc1/oven/speed/set", `{"id":"c2","value":1}`, false,
			`{"id":"c2","status":"TagbridgeNotAllowed","status_code":2149515264,"error":"plc \"oven\" takes no commands"}`},
		{"method not allowed", "tagbridge/ipc1/press1/reboot/call", `{"id":"c3","args":[]}`, false,
			`{"id":"c3","status":"TagbridgeNotAllowed","status_code":2149515264,"error":"method \"reboot\" of plc \"press1\" is not allowed"}`},
		{"expired", speedSet, `{"id":"c4","value":1,"expires":"` + past + `"}`, false,
			`{"id":"c4","status":"TagbridgeExpired","status_code":2148139008,"error":"expired at 2026-12-03T14:59:59Z, received 2026-12-03T15:00:00Z"}`},
		{"sent too long ago", speedSet, `{"id":"c5","value":1,"time":"2026-12-03T14:59:50Z"}`, false,
			`{"id":"c5","status":"TagbridgeExpired","status_code":2148139008,"error":"expired at 2026-12-03T14:59:55Z, received 2026-12-03T15:00:00Z"}`},
		{"retained", speedSet, `{"id":"c6","value":1,"expires":"` + future + `"}`, true,
			`{"id":"c6","status":"TagbridgeExpired","status_code":2148139008,"error":"a retained command is never executed (it may be old)"}`},
		{"above max", speedSet, `{"id":"c7","value":100.5}`, false,
			`{"id":"c7","status":"TagbridgeOutOfRange","status_code":2151415808,"error":"100.5 is above max 100"}`},
		{"below min", speedSet, `{"id":"c8","value":-1}`, false,
			`{"id":"c8","status":"TagbridgeOutOfRange","status_code":2151415808,"error":"-1 is below min 0"}`},
		{"not allowed value", "tagbridge/ipc1/press1/mode/set", `{"id":"c9","value":"turbo"}`, false,
			`{"id":"c9","status":"TagbridgeOutOfRange","status_code":2151415808,"error":"\"turbo\" is not one of the allowed values"}`},
		{"too long", "tagbridge/ipc1/press1/recipe/set", `{"id":"c10","value":"abcde"}`, false,
			`{"id":"c10","status":"TagbridgeOutOfRange","status_code":2151415808,"error":"string of 5 characters is longer than max_length 4"}`},
		{"null", speedSet, `{"id":"c11","value":null}`, false,
			`{"id":"c11","status":"TagbridgeWrongType","status_code":2155085824,"error":"value required (null is not written)"}`},
		{"structure", speedSet, `{"id":"c12","value":{"a":1}}`, false,
			`{"id":"c12","status":"TagbridgeWrongType","status_code":2155085824,"error":"structures are not writable"}`},
		{"wrong arg count", "tagbridge/ipc1/press1/scale/call", `{"id":"c13","args":[1]}`, false,
			`{"id":"c13","status":"TagbridgeWrongType","status_code":2155085824,"error":"method \"scale\" takes 2 arguments, got 1"}`},
		{"not json", speedSet, `{"id":"c14",`, false,
			`{"id":"","status":"TagbridgeBadRequest","status_code":2147942400,"error":"not a command object: empty or truncated"}`},
		{"no id", speedSet, `{"value":1}`, false,
			`{"id":"","status":"TagbridgeBadRequest","status_code":2147942400,"error":"id required"}`},
		{"unknown key", speedSet, `{"id":"c15","value":1,"user":"x"}`, false,
			`{"id":"","status":"TagbridgeBadRequest","status_code":2147942400,"error":"not a command object: json: unknown field \"user\""}`},
		{"no value", speedSet, `{"id":"c16"}`, false,
			`{"id":"c16","status":"TagbridgeBadRequest","status_code":2147942400,"error":"value required"}`},
		{"bad expires", speedSet, `{"id":"c17","value":1,"expires":"soon"}`, false,
			`{"id":"c17","status":"TagbridgeBadRequest","status_code":2147942400,"error":"expires \"\\\"soon\\\"\" is not an RFC 3339 time"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, rec := newTestHandler(t, "json", "")
			out := h.Handle(t.Context(), c.topic, []byte(c.payload), c.retained)
			if len(out) != 1 {
				t.Fatalf("Handle gave %d results, want 1", len(out))
			}
			if out[0].Topic != c.topic+"/result" || string(out[0].Payload) != c.want {
				t.Errorf("result on %s:\n%s\nwant on %s/result:\n%s", out[0].Topic, out[0].Payload, c.topic, c.want)
			}
			if len(rec.calls) > 0 {
				t.Errorf("refused command reached the PLC: %v", rec.calls)
			}
		})
	}
}

func TestGoodWriteAndDuplicate(t *testing.T) {
	h, rec := newTestHandler(t, "json", "")
	msg := []byte(`{"id":"w1","value":55.5,"expires":"2026-12-03T15:00:02Z"}`)
	out := h.Handle(t.Context(), speedSet, msg, false)
	if want := `{"id":"w1","status":"Good","status_code":0,"value":42,"read_back":"read"}`; len(out) != 1 || string(out[0].Payload) != want {
		t.Fatalf("result %s, want %s", out, want)
	}
	// A QoS 1 redelivery: same id, within its lifetime.
	out = h.Handle(t.Context(), speedSet, msg, false)
	if want := `{"id":"w1","status":"TagbridgeDuplicate","status_code":2158952448,"error":"id \"w1\" was taken already"}`; string(out[0].Payload) != want {
		t.Errorf("redelivery result %s, want %s", out[0].Payload, want)
	}
	if len(rec.calls) != 1 || rec.calls[0] != "write press1/speed 55.5 " {
		t.Errorf("executor saw %q, want one write of 55.5", rec.calls)
	}
	if c := h.Counts(); c["Good"] != 1 || c["TagbridgeDuplicate"] != 1 {
		t.Errorf("counts %v", c)
	}
	if r := h.Recent(); len(r) != 2 || r[1].Status != "TagbridgeDuplicate" || r[0].Target != "speed" {
		t.Errorf("recent %+v", r)
	}
	// Once its lifetime is over, the id may come again (and is fresh again).
	h.now = func() time.Time { return now.Add(time.Second) }
	if out := h.Handle(t.Context(), speedSet, []byte(`{"id":"w1","value":1,"expires":"2026-12-03T15:00:09Z"}`), false); !strings.Contains(string(out[0].Payload), `"TagbridgeDuplicate"`) {
		t.Errorf("id within the first command's lifetime: %s, want a duplicate", out[0].Payload)
	}
	h.now = func() time.Time { return now.Add(3 * time.Second) }
	if out := h.Handle(t.Context(), speedSet, []byte(`{"id":"w1","value":1,"expires":"2026-12-03T15:00:09Z"}`), false); !strings.Contains(string(out[0].Payload), `"Good"`) {
		t.Errorf("id after the first command's lifetime: %s, want Good", out[0].Payload)
	}
}

func TestExecutorOutcomes(t *testing.T) {
	for _, c := range []struct {
		name string
		out  Outcome
		err  error
		want string
	}{
		{"plc down", Outcome{}, Refuse(PLCDown, "plc %q is not connected", "press1"),
			`{"id":"x","status":"TagbridgePLCDown","status_code":2156527616,"error":"plc \"press1\" is not connected"}`},
		{"wrong type", Outcome{}, Refuse(WrongType, "a string for a Double node"),
			`{"id":"x","status":"TagbridgeWrongType","status_code":2155085824,"error":"a string for a Double node"}`},
		{"plc refuses", Outcome{Status: Status{"BadNotWritable", 0x803B0000}}, nil,
			`{"id":"x","status":"BadNotWritable","status_code":2151350272,"error":"the PLC answered BadNotWritable"}`},
		{"lost mid-write", Outcome{}, context.DeadlineExceeded,
			`{"id":"x","status":"BadCommunicationError","status_code":2147811328,"error":"context deadline exceeded"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, rec := newTestHandler(t, "json", "")
			rec.out, rec.err = c.out, c.err
			out := h.Handle(t.Context(), speedSet, []byte(`{"id":"x","value":1}`), false)
			if string(out[0].Payload) != c.want {
				t.Errorf("result %s, want %s", out[0].Payload, c.want)
			}
		})
	}
}

func TestCall(t *testing.T) {
	h, rec := newTestHandler(t, "json", "")
	rec.out = Outcome{Status: Good, Outputs: []any{10.0}}
	out := h.Handle(t.Context(), "tagbridge/ipc1/press1/scale/call", []byte(`{"id":"m1","args":[2.5,4]}`), false)
	if want := `{"id":"m1","status":"Good","status_code":0,"outputs":[10]}`; string(out[0].Payload) != want {
		t.Errorf("result %s, want %s", out[0].Payload, want)
	}
	if len(rec.calls) != 1 || rec.calls[0] != "call press1/scale [2.5 4]" {
		t.Errorf("executor saw %q", rec.calls)
	}
}

func sign(key, topic, id, value, expires string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(SignedBytes(topic, id, []byte(value), expires))
	return hex.EncodeToString(m.Sum(nil))
}

func TestHMAC(t *testing.T) {
	const key = "0123456789abcdef-plant-key"
	t.Setenv("PRESS1_CMD_KEY", key)
	h, rec := newTestHandler(t, "json", "PRESS1_CMD_KEY")
	exp := "2026-12-03T15:00:03Z"
	good := sign(key, speedSet, "s1", "12", exp)
	for _, c := range []struct{ name, payload, want string }{
		{"missing", `{"id":"s0","value":12}`,
			`{"id":"s0","status":"TagbridgeBadSignature","status_code":2153185280,"error":"hmac required"}`},
		{"other value", `{"id":"s1","value":13,"expires":"` + exp + `","hmac":"` + good + `"}`,
			`{"id":"s1","status":"TagbridgeBadSignature","status_code":2153185280,"error":"hmac does not match"}`},
		{"other key", `{"id":"s1","value":12,"expires":"` + exp + `","hmac":"` + sign("another key of 16+", speedSet, "s1", "12", exp) + `"}`,
			`{"id":"s1","status":"TagbridgeBadSignature","status_code":2153185280,"error":"hmac does not match"}`},
		{"not hex", `{"id":"s1","value":12,"hmac":"zz"}`,
			`{"id":"s1","status":"TagbridgeBadSignature","status_code":2153185280,"error":"hmac must be 64 hex digits (HMAC-SHA256)"}`},
		{"good", `{"id":"s1","value":12,"expires":"` + exp + `","hmac":"` + good + `"}`,
			`{"id":"s1","status":"Good","status_code":0,"value":42,"read_back":"read"}`},
	} {
		out := h.Handle(t.Context(), speedSet, []byte(c.payload), false)
		if string(out[0].Payload) != c.want {
			t.Errorf("%s: result %s, want %s", c.name, out[0].Payload, c.want)
		}
	}
	if len(rec.calls) != 1 {
		t.Errorf("executor saw %q, want only the signed write", rec.calls)
	}
}

func TestFilters(t *testing.T) {
	h, _ := newTestHandler(t, "json", "")
	got := strings.Join(h.Filters(), " ")
	if want := "tagbridge/ipc1/+/+/call tagbridge/ipc1/+/+/set"; got != want {
		t.Errorf("filters %q, want %q", got, want)
	}
	sp, _ := newTestHandler(t, "sparkplug_b", "")
	if got, want := strings.Join(sp.Filters(), " "), "tagbridge/ipc1/+/+/call tagbridge/ipc1/+/+/set spBv1.0/plant/DCMD/ipc1/+ spBv1.0/plant/NCMD/ipc1"; got != want {
		t.Errorf("sparkplug filters %q, want %q", got, want)
	}
}

func TestOPCUAJSONVariant(t *testing.T) {
	h, rec := newTestHandler(t, "opcua_json", "")
	out := h.Handle(t.Context(), speedSet, []byte(`{"id":"u1","value":{"Type":11,"Body":12.5}}`), false)
	if !strings.Contains(string(out[0].Payload), `"Good"`) || rec.calls[0] != "write press1/speed 12.5 Double" {
		t.Errorf("result %s, executor %q", out[0].Payload, rec.calls)
	}
	out = h.Handle(t.Context(), speedSet, []byte(`{"id":"u2","value":{"UaType":22,"Value":{}}}`), false)
	if want := `{"id":"u2","status":"TagbridgeWrongType","status_code":2155085824,"error":"UaType 22 is not a writable built-in type id"}`; string(out[0].Payload) != want {
		t.Errorf("result %s, want %s", out[0].Payload, want)
	}
}

// dcmd builds a Sparkplug DCMD payload.
func dcmd(ts, seq uint64, metrics ...[]byte) []byte {
	var b []byte
	b = protowire.AppendTag(b, spPayloadTimestamp, protowire.VarintType)
	b = protowire.AppendVarint(b, ts)
	for _, m := range metrics {
		b = protowire.AppendTag(b, spPayloadMetrics, protowire.BytesType)
		b = protowire.AppendBytes(b, m)
	}
	b = protowire.AppendTag(b, spPayloadSeq, protowire.VarintType)
	return protowire.AppendVarint(b, seq)
}

func metric(name string, alias uint64, dt uint64, value func([]byte) []byte) []byte {
	var m []byte
	if name != "" {
		m = protowire.AppendTag(m, spMetricName, protowire.BytesType)
		m = protowire.AppendString(m, name)
	} else {
		m = protowire.AppendTag(m, spMetricAlias, protowire.VarintType)
		m = protowire.AppendVarint(m, alias)
	}
	m = protowire.AppendTag(m, spMetricDatatype, protowire.VarintType)
	m = protowire.AppendVarint(m, dt)
	return value(m)
}

func double(f float64) func([]byte) []byte {
	return func(m []byte) []byte {
		m = protowire.AppendTag(m, spMetricDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(m, math.Float64bits(f))
	}
}

func TestSparkplugDCMD(t *testing.T) {
	h, rec := newTestHandler(t, "sparkplug_b", "")
	h.SetAliases(func(plc string, alias uint64) (string, bool) {
		if plc == "press1" && alias == 7 {
			return "speed", true
		}
		return "", false
	})
	const topic = "spBv1.0/plant/DCMD/ipc1/press1"
	ms := uint64(now.UnixMilli())
	int32Metric := metric("recipe", 0, 3, func(m []byte) []byte {
		m = protowire.AppendTag(m, spMetricInt, protowire.VarintType)
		return protowire.AppendVarint(m, uint64(uint32(0xFFFFFFFF))) // -1, two's complement
	})
	arr := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, math.Float64bits(1.5)), math.Float64bits(2))
	arrayMetric := metric("speed", 0, spArray+10, func(m []byte) []byte {
		m = protowire.AppendTag(m, spMetricBytes, protowire.BytesType)
		return protowire.AppendBytes(m, arr)
	})
	out := h.Handle(t.Context(), topic, dcmd(ms, 3, metric("", 7, 10, double(12.5)), metric("counter", 0, 10, double(1))), false)
	if len(out) != 2 {
		t.Fatalf("%d results, want 2", len(out))
	}
	if want := `{"id":"dcmd/` + itoa(ms) + `/3/speed","status":"Good","status_code":0,"value":42,"read_back":"read"}`; string(out[0].Payload) != want || out[0].Topic != speedSet+"/result" {
		t.Errorf("alias write: %s on %s, want %s", out[0].Payload, out[0].Topic, want)
	}
	if want := `{"id":"dcmd/` + itoa(ms) + `/3/counter","status":"TagbridgeNotAllowed","status_code":2149515264,"error":"tag \"counter\" of plc \"press1\" is not writable"}`; string(out[1].Payload) != want {
		t.Errorf("counter: %s, want %s", out[1].Payload, want)
	}
	// The same DCMD again (a QoS 1 redelivery) writes nothing.
	out = h.Handle(t.Context(), topic, dcmd(ms, 3, metric("", 7, 10, double(12.5))), false)
	if !strings.Contains(string(out[0].Payload), "TagbridgeDuplicate") {
		t.Errorf("redelivered DCMD: %s", out[0].Payload)
	}
	// Sent 6 s ago: stale with the default 5 s expiry.
	out = h.Handle(t.Context(), topic, dcmd(ms-6000, 4, metric("speed", 0, 10, double(1))), false)
	if !strings.Contains(string(out[0].Payload), "TagbridgeExpired") {
		t.Errorf("old DCMD: %s", out[0].Payload)
	}
	h.Handle(t.Context(), topic, dcmd(ms, 5, int32Metric), false)
	h.Handle(t.Context(), topic, dcmd(ms, 6, arrayMetric), false)
	want := []string{"write press1/speed 12.5 Double", "write press1/recipe -1 Int32", "write press1/speed [1.5 2] Double[]"}
	if strings.Join(rec.calls, "|") != strings.Join(want, "|") {
		t.Errorf("executor saw %q, want %q", rec.calls, want)
	}
	out = h.Handle(t.Context(), topic, []byte{0xff, 0xff}, false)
	if len(out) != 0 {
		t.Errorf("garbage DCMD answered on %v (it names no tag to answer on)", out)
	}
	if c := h.Counts(); c["TagbridgeBadRequest"] != 1 {
		t.Errorf("garbage DCMD not counted: %v", c)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestInheritKeepsIDs: a handler built for a reloaded configuration still
// knows the ids taken before, so a redelivery after the reload is refused.
func TestInheritKeepsIDs(t *testing.T) {
	old, _ := newTestHandler(t, "json", "")
	msg := []byte(`{"id":"r1","value":1,"expires":"2026-12-03T15:00:03Z"}`)
	old.Handle(t.Context(), speedSet, msg, false)
	h, rec := newTestHandler(t, "json", "")
	h.Inherit(old)
	out := h.Handle(t.Context(), speedSet, msg, false)
	if !strings.Contains(string(out[0].Payload), "TagbridgeDuplicate") || len(rec.calls) != 0 {
		t.Errorf("after reload: %s, executor %q", out[0].Payload, rec.calls)
	}
	if c := h.Counts(); c["Good"] != 1 || c["TagbridgeDuplicate"] != 1 {
		t.Errorf("counts after reload %v", c)
	}
}

// TestSparkplugNCMD: an NCMD metric named <device>/<tag> writes that
// device's tag; node controls other than Rebirth are refused on the node's
// result topic; Rebirth is left to the format.
func TestSparkplugNCMD(t *testing.T) {
	h, rec := newTestHandler(t, "sparkplug_b", "")
	const topic = "spBv1.0/plant/NCMD/ipc1"
	ms := uint64(now.UnixMilli())
	boolean := func(m []byte) []byte {
		m = protowire.AppendTag(m, spMetricBool, protowire.VarintType)
		return protowire.AppendVarint(m, 1)
	}
	out := h.Handle(t.Context(), topic, dcmd(ms, 1,
		metric("press1/speed", 0, 10, double(12.5)),
		metric("Node Control/Rebirth", 0, 11, boolean),
		metric("Node Control/Reboot", 0, 11, boolean),
		metric("press9/speed", 0, 10, double(1)),
		metric("", 3, 10, double(1)),
	), false)
	want := []Message{
		{speedSet + "/result", []byte(`{"id":"ncmd/` + itoa(ms) + `/1/press1/speed","status":"Good","status_code":0,"value":42,"read_back":"read"}`)},
		{"tagbridge/ipc1/ncmd/result", []byte(`{"id":"ncmd/` + itoa(ms) + `/1/Node Control/Reboot","status":"TagbridgeNotAllowed","status_code":2149515264,"error":"Node Control/Reboot is not supported: tagbridge takes Node Control/Rebirth only (it restarts through its service manager)"}`)},
		{"tagbridge/ipc1/ncmd/result", []byte(`{"id":"ncmd/` + itoa(ms) + `/1/press9/speed","status":"TagbridgeNotAllowed","status_code":2149515264,"error":"metric \"press9/speed\" names no device/tag of this node"}`)},
		{"tagbridge/ipc1/ncmd/result", []byte(`{"id":"ncmd/` + itoa(ms) + `/1/","status":"TagbridgeBadRequest","status_code":2147942400,"error":"an NCMD metric is named device/tag or Node Control/...; aliases are a device's (DCMD)"}`)},
	}
	if len(out) != len(want) {
		t.Fatalf("%d results, want %d: %v", len(out), len(want), out)
	}
	for i := range want {
		if out[i].Topic != want[i].Topic || string(out[i].Payload) != string(want[i].Payload) {
			t.Errorf("result %d: %s on %s\nwant %s on %s", i, out[i].Payload, out[i].Topic, want[i].Payload, want[i].Topic)
		}
	}
	if got := strings.Join(rec.calls, "|"); got != "write press1/speed 12.5 Double" {
		t.Errorf("executor saw %q", got)
	}
	if out := h.Handle(t.Context(), topic, dcmd(ms, 2, metric("Node Control/Rebirth", 0, 11, boolean)), false); len(out) != 0 {
		t.Errorf("rebirth answered by write-back: %v", out)
	}
}

// withHMAC adds the "hmac" property to a metric, computed over the metric
// as it is (without properties), as a sender does.
func withHMAC(topic, id, key string, m []byte) []byte {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(SignedBytes(topic, id, m, ""))
	var value []byte
	value = protowire.AppendTag(value, 1, protowire.VarintType) // type String
	value = protowire.AppendVarint(value, 12)
	value = protowire.AppendTag(value, spPropertyString, protowire.BytesType)
	value = protowire.AppendString(value, hex.EncodeToString(mac.Sum(nil)))
	var set []byte
	set = protowire.AppendTag(set, spPropertyKeys, protowire.BytesType)
	set = protowire.AppendString(set, "hmac")
	set = protowire.AppendTag(set, spPropertyValues, protowire.BytesType)
	set = protowire.AppendBytes(set, value)
	// Properties (9) before the value (13), as protobuf orders fields.
	name := metric("speed", 0, 10, func(m []byte) []byte { return m })
	out := append([]byte{}, name...)
	out = protowire.AppendTag(out, spMetricProperties, protowire.BytesType)
	out = protowire.AppendBytes(out, set)
	return append(out, m[len(name):]...)
}

// TestSparkplugHMAC: a PLC entry with a key takes a DCMD whose metric
// carries the right "hmac" property, and refuses one without or with a
// wrong one.
func TestSparkplugHMAC(t *testing.T) {
	t.Setenv("SP_KEY", "sparkplug-key-0123")
	h, rec := newTestHandler(t, "sparkplug_b", "SP_KEY")
	const topic = "spBv1.0/plant/DCMD/ipc1/press1"
	ms := uint64(now.UnixMilli())
	plain := metric("speed", 0, 10, double(12.5))
	id := func(seq int) string { return "dcmd/" + itoa(ms) + "/" + strconv.Itoa(seq) + "/speed" }
	for _, c := range []struct {
		name   string
		seq    uint64
		metric []byte
		want   string
	}{
		{"signed", 1, withHMAC(topic, id(1), "sparkplug-key-0123", plain), `"status":"Good"`},
		{"unsigned", 2, plain, `"error":"hmac required (the metric's property \"hmac\")"`},
		{"wrong key", 3, withHMAC(topic, id(3), "another-key", plain), `"error":"hmac does not match"`},
		{"signed for another id", 4, withHMAC(topic, id(1), "sparkplug-key-0123", plain), `"error":"hmac does not match"`},
		{"value changed after signing", 5, withHMAC(topic, id(5), "sparkplug-key-0123", metric("speed", 0, 10, double(99))), `"status":"Good"`},
	} {
		m := c.metric
		if c.name == "value changed after signing" {
			m = append(m[:len(m)-8:len(m)-8], protowire.AppendFixed64(nil, math.Float64bits(50))...)
			c.want = `"error":"hmac does not match"`
		}
		out := h.Handle(t.Context(), topic, dcmd(ms, c.seq, m), false)
		if len(out) != 1 || !strings.Contains(string(out[0].Payload), c.want) {
			t.Errorf("%s: %v, want %s", c.name, out, c.want)
		}
	}
	if got := strings.Join(rec.calls, "|"); got != "write press1/speed 12.5 Double" {
		t.Errorf("executor saw %q, want the signed write alone", got)
	}
}
