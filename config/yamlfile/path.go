package yamlfile

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// LineOf returns the line of the YAML node at path (the key's line for a
// mapping entry), or that of its nearest ancestor present in the file: a
// defaulted field is reported where its parent is written. 0 without a file.
func LineOf(root *yaml.Node, path string) int {
	if root == nil {
		return 0
	}
	n, line := root, 1
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n, line = n.Content[0], n.Content[0].Line
	}
	if path == "" {
		return line
	}
	for _, tok := range strings.Split(strings.ReplaceAll(path, "[", ".["), ".") {
		n = unalias(n)
		if idx, ok := strings.CutPrefix(tok, "["); ok {
			i, err := strconv.Atoi(strings.TrimSuffix(idx, "]"))
			if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
			continue
		}
		k, v := lookupKey(n, tok)
		if k == nil {
			return line
		}
		n, line = v, k.Line
	}
	return line
}

// IsSet reports whether path is written in the file with a non-null value.
func IsSet(root *yaml.Node, path string) bool {
	n := root
	if n == nil {
		return false
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for key := range strings.SplitSeq(strings.ReplaceAll(path, "[", ".["), ".") {
		if idx, ok := strings.CutPrefix(key, "["); ok {
			i, err := strconv.Atoi(strings.TrimSuffix(idx, "]"))
			if n = unalias(n); err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return false
			}
			n = n.Content[i]
			continue
		}
		if _, n = lookupKey(n, key); n == nil {
			return false
		}
	}
	return n.ShortTag() != "!!null"
}

// lookupKey returns the key and value nodes of key in mapping n.
func lookupKey(n *yaml.Node, key string) (k, v *yaml.Node) {
	n = unalias(n)
	if n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

func unalias(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}
