package config

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tagbridge/tagbridge/config/yamlfile"
)

// DecodeNode reports what a Decoder with KnownFields(true) reports, from
// one parse: the same messages for unknown keys, wrong types and
// duplicate keys, wherever they stand.
func TestDecodeTreeMatchesKnownFields(t *testing.T) {
	cases := map[string]string{
		"unknown top":      "agnet: {id: x}\n",
		"unknown nested":   "agent: {id: x, colour: blue}\nmqtt:\n  url: tcp://a:1\n  tls: {ca: x}\n",
		"unknown in tags":  "plcs:\n  - name: a\n    tags:\n      - nod: ns=2;s=x\n      - node: ns=2;s=y\n        topc: t\n",
		"unknown in auth":  "plcs: [{name: a, auth: {user: x}, security: {polcy: None}}]\n",
		"merge":            "plcs:\n  - &base {name: a, endpoint: opc.tcp://h}\n  - <<: *base\n    name: b\n    endpoit: x\n",
		"wrong types":      "mqtt: {qos: high, keepalive: [1]}\nplcs: {name: a}\n",
		"duplicate inside": "agent:\n  id: a\n  id: b\n  colour: x\nmqtt: {url: x, url: y, bogus: 1}\n",
		"list item scalar": "plcs: [a, {name: b, bogus: 1}]\n",
		"deadband":         "plcs: [{name: a, tags: [{node: ns=2;s=x, deadband: {typ: absolute}}]}]\n",
		"null and empty":   "agent:\nmqtt: ~\nplcs: []\n",
		"secret ignored":   "mqtt: {password: hunter2}\n",
		"alias of mapping": "x: &a {id: 1, bogus: 2}\nagent: *a\n",
		"alias in a list":  "plcs:\n  - &p {name: a, bogus: 1}\n  - *p\n",
	}
	for name, doc := range cases {
		t.Run(name, func(t *testing.T) {
			var want []string
			dec := yaml.NewDecoder(bytes.NewReader([]byte(doc)))
			dec.KnownFields(true)
			if te, ok := errors.AsType[*yaml.TypeError](dec.Decode(&Config{})); ok {
				want = te.Errors
			}
			_, root, perrs := yamlfile.Parse("c.yaml", []byte(doc))
			if perrs != nil {
				t.Fatal(perrs)
			}
			var got []string
			te, err := yamlfile.DecodeNode(root, &Config{})
			if err != nil {
				t.Fatal(err)
			}
			if te != nil {
				got = te.Errors
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("decodeTree:\n%s\nKnownFields decoder:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// A mapping too large for any section is refused before the decoder
// compares its keys pairwise.
func TestOversizedMapping(t *testing.T) {
	var b strings.Builder
	b.WriteString("agent:\n  id: ipc01\nmqtt:\n")
	for i := range yamlfile.MaxMappingKeys + 1 {
		fmt.Fprintf(&b, "  k%d: 1\n", i)
	}
	_, err := Parse("c.yaml", []byte(b.String()))
	want := fmt.Sprintf("c.yaml:4: a mapping of %d keys: no section of the configuration takes more than %d", yamlfile.MaxMappingKeys+1, yamlfile.MaxMappingKeys)
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if _, err := ReadStatus(writeTemp(t, b.String())); err == nil || !strings.Contains(err.Error(), "a mapping of 257 keys") {
		t.Errorf("ReadStatus: %v", err)
	}
}

func writeTemp(t *testing.T, body string) string {
	t.Helper()
	path := t.TempDir() + "/c.yaml"
	write(t, path, []byte(body), 0o600)
	return path
}
