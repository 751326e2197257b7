package config

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// TestJSONSchema: the schema made from the structs accepts the shipped
// config.example.yaml and refuses an unknown key and a wrong type.
func TestJSONSchema(t *testing.T) {
	doc, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	schemaDoc, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("config.schema.json", schemaDoc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("config.schema.json")
	if err != nil {
		t.Fatalf("the schema does not compile: %v", err)
	}
	example, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	check := func(yamlText string) error {
		t.Helper()
		var v any
		if err := yaml.Unmarshal([]byte(yamlText), &v); err != nil {
			t.Fatal(err)
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
		if err != nil {
			t.Fatal(err)
		}
		return sch.Validate(inst)
	}
	if err := check(string(example)); err != nil {
		t.Errorf("config.example.yaml does not match the schema: %v", err)
	}
	for name, c := range map[string]struct{ old, new, want string }{
		"unknown key": {"  log_level: info", "  log_levle: info", "log_levle"},
		"wrong type":  {"  qos: 1", "  qos: [1]", "qos"},
	} {
		broken := strings.Replace(string(example), c.old, c.new, 1)
		if broken == string(example) {
			t.Fatalf("%s: %q not in config.example.yaml", name, c.old)
		}
		if err := check(broken); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: the schema says %v, want an error naming %s", name, err, c.want)
		}
	}
}
