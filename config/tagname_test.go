package config

import "testing"

// TestDefaultTagNameSiemens: TIA Portal's quoted string ids give clean names.
func TestDefaultTagNameSiemens(t *testing.T) {
	for raw, want := range map[string]string{
		`ns=3;s="DB_Press"."Temp"`:          "DB_Press.Temp",
		`ns=3;s="DB_Line"."Motors"[2]."On"`: "DB_Line.Motors[2].On",
		`ns=3;s="Tank level"`:               "Tank_level",
		`ns=2;s=Line1.Temp`:                 "Line1.Temp",
		`ns=2;i=6012`:                       "6012",
	} {
		if got := defaultTagName(NodeID{Raw: raw}); got != want {
			t.Errorf("defaultTagName(%q) = %q, want %q", raw, got, want)
		}
	}
}
