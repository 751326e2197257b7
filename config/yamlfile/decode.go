// Package yamlfile reads a YAML file strictly and says where its problems
// are: one parse gives both the values and the node tree, a key that names
// no field is an error, and every problem reads FILE:LINE: path: message,
// the path in the form plcs[2].tags[5].node. It knows no particular file.
package yamlfile

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// MaxMappingKeys bounds the keys of one mapping. No section of the
// configuration has more than a few dozen, and the decoder compares a
// mapping's keys pairwise for duplicates: 20,000 keys took 2 s.
const MaxMappingKeys = 256

// Decode decodes the one document of data into v strictly (as a Decoder
// with KnownFields(true) would) and returns the node tree, for LineOf and
// IsSet, with every problem placed at its path, and the paths whose values
// a problem left unset: checking them as well would only repeat it. A nil
// root means nothing could be decoded; errs says why.
func Decode(file string, data []byte, v any) (root *yaml.Node, errs Errors, moot PathSet) {
	dec, root, perrs := Parse(file, data)
	if perrs != nil {
		return nil, perrs, nil
	}
	typeErr, err := DecodeNode(root, v)
	if err != nil {
		return nil, Errors{SyntaxError(file, data, err)}, nil
	}
	if typeErr != nil {
		errs, moot = decodeErrors(file, root, typeErr)
	}
	// Decode reads one document; a second one would be ignored without a word.
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		errs = append(errs, Error{File: file, Line: extra.Line, Msg: "only one YAML document is allowed"})
	} else if err != io.EOF {
		errs = append(errs, SyntaxError(file, data, err))
	}
	return root, errs, moot
}

// Parse parses the first document of data into a node tree, once: it
// gives the line numbers, and the structs are decoded from it. dec reads
// the documents after it. A syntax error or an oversized mapping is
// returned as Errors; an empty file is an empty node.
func Parse(file string, data []byte) (*yaml.Decoder, *yaml.Node, Errors) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	root := &yaml.Node{}
	if err := dec.Decode(root); err != nil && err != io.EOF {
		return nil, nil, Errors{SyntaxError(file, data, err)}
	}
	var errs Errors
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode && len(n.Content)/2 > MaxMappingKeys {
			errs = append(errs, Error{File: file, Line: n.Line, Msg: fmt.Sprintf("a mapping of %d keys: no section of the configuration takes more than %d", len(n.Content)/2, MaxMappingKeys)})
			return
		}
		for _, c := range n.Content { // aliases are not followed: their targets are walked where they stand
			walk(c)
		}
	}
	walk(root)
	if len(errs) > 0 {
		return nil, nil, errs
	}
	return dec, root, nil
}

// DecodeNode decodes root into v, with the decoder's errors plus one
// "line N: field K not found in type T" for every key that names no field,
// as a Decoder with KnownFields(true) reports them: Node.Decode has no
// such option, and parsing the file a second time for it doubled the cost
// of loading. The messages are in line order. Any other error (an alias
// cycle, excessive aliasing) is returned as it is.
func DecodeNode(root *yaml.Node, v any) (*yaml.TypeError, error) {
	if root.Kind == 0 { // empty file
		return nil, nil
	}
	// Decoded first: the decoder refuses alias cycles and bombs, which the
	// walk below would otherwise follow.
	var msgs []string
	if err := root.Decode(v); err != nil {
		te, ok := err.(*yaml.TypeError)
		if !ok {
			return nil, err
		}
		msgs = te.Errors
	}
	msgs = append(unknownKeys(root, reflect.TypeOf(v)), msgs...)
	if len(msgs) == 0 {
		return nil, nil
	}
	slices.SortStableFunc(msgs, func(a, b string) int { return msgLine(a) - msgLine(b) })
	return &yaml.TypeError{Errors: msgs}, nil
}

// msgLine is the N of a decoder message "line N: ...", or 0.
func msgLine(s string) int {
	rest, ok := strings.CutPrefix(s, "line ")
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(rest[:max(strings.IndexByte(rest, ':'), 0)])
	return n
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// unknownKeys lists the keys of n that name no field of the struct they
// decode into, walking n along type t as the decoder does, aliases
// included: call it only on a tree the decoder accepted, which bounds
// their expansion and has no cycles. A mapping with a duplicate key is
// skipped, as the decoder drops it whole.
func unknownKeys(n *yaml.Node, t reflect.Type) []string {
	var out []string
	var walk func(n *yaml.Node, t reflect.Type)
	walk = func(n *yaml.Node, t reflect.Type) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if reflect.PointerTo(t).Implements(unmarshalerType) {
			return
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, t)
			}
		case yaml.AliasNode:
			if n.Alias != nil {
				walk(n.Alias, t)
			}
		case yaml.SequenceNode:
			if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
				for _, c := range n.Content {
					walk(c, t.Elem())
				}
			}
		case yaml.MappingNode:
			switch t.Kind() {
			case reflect.Map:
				for i := 1; i < len(n.Content); i += 2 {
					walk(n.Content[i], t.Elem())
				}
			case reflect.Struct:
				if hasDuplicateKey(n) {
					return
				}
				fields := yamlFields(t)
				for i := 0; i+1 < len(n.Content); i += 2 {
					k, v := n.Content[i], n.Content[i+1]
					if k.Kind == yaml.ScalarNode && (k.Tag == "!!merge" || k.Value == "<<" && k.Style == 0) {
						walk(v, t) // a merged mapping, or a list of them
						continue
					}
					ft, ok := fields[k.Value]
					if !ok {
						out = append(out, fmt.Sprintf("line %d: field %s not found in type %s", k.Line, k.Value, t))
						continue
					}
					walk(v, ft)
				}
			}
		}
	}
	walk(n, t)
	return out
}

func hasDuplicateKey(n *yaml.Node) bool {
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		key := strconv.Itoa(int(k.Kind)) + ":" + k.Value
		if seen[key] {
			return true
		}
		seen[key] = true
	}
	return false
}

var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// yamlFields maps the YAML keys of struct t to their types, as the
// decoder names them: the yaml tag's name, else the field name in lower
// case; "-" and unexported fields are not keys; inline structs add theirs.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct {
			for k, v := range yamlFields(f.Type) {
				m[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	fieldCache.Store(t, m)
	return m
}
