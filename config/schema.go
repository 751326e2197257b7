package config

import (
	"encoding/json"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// JSONSchema describes the configuration file for editors (YAML language
// servers) and checks: made from the structs' yaml tags at each call, so
// it never lags behind them. Unknown keys are refused, as Load refuses
// them; values with their own parsing (durations, sizes, node ids) are
// checked only as strings or numbers here, fully by Load.
func JSONSchema() ([]byte, error) {
	root := schemaOf(reflect.TypeFor[Config]())
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["$id"] = "https://github.com/tagbridge/tagbridge/config.schema.json"
	root["title"] = "tagbridge configuration"
	return json.MarshalIndent(root, "", "  ")
}

// scalarSchemas are the types that parse themselves from a YAML scalar.
var scalarSchemas = map[reflect.Type]map[string]any{
	reflect.TypeFor[Duration](): {"type": "string", "description": "Go duration: 500ms, 1s, 2m, 1h"},
	reflect.TypeFor[Size]():     {"type": []string{"string", "integer"}, "description": "bytes, or with KiB, MiB, GiB"},
	reflect.TypeFor[NodeID]():   {"type": "string", "description": "OPC UA node id: ns=2;s=Name, i=2259, nsu=<uri>;s=..."},
}

var unmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

func schemaOf(t reflect.Type) map[string]any {
	if s, ok := scalarSchemas[t]; ok {
		return s
	}
	if reflect.PointerTo(t).Implements(unmarshaler) || t.Implements(unmarshaler) {
		return map[string]any{} // parses itself: Load checks it
	}
	switch t.Kind() {
	case reflect.Pointer:
		return map[string]any{"anyOf": []any{schemaOf(t.Elem()), map[string]any{"type": "null"}}}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": []string{"array", "null"}, "items": schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem())}
	case reflect.Struct:
		props := map[string]any{}
		addFields(t, props)
		return map[string]any{"type": []string{"object", "null"}, "properties": props, "additionalProperties": false}
	}
	return map[string]any{}
}

// addFields adds t's fields as YAML decodes them: by yaml tag, inline
// structs merged, "-" and unexported fields left out.
func addFields(t reflect.Type, props map[string]any) {
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			addFields(f.Type, props)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		props[name] = schemaOf(f.Type)
	}
}
