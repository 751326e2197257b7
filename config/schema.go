package config

import (
	"encoding/json"
	"reflect"

	"github.com/tagbridge/tagbridge/config/yamlfile"
)

// JSONSchema describes the configuration file for editors (YAML language
// servers) and checks: made from the structs' yaml tags at each call, so
// it never lags behind them. Unknown keys are refused, as Load refuses
// them; values with their own parsing (durations, sizes, node ids) are
// checked only as strings or numbers here, fully by Load.
func JSONSchema() ([]byte, error) {
	root := yamlfile.Schema(reflect.TypeFor[Config](), scalarSchemas)
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
