package config

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestParseNodeID(t *testing.T) {
	tests := []struct {
		in         string
		ok         bool
		uri, ident string
	}{
		{"ns=2;s=Line1.Temp", true, "", "s=Line1.Temp"},
		{"ns=2;i=17", true, "", "i=17"},
		{"i=2258", true, "", "i=2258"},
		{"s=Temp", true, "", "s=Temp"},
		{"ns=2;s=a;b", true, "", "s=a;b"},
		{"ns=1;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63", true, "", "g=72962B91-FA75-4AE6-8D28-B404DC7DAF63"},
		{"ns=1;b=M/RbKBsRVkePCePcx24oRA==", true, "", "b=M/RbKBsRVkePCePcx24oRA=="},
		{"nsu=urn:plant:oven;s=Zone1.Temp", true, "urn:plant:oven", "s=Zone1.Temp"},
		{"nsu=http://example.com/UA/;i=5", true, "http://example.com/UA/", "i=5"},
		{"ns=2;x=1", false, "", ""},
		{"ns=2;s=", false, "", ""},
		{"ns=2", false, "", ""},
		{"ns=x;i=1", false, "", ""},
		{"ns=70000;i=1", false, "", ""},
		{"ns=2;i=-1", false, "", ""},
		{"i=4294967296", false, "", ""},
		{"ns=1;g=not-a-guid", false, "", ""},
		{"ns=1;b=!!!", false, "", ""},
		{"nsu=;s=x", false, "", ""},
		{"nsu=urn:x;q=1", false, "", ""},
		{"Temp", false, "", ""},
		{"", false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			n, err := ParseNodeID(tt.in)
			if !tt.ok {
				want := `"` + tt.in + `" is not a valid node id`
				if err == nil || err.Error() != want {
					t.Fatalf("ParseNodeID(%q) = %v, %v; want error %s", tt.in, n, err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseNodeID(%q): %v", tt.in, err)
			}
			if n.String() != tt.in || n.NamespaceURI() != tt.uri || n.Identifier() != tt.ident {
				t.Errorf("got String %q NamespaceURI %q Identifier %q; want %q %q %q",
					n.String(), n.NamespaceURI(), n.Identifier(), tt.in, tt.uri, tt.ident)
			}
		})
	}
}

func TestDurationYAML(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"500ms", 500 * time.Millisecond, ""},
		{"1s", time.Second, ""},
		{"2m", 2 * time.Minute, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"0", 0, ""},
		{"1 sec", 0, `line 1: "1 sec" is not a valid duration (e.g. 500ms, 1s, 2m)`},
		{"30", 0, `line 1: "30" is not a valid duration (e.g. 500ms, 1s, 2m)`},
		{"-1s", 0, `line 1: "-1s" must not be negative`},
		{"[1s]", 0, `line 1: expected a duration (e.g. 500ms, 1s, 2m), got a list`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Duration
			err := yaml.Unmarshal([]byte(tt.in), &d)
			if tt.wantErr != "" {
				te, ok := err.(*yaml.TypeError)
				if !ok || len(te.Errors) != 1 || te.Errors[0] != tt.wantErr {
					t.Fatalf("Unmarshal(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || d.Duration() != tt.want {
				t.Fatalf("Unmarshal(%q) = %s, %v; want %s", tt.in, d, err, tt.want)
			}
			out, err := yaml.Marshal(d)
			if err != nil || strings.TrimSpace(string(out)) != tt.want.String() {
				t.Errorf("Marshal(%s) = %q, %v", d, out, err)
			}
		})
	}
}

func TestDefaultTagName(t *testing.T) {
	tests := map[string]string{
		"ns=2;s=Line1.Temp":             "Line1.Temp",
		"i=2258":                        "2258",
		"ns=2;s=a/b c+d#e\tf":           "a_b_c_d_e_f",
		"nsu=urn:x;s=Zone 1":            "Zone_1",
		"ns=1;b=M/RbKBsRVkePCePcx24oR+": "M_RbKBsRVkePCePcx24oR_",
		"":                              "",
	}
	for raw, want := range tests {
		if got := defaultTagName(NodeID{Raw: raw}); got != want {
			t.Errorf("defaultTagName(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestTopicError(t *testing.T) {
	tests := map[string]string{
		"tagbridge/{agent}/{plc}/{tag}": "",
		"x{tag}y/{plc}":                 "",
		"plain/topic":                   "",
		"":                              "topic template must not be empty",
		"a/#":                           `"#" is not allowed in a topic template`,
		"{plant}/x":                     `unknown placeholder "{plant}" in topic template (use {agent}, {plc}, {tag})`,
		"{}":                            `unknown placeholder "{}" in topic template (use {agent}, {plc}, {tag})`,
		"{tag":                          `unbalanced "{" in topic template "{tag"`,
		"{a{tag}":                       `unbalanced "{" in topic template "{a{tag}"`,
		"tag}":                          `unbalanced "}" in topic template "tag}"`,
	}
	for in, want := range tests {
		if got := topicError(in); got != want {
			t.Errorf("topicError(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestValidateWithoutFile checks Validate on a Config built in code: paths, no lines.
func TestValidateWithoutFile(t *testing.T) {
	c := &Config{MQTT: MQTT{QoS: 4}}
	c.applyDefaults()
	err := c.Validate()
	want := "agent.id: required\nmqtt.qos: 4 is not a valid QoS (0, 1 or 2)\nplcs: at least one PLC required"
	if err == nil || err.Error() != want {
		t.Fatalf("Validate() = %v, want:\n%s", err, want)
	}
}

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Size
		ok   bool
	}{
		{"0", 0, true},
		{"268435456", 256 << 20, true},
		{"512KiB", 512 << 10, true},
		{"256MiB", 256 << 20, true},
		{"1GiB", 1 << 30, true},
		{"2 TiB", 2 << 40, true},
		{"100B", 100, true},
		{"256MB", 0, false},
		{"1.5GiB", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"MiB", 0, false},
		{"9999999TiB", 0, false},
	} {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok {
			if back, err := parseSize(got.String()); err != nil || back != got {
				t.Errorf("%q: String %q does not parse back: %d, %v", tt.in, got.String(), back, err)
			}
		}
	}
}
