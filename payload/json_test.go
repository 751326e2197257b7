package payload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/internal/testkit"
)

func TestAppendJSONExample(t *testing.T) {
	s := collectors.Sample{
		PLC: "press1", Tag: "temperature", Node: "ns=2;s=Line1.Temp",
		Value: 21.5, Type: collectors.TypeDouble, StatusCode: 0,
		SourceTime: time.Date(2026, 11, 22, 10, 15, 30, 123456000, time.UTC),
		// Not UTC on purpose: the output is.
		ServerTime: time.Date(2026, 11, 22, 11, 15, 30, 124000000, time.FixedZone("CET", 3600)),
	}
	want := `{"plc":"press1","tag":"temperature","node":"ns=2;s=Line1.Temp","value":21.5,"type":"Double","status":"Good","status_code":0,"time":"2026-11-22T10:15:30.123456Z","source_time":"2026-11-22T10:15:30.123456Z","server_time":"2026-11-22T10:15:30.124Z"}`
	if got := string(AppendJSON(nil, &s)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestAppendJSONTime: every message has time, which a consumer keys on:
// the source timestamp, else the server's, else the agent's clock.
func TestAppendJSONTime(t *testing.T) {
	src := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	srv := src.Add(time.Second)
	head := `{"plc":"p","tag":"t","node":"i=1","value":true,"type":"Boolean","status":"BadCommunicationError","status_code":2147811328,"time":`
	tests := []struct {
		name     string
		src, srv time.Time
		want     string // after head; "" for the agent's clock
	}{
		{"both", src, srv, `"2026-01-02T03:04:05Z","source_time":"2026-01-02T03:04:05Z","server_time":"2026-01-02T03:04:06Z"}`},
		{"server only", time.Time{}, srv, `"2026-01-02T03:04:06Z","server_time":"2026-01-02T03:04:06Z"}`},
		{"neither", time.Time{}, time.Time{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := collectors.Sample{PLC: "p", Tag: "t", Node: "i=1", Value: true, Type: collectors.TypeBoolean, StatusCode: 0x80050000, SourceTime: tt.src, ServerTime: tt.srv}
			before := time.Now()
			got := string(AppendJSON(nil, &s))
			after := time.Now()
			rest, ok := strings.CutPrefix(got, head)
			if !ok {
				t.Fatalf("got\n%s\nwant prefix\n%s", got, head)
			}
			if tt.want != "" {
				if rest != tt.want {
					t.Errorf("got\n%s\nwant\n%s", rest, tt.want)
				}
				return
			}
			var m struct {
				Time       time.Time
				SourceTime *string `json:"source_time"`
				ServerTime *string `json:"server_time"`
			}
			if err := json.Unmarshal([]byte(got), &m); err != nil {
				t.Fatal(err)
			}
			if m.Time.Before(before.Truncate(time.Microsecond)) || m.Time.After(after) || m.SourceTime != nil || m.ServerTime != nil {
				t.Errorf("got %s, want time between %v and %v and no source_time or server_time", got, before, after)
			}
		})
	}
}

func TestAppendJSONValues(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("X", -7200))
	tests := []struct {
		name  string
		value any
		want  string // the value's exact JSON text
		dec   any    // what encoding/json decodes it to
	}{
		{"nil", nil, `null`, nil},
		{"true", true, `true`, true},
		{"false", false, `false`, false},
		{"int", -42, `"-42"`, "-42"},
		{"int8", int8(-128), `-128`, -128.0},
		{"int16", int16(-32768), `-32768`, -32768.0},
		{"int32", int32(-2147483648), `-2147483648`, -2147483648.0},
		{"int64 min", int64(math.MinInt64), `"-9223372036854775808"`, "-9223372036854775808"},
		{"int64 past 2^53", int64(1<<53 + 1), `"9007199254740993"`, "9007199254740993"},
		{"int64 small", int64(5), `"5"`, "5"},
		{"uint", uint(7), `"7"`, "7"},
		{"uint8", uint8(255), `255`, 255.0},
		{"uint16", uint16(65535), `65535`, 65535.0},
		{"uint32", uint32(4294967295), `4294967295`, 4294967295.0},
		{"uint64 max", uint64(math.MaxUint64), `"18446744073709551615"`, "18446744073709551615"},
		{"float64", 21.5, `21.5`, 21.5},
		{"float64 third", 1.0 / 3, `0.3333333333333333`, 1.0 / 3},
		{"float64 zero", 0.0, `0`, 0.0},
		{"float64 negative zero", math.Copysign(0, -1), `-0`, math.Copysign(0, -1)},
		{"float64 small", 1e-7, `1e-7`, 1e-7},
		{"float64 large", 1e21, `1e+21`, 1e21},
		{"float64 below large", 1e20, `100000000000000000000`, 1e20},
		{"float64 max", math.MaxFloat64, `1.7976931348623157e+308`, math.MaxFloat64},
		{"float32", float32(0.1), `0.1`, 0.1},
		{"float32 small", float32(1e-7), `1e-7`, 1e-7},
		{"float32 max", float32(math.MaxFloat32), `3.4028235e+38`, 3.4028235e+38},
		{"NaN", math.NaN(), `null,"nonfinite":"NaN"`, nil},
		{"+Inf", math.Inf(1), `null,"nonfinite":"Infinity"`, nil},
		{"-Inf", math.Inf(-1), `null,"nonfinite":"-Infinity"`, nil},
		{"float32 NaN", float32(math.NaN()), `null,"nonfinite":"NaN"`, nil},
		{"float32 -Inf", float32(math.Inf(-1)), `null,"nonfinite":"-Infinity"`, nil},
		{"string", "hello", `"hello"`, "hello"},
		{"string empty", "", `""`, ""},
		{"string escapes", "a\"b\\c\nd\re\tf\bg\fh\x00i\x1fj", `"a\"b\\c\nd\re\tf\bg\fh\u0000i\u001fj"`, "a\"b\\c\nd\re\tf\bg\fh\x00i\x1fj"},
		{"string html unescaped", "<a&b>", `"<a&b>"`, "<a&b>"},
		{"string unicode", "Grüße €😀", `"Grüße €😀"`, "Grüße €😀"},
		{"string invalid utf8", "a\xffb\xc3", `"a\ufffdb\ufffd"`, "a\ufffdb\ufffd"},
		{"string line separators", "a\u2028b\u2029c", `"a\u2028b\u2029c"`, "a\u2028b\u2029c"},
		{"bytes", []byte{0, 1, 2, 0xff}, `"AAEC/w=="`, "AAEC/w=="},
		{"bytes empty", []byte{}, `""`, ""},
		{"time", ts, `"2026-01-02T05:04:05.0000006Z"`, "2026-01-02T05:04:05.0000006Z"},
		{"array", []any{int64(1), "x", []any{true, nil}, math.NaN(), 2.5}, `["1","x",[true,null],null,2.5]`, []any{"1", "x", []any{true, nil}, nil, 2.5}},
		{"array uint64", []any{uint64(math.MaxUint64), uint64(0)}, `["18446744073709551615","0"]`, []any{"18446744073709551615", "0"}},
		{"array empty", []any{}, `[]`, []any{}},
		{"structure", map[string]any{"b": 2.5, "a": map[string]any{"x": "y"}, "c": math.Inf(1), "d": int64(-9007199254740993)}, `{"a":{"x":"y"},"b":2.5,"c":null,"d":"-9007199254740993"}`, map[string]any{"a": map[string]any{"x": "y"}, "b": 2.5, "c": nil, "d": "-9007199254740993"}},
		{"fallback", []int{1, 2}, `[1,2]`, []any{1.0, 2.0}},
		{"fallback unsupported", []float64{math.NaN()}, `null`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := collectors.Sample{PLC: "p", Tag: "t", Node: "n", Value: tt.value, Type: collectors.TypeVariant, SourceTime: ts}
			got := AppendJSON([]byte("prefix"), &s)
			if !bytes.HasPrefix(got, []byte("prefix")) {
				t.Fatalf("dst not appended to: %s", got)
			}
			got = got[len("prefix"):]
			want := `{"plc":"p","tag":"t","node":"n","value":` + tt.want + `,"type":"Variant","status":"Good","status_code":0,"time":"2026-01-02T05:04:05.0000006Z","source_time":"2026-01-02T05:04:05.0000006Z"}`
			if string(got) != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
			if !json.Valid(got) {
				t.Fatalf("invalid JSON: %s", got)
			}
			var m map[string]any
			if err := json.Unmarshal(got, &m); err != nil {
				t.Fatal(err)
			}
			if dec := m["value"]; !reflect.DeepEqual(dec, tt.dec) && !bothNegZero(dec, tt.dec) {
				t.Errorf("value decodes to %#v, want %#v", dec, tt.dec)
			}
		})
	}
}

