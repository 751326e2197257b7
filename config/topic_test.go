package config

import "testing"

// A name that becomes a topic level is refused for every character the
// published topic could not hold, not only for "/", "+", "#" and NUL: the
// rule is the one payload.Level and payload.CheckTopic apply.
func TestTopicLevel(t *testing.T) {
	tests := map[string]bool{
		"press1":             true,
		"Presse 1 – Halle ä": true,
		"":                   false,
		"a/b":                false,
		"a+b":                false,
		"a#b":                false,
		"a\x00b":             false,
		"a\tb":               false,
		"a\u0085b":           false,
		"a\uffffb":           false,
	}
	for name, ok := range tests {
		v := &validator{c: &Config{}}
		v.topicLevel("plcs[0].name", name)
		if got := len(v.errs) == 0; got != ok {
			t.Errorf("topicLevel(%q): accepted %v, want %v (%v)", name, got, ok, v.errs)
		}
		if ok && CheckTopic("x/"+name) != nil {
			t.Errorf("%q accepted as a level but its topic is refused: %v", name, CheckTopic("x/"+name))
		}
	}
}
