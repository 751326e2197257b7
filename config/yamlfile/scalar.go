package yamlfile

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// ScalarError is returned by UnmarshalYAML methods. A *yaml.TypeError lets the
// decoder carry on and report the other problems too; any other error stops it.
func ScalarError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: ", n.Line) + fmt.Sprintf(format, args...)}}
}

// DescribeNode names what a node holds, for "expected X, got Y" messages.
func DescribeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	return fmt.Sprintf("%q", n.Value)
}
