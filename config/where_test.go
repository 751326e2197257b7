package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseWhere(t *testing.T) {
	typ, _ := ParseNodeID("i=2915")
	tests := []struct {
		in   string
		want []Clause
		err  string
	}{
		{"", nil, ""},
		{"Severity >= 500", []Clause{{"Severity", ">=", int64(500)}}, ""},
		{"Severity>500 AND SourceName = 'Tank ''1''' and type = i=2915 and Retain = true and Value < 1.5",
			[]Clause{{"Severity", ">", int64(500)}, {"SourceName", "=", "Tank '1'"}, {"type", "=", typ}, {"Retain", "=", true}, {"Value", "<", 1.5}}, ""},
		{"ActiveState/Id = false", []Clause{{"ActiveState/Id", "=", false}}, ""},
		{"Severity != 5", nil, "want one of"},
		{"Severity", nil, "want <field> <op> <value>"},
		{"Severity 5", nil, "want one of"},
		{"Severity >= ", nil, "missing value"},
		{"Severity >= high", nil, "not a number"},
		{"SourceName = 'open", nil, "unterminated"},
		{"Severity > 1 or Severity < 0", nil, `want "and"`},
		{"Severity > 1 and", nil, "want \"and\""},
		{"type < i=2915", nil, "only ="},
		{"type = nonsense", nil, "type"},
	}
	for _, tc := range tests {
		got, err := ParseWhere(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseWhere(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseWhere(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
}