func bothNegZero(a, b any) bool {
	x, ok1 := a.(float64)
	y, ok2 := b.(float64)
	return ok1 && ok2 && x == 0 && y == 0 && math.Signbit(x) == math.Signbit(y)
}

// TestAppendJSONAllocs holds the hot path to zero allocations for scalars.
func TestAppendJSONAllocs(t *testing.T) {
	ts := time.Now()
	for _, v := range []any{21.5, float32(1.5), int64(-1), uint64(1), int32(7), true, "text with \"quotes\"", []byte("raw"), ts, nil} {
		s := collectors.Sample{PLC: "press1", Tag: "temperature", Node: "ns=2;s=Line1.Temp", Value: v, Type: collectors.TypeDouble, SourceTime: ts, ServerTime: ts}
		dst := make([]byte, 0, 512)
		if n := testing.AllocsPerRun(100, func() { dst = AppendJSON(dst[:0], &s) }); n != 0 {
			t.Errorf("%T: %v allocs per call, want 0", v, n)
		}
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("press1", "temperature", "hello", 21.5)
	f.Add("", "\x00", "a\xffb\u2028\"\\", math.Inf(1))
	f.Add("<&>", "ü", "\x7f\x80", 1e-7)
	f.Add("p", "t", "", 1e21)
	f.Fuzz(func(t *testing.T, plc, tag, str string, fl float64) {
		for _, v := range []any{str, fl, float32(fl)} {
			code := collectors.StatusCode(math.Float64bits(fl) >> 32)
			s := collectors.Sample{PLC: plc, Tag: tag, Node: str, Value: v, StatusCode: code}
			got := AppendJSON(nil, &s)
			if !json.Valid(got) {
				t.Fatalf("invalid JSON for %q: %s", v, got)
			}
			var dec struct {
				PLC, Tag, Node, Status string
				Value                  json.RawMessage
			}
			if err := json.Unmarshal(got, &dec); err != nil {
				t.Fatal(err)
			}
			// Strings decode to what encoding/json would give.
			for _, c := range []struct{ got, in string }{{dec.PLC, plc}, {dec.Tag, tag}, {dec.Node, str}, {dec.Status, code.String()}} {
				if want := roundTrip(t, c.in); c.got != want {
					t.Errorf("string %q decodes to %q, want %q", c.in, c.got, want)
				}
			}
			// Values are byte for byte what encoding/json writes, except for
			// the non-finite floats it rejects, which are null.
			var want []byte
			if nonFiniteName(v) != "" {
				want = []byte("null")
			} else {
				want = marshal(t, v)
			}
			if !bytes.Equal(dec.Value, want) {
				t.Errorf("value %v: got %s, want %s", v, dec.Value, want)
			}
		}
	})
}

// marshal is encoding/json's output for v, without HTML escaping.
func marshal(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func roundTrip(t *testing.T, s string) string {
	t.Helper()
	var out string
	if err := json.Unmarshal(marshal(t, s), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func BenchmarkAppendJSON(b *testing.B) {
	ts := time.Date(2026, 11, 22, 10, 15, 30, 123456000, time.UTC)
	for _, bc := range []struct {
		name  string
		value any
	}{
		{"float64", 21.5},
		{"int64", int64(123456789)},
		{"bool", true},
		{"string", "Line 1 running"},
		{"array", []any{1.5, 2.5, 3.5}},
	} {
		s := collectors.Sample{PLC: "press1", Tag: "temperature", Node: "ns=2;s=Line1.Temp", Value: bc.value, Type: collectors.TypeDouble, SourceTime: ts, ServerTime: ts}
		bench := func(b *testing.B) {
			dst := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				dst = AppendJSON(dst[:0], &s)
			}
			b.SetBytes(int64(len(dst)))
		}
		b.Run(bc.name, bench)
		if s.Unbox() {
			b.Run(bc.name+"-unboxed", bench)
		}
	}
}

// appendTime writes what AppendFormat(time.RFC3339Nano) writes, in UTC.
func TestAppendTime(t *testing.T) {
	times := []time.Time{
		{},
		time.Date(2026, 11, 22, 10, 15, 30, 0, time.UTC),
		time.Date(2026, 11, 22, 10, 15, 30, 123456000, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 1, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2026, 6, 1, 12, 0, 0, 100000000, time.FixedZone("CEST", 2*3600)),
		time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC), // OPC UA's zero
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		times = append(times, time.Unix(r.Int64N(1<<36)-1<<35, r.Int64N(1e9)).In(time.Local))
	}
	for _, tm := range times {
		want := `"` + tm.UTC().Format(time.RFC3339Nano) + `"`
		if got := string(AppendTime(nil, tm)); got != want {
			t.Fatalf("appendTime(%v) = %s, want %s", tm, got, want)
		}
	}
}

func BenchmarkAppendTime(b *testing.B) {
	ts := time.Date(2026, 11, 22, 10, 15, 30, 123456000, time.UTC)
	dst := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendTime(dst[:0], ts)
	}
}

// TestAppendJSONGolden holds the default JSON of every built-in type, the
// samples of the Part 14 tests, to testdata/json/values.golden, and checks
// that the JSON type of value depends only on the tag's type (null aside)
// and that 64-bit integers read back exactly.
func TestAppendJSONGolden(t *testing.T) {
	ts := time.Date(2026, 11, 22, 10, 15, 30, 0, time.UTC)
	var out bytes.Buffer
	kinds := map[collectors.Type]map[string]bool{} // type -> JSON kinds of scalar values
	for _, c := range append(testkit.ValueCases(), testkit.ExtraValueCases()...) {
		s := c.Sample
		s.PLC, s.Tag, s.Node = "press1", "t", "ns=2;s=T"
		if s.SourceTime.IsZero() && s.ServerTime.IsZero() {
			s.ServerTime = ts
		}
		got := AppendJSON(nil, &s)
		fmt.Fprintf(&out, "%s\t%s\n", c.Name, got)
		var m map[string]json.RawMessage
		if err := json.Unmarshal(got, &m); err != nil {
			t.Fatalf("%s: %v: %s", c.Name, err, got)
		}
		if _, isArr := s.Value.([]any); isArr {
			continue
		}
		kind := "null"
		switch v := m["value"]; v[0] {
		case '"':
			kind = "string"
		case '{':
			kind = "object"
		case 't', 'f':
			kind = "boolean"
		case 'n':
		default:
			kind = "number"
		}
		if kind != "null" && s.Type != collectors.TypeVariant { // a Variant tag takes whatever the PLC puts in it
			if kinds[s.Type] == nil {
				kinds[s.Type] = map[string]bool{}
			}
			kinds[s.Type][kind] = true
		}
		switch v := s.Value.(type) {
		case int64:
			if string(m["value"]) != `"`+strconv.FormatInt(v, 10)+`"` {
				t.Errorf("%s: value %s", c.Name, m["value"])
			}
		case uint64:
			if string(m["value"]) != `"`+strconv.FormatUint(v, 10)+`"` {
				t.Errorf("%s: value %s", c.Name, m["value"])
			}
		}
	}
	for typ, ks := range kinds {
		if len(ks) > 1 {
			t.Errorf("type %s: value is %v depending on the value", typ, slices.Sorted(maps.Keys(ks)))
		}
	}
	testkit.Golden(t, "testdata/json/values.golden", out.Bytes())
}

// A heartbeat says so; a value that changed does not carry the key.
func TestAppendJSONHeartbeat(t *testing.T) {
	s := collectors.Sample{PLC: "p", Tag: "t", Value: 1.5, Type: collectors.TypeDouble, StatusCode: 0x80310000, Heartbeat: true}
	if got := string(AppendJSON(nil, &s)); !strings.HasSuffix(got, `,"heartbeat":true}`) {
		t.Errorf("heartbeat %s", got)
	}
	s.Heartbeat = false
	if got := string(AppendJSON(nil, &s)); strings.Contains(got, "heartbeat") {
		t.Errorf("change %s", got)
	}
}
