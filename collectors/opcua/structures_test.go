package opcua

import (
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

func TestDeclaredType(t *testing.T) {
	tests := []struct {
		name  string
		dt    *ua.NodeID
		array bool
		want  string
	}{
		{"built-in", ua.NewNumericNodeID(0, 11), false, "Double"},
		{"array", ua.NewNumericNodeID(0, 6), true, "Int32[]"},
		{"subtype as its built-in type", ua.NewNumericNodeID(0, 294), false, "DateTime"},
		{"enumeration", ua.NewNumericNodeID(0, 29), false, "Int32"},
		{"structure", ua.NewNumericNodeID(0, 22), false, "Null"},
		{"abstract", ua.NewNumericNodeID(0, 26), false, "Null"},
		{"a PLC's own type", ua.NewNumericNodeID(2, 11), false, "Null"},
		{"string id", ua.NewStringNodeID(0, "Double"), false, "Null"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := declaredType(tc.dt, tc.array).String(); got != tc.want {
				t.Errorf("declaredType(%v, %v) = %q, want %q", tc.dt, tc.array, got, tc.want)
			}
		})
	}
}

// Each tag's declared type is read from the server with the structures.
func TestSessionLearnsDeclaredTypes(t *testing.T) {
	plc := simproc.Start(t, "-tags", "4", "-interval", "100ms")
	r, s := startSessionValue(t, plcConfig(t, plc.Endpoint, simproc.Tags(t, 4)))
	waitUntil(t, "values from every tag", 15*time.Second, func() bool { return r.tagsSeen() == 4 })
	r.shutdown(t)
	want := map[string]string{"double_0000": "Double", "int32_0001": "Int32", "boolean_0002": "Boolean", "string_0003": "String"}
	for h, tag := range s.tags {
		if got := s.declared[h].String(); got != want[tag.Name] {
			t.Errorf("%s: declared %q, want %q", tag.Name, got, want[tag.Name])
		}
	}
}
