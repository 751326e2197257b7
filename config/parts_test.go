package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// benchShaped writes a file as scripts/bench does: plcs × tags, each tag a
// two-line entry; extra is written after every tag's node (indented as a key).
func benchShaped(plcs, tags int, extra string) string {
	var b strings.Builder
	b.WriteString("agent:\n  id: bench\nmqtt:\n  url: tcp://127.0.0.1:1883\n  batch: true\nplcs:\n")
	for p := range plcs {
		fmt.Fprintf(&b, "  - name: plc%02d\n    endpoint: opc.tcp://127.0.0.1:%d\n    publishing_interval: 1s\n    tags:\n", p, 4840+p)
		for t := range tags {
			fmt.Fprintf(&b, "      - name: t%05d\n        node: \"ns=1;s=T.%05d\"\n%s", t, t, extra)
		}
		b.WriteString("    reconnect:\n      min: 2s\n")
	}
	return b.String()
}

// TestParseInParts holds the part-by-part decoding to the whole file's:
// where it takes a file, the configuration is the same, and the files it
// is meant for (plain block sequences, as scripts/bench and generators
// write them) take that path.
func TestParseInParts(t *testing.T) {
	unsetEnv(t, "MQTT_PASS")
	unsetEnv(t, "PRESS1_PASS")
	defer func(n int) { tagsPerPart = n }(tagsPerPart)
	tagsPerPart = 100
	t.Setenv("TAGBRIDGE_TEST_OPC_PASS", "opc-secret")
	read := func(name string) string {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	example := read("../config.example.yaml")
	tests := []struct {
		name  string
		text  string
		parts bool // must take the part-by-part path
	}{
		{"bench shaped, three parts of tags", benchShaped(2, 210, ""), true},
		{"per-tag settings", benchShaped(1, 150, "        sampling_interval: 250ms\n        deadband: {type: absolute, value: 0.5}\n"), true},
		{"comments and blank lines between entries", benchShaped(2, 101, "\n# a comment\n        # another\n"), true},
		{"CRLF line ends", strings.ReplaceAll(benchShaped(2, 10, ""), "\n", "\r\n"), true},
		{"config.example.yaml", example, true},
		{"valid-minimal", read("testdata/valid-minimal.yaml"), true},
		{"valid-overrides", read("testdata/valid-overrides.yaml"), true},
		{"flow entries", strings.ReplaceAll(benchShaped(2, 5, ""), "      - name: t", "      - {name: x, node: \"ns=1;s=X\"}\n      - name: t"), false},
		{"entry key on the next line", strings.ReplaceAll(benchShaped(2, 5, ""), "      - name: t", "      -\n        name: t"), true},
		{"tags at the key's indent: that PLC whole", strings.ReplaceAll(strings.ReplaceAll(benchShaped(2, 5, ""), "      - name: t", "    - name: t"), "        node:", "      node:"), true},
		{"anchor in one part, alias in another", strings.Replace(strings.Replace(benchShaped(1, 250, ""), "t00001\n", "t00001\n        deadband: &db {type: percent, value: 1}\n", 1), "t00240\n", "t00240\n        deadband: *db\n", 1), false},
		{"anchor and alias in one part", strings.Replace(strings.Replace(benchShaped(1, 20, ""), "t00001\n", "t00001\n        deadband: &db {type: percent, value: 1}\n", 1), "t00010\n", "t00010\n        deadband: *db\n", 1), true},
		{"plcs in flow style", "agent: {id: a}\nmqtt: {url: \"tcp://127.0.0.1:1883\"}\nplcs: [{name: p, endpoint: \"opc.tcp://127.0.0.1:4840\", tags: [{name: t, node: \"ns=1;i=1\"}]}]\n", false},
		{"a second plcs key", benchShaped(1, 3, "") + "plcs:\n  - name: q\n", false},
		{"plcs after a quoted line break", "agent:\n  id: \"a\nplcs:\n  - b\"\nmqtt: {url: \"tcp://127.0.0.1:1883\"}\nplcs:\n  - name: p\n    endpoint: opc.tcp://127.0.0.1:4840\n    tags:\n      - {name: t, node: \"ns=1;i=1\"}\n", false},
		{"a tag list that is not a list", strings.Replace(benchShaped(1, 3, ""), "      - name: t00001\n", "      - name: t00001\n     stray: 1\n", 1), false},
		{"tab in an indent", strings.Replace(benchShaped(1, 3, ""), "        node: \"ns=1;s=T.00001\"", "\tnode: \"ns=1;s=T.00001\"", 1), false},
		{"a second document", benchShaped(1, 3, "") + "---\nagent: {id: b}\n", false},
		{"an unknown key in a tag", strings.Replace(benchShaped(2, 250, ""), "t00222\n", "t00222\n        nod: x\n", 1), false},
		{"a validation error in a tag", strings.Replace(benchShaped(2, 250, ""), "\"ns=1;s=T.00222\"", "\"x=1\"", 1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			whole, wholeErr := parseWhole("c.yaml", []byte(tt.text))
			parts, ok := parseInParts("c.yaml", []byte(tt.text))
			if ok != tt.parts {
				t.Errorf("parseInParts ok = %v, want %v (whole: %v)", ok, tt.parts, wholeErr)
			}
			if !ok {
				return
			}
			if wholeErr != nil {
				t.Fatalf("parseInParts took a file the whole parse refuses: %v", wholeErr)
			}
			if !reflect.DeepEqual(parts, whole) {
				t.Errorf("parseInParts and parseWhole differ:\nparts %+v\nwhole %+v", parts, whole)
			}
			got, err := Parse("c.yaml", []byte(tt.text))
			if err != nil || !reflect.DeepEqual(got, whole) {
				t.Errorf("Parse = %v, %v; want the whole parse's configuration", got != nil, err)
			}
		})
	}
}
