package yamlfile

import "testing"

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{"c.yaml", 41, "plcs[2].tags[5].node", "bad"}, "c.yaml:41: plcs[2].tags[5].node: bad"},
		{Error{"c.yaml", 6, "", "syntax"}, "c.yaml:6: syntax"},
		{Error{"c.yaml", 0, "", "no line"}, "c.yaml: no line"},
		{Error{"", 0, "mqtt.qos", "bad"}, "mqtt.qos: bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	es := Errors{tests[0].e, tests[1].e}
	if got, want := es.Error(), tests[0].want+"\n"+tests[1].want; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
}
