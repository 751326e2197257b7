package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a configuration file, rendered as FILE:LINE: path: message.
type Error struct {
	File string
	Line int    // 0 when unknown
	Path string // e.g. plcs[2].tags[5].node; "" when the problem has no place
	Msg  string
}

func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a configuration, in line order.
type Errors []Error

// MaxShown is how many problems Errors.Error lists before it only counts
// the rest: a generated file with a typo on every tag should not bury the
// terminal under tens of thousands of lines that say the same thing.
const MaxShown = 100

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es[:min(len(es), MaxShown)] {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	if len(es) > MaxShown {
		fmt.Fprintf(&b, "\n... and %d more", len(es)-MaxShown)
	}
	return b.String()
}

// sortByLine orders es by line, keeping the order of problems on one line.
func (es Errors) sortByLine() {
	slices.SortStableFunc(es, func(a, b Error) int { return a.Line - b.Line })
}

// lineOf returns the line of the YAML node at path (the key's line for a
// mapping entry), or that of its nearest ancestor present in the file: a
// defaulted field is reported where its parent is written. 0 without a file.
func lineOf(root *yaml.Node, path string) int {
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

// entry is one node of the file with its path, for placing decoder errors,
// which only carry a line number.
type entry struct {
	path   string
	parent string
	key    *yaml.Node // nil for list items and the root
	value  *yaml.Node
	used   bool // already given to an error: the next identical one goes to the next node
}

// byLine holds the file's nodes by line (a mapping entry under its key's
// line and, when it differs, its value's), each line's in document order:
// a decoder error names only a line, and looking it up must not scan the
// whole file once per error.
type byLine map[int][]*entry

// entries indexes the file's nodes. Aliases are not followed, so a
// self-referencing anchor cannot loop.
func entries(root *yaml.Node) byLine {
	out := byLine{}
	var walk func(n *yaml.Node, path, parent string, key *yaml.Node)
	walk = func(n *yaml.Node, path, parent string, key *yaml.Node) {
		en := &entry{path: path, parent: parent, key: key, value: n}
		out[n.Line] = append(out[n.Line], en)
		if key != nil && key.Line != n.Line {
			out[key.Line] = append(out[key.Line], en)
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				walk(n.Content[i+1], joinPath(path, k.Value), path, k)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i), path, nil)
			}
		}
	}
	if root != nil && root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		walk(root.Content[0], "", "", nil)
	}
	return out
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}
