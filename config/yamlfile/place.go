package yamlfile

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// SyntaxError places a parse error of the file at its line; the
// decoder's reader errors, which carry none, at the byte at fault.
func SyntaxError(file string, data []byte, err error) Error {
	msg := err.Error()
	if !syntaxLine.MatchString(msg) && (strings.Contains(msg, "UTF-8") || strings.Contains(msg, "control characters")) {
		if e, ok := unreadableByte(file, data); ok {
			return e
		}
	}
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Error{File: file, Line: line, Msg: m[2]}
	}
	return Error{File: file, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

// unreadableByte places the decoder's reader errors (invalid UTF-8, a
// control character), which carry no line, at the first byte of data that
// is not UTF-8 or the first character YAML does not allow. A file with a
// UTF-16 byte order mark is left to the decoder, which reads UTF-16 too.
func unreadableByte(file string, data []byte) (Error, bool) {
	if bytes.HasPrefix(data, []byte{0xFF, 0xFE}) || bytes.HasPrefix(data, []byte{0xFE, 0xFF}) {
		return Error{}, false
	}
	for off := 0; off < len(data); {
		r, size := utf8.DecodeRune(data[off:])
		lineStart := bytes.LastIndexByte(data[:off], '\n') + 1
		col := off - lineStart + 1
		var msg string
		switch {
		case r == utf8.RuneError && size <= 1:
			msg = fmt.Sprintf("invalid UTF-8: byte 0x%02X at column %d (save the file as UTF-8)", data[off], col)
		case !yamlPrintable(r):
			msg = fmt.Sprintf("control character %U at column %d is not allowed (escape it in a double-quoted string, e.g. %q)", r, col, string(r))
		default:
			off += size
			continue
		}
		return Error{File: file, Line: 1 + bytes.Count(data[:lineStart], []byte{'\n'}), Msg: msg}, true
	}
	return Error{}, false
}

// yamlPrintable reports whether YAML allows r unescaped in a file.
func yamlPrintable(r rune) bool {
	switch {
	case r == 0x09, r == 0x0A, r == 0x0D, r == 0x85,
		r >= 0x20 && r <= 0x7E,
		r >= 0xA0 && r <= 0xD7FF,
		r >= 0xE000 && r <= 0xFFFD,
		r >= 0x10000 && r <= 0x10FFFF:
		return true
	}
	return false
}

var (
	typeErrLine  = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownField = regexp.MustCompile(`^field (.+) not found in type \S+$`)
	duplicateKey = regexp.MustCompile(`^mapping key (".*") already defined at line (\d+)$`)
	cannotDecode = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	quoted       = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
)

// decodeErrors turns the decoder's "line N: ..." messages into Errors placed
// at a path, and returns the paths whose values the decoder left unset.
func decodeErrors(file string, root *yaml.Node, te *yaml.TypeError) (errs Errors, skip PathSet) {
	all := entries(root)
	skip = PathSet{}
	for _, s := range te.Errors {
		m := typeErrLine.FindStringSubmatch(s)
		if m == nil {
			errs = append(errs, Error{File: file, Msg: s})
			continue
		}
		line, _ := strconv.Atoi(m[1])
		msg := m[2]
		e := Error{File: file, Line: line, Msg: msg}

		if f := unknownField.FindStringSubmatch(msg); f != nil {
			if en := findKey(all, line, f[1]); en != nil {
				e.Path, e.Msg = en.path, "unknown key"
			}
		} else if f := duplicateKey.FindStringSubmatch(msg); f != nil {
			key, _ := strconv.Unquote(f[1])
			if en := findKey(all, line, key); en != nil {
				// The decoder drops the whole mapping holding a duplicate key.
				e.Path, e.Msg = en.path, "duplicate key (first at line "+f[2]+")"
				skip[moot(en.parent)] = true
			}
		} else if f := cannotDecode.FindStringSubmatch(msg); f != nil {
			if en := findValue(all, line, f[1], f[2]); en != nil {
				en.used = true
				e.Path = en.path
				e.Msg = "expected " + describeType(f[3]) + ", got " + DescribeNode(en.value)
				skip[moot(en.path)] = true
			}
		} else {
			// Our own UnmarshalYAML messages quote the value they reject.
			var en *entry
			for _, q := range quoted.FindAllString(msg, -1) {
				if v, err := strconv.Unquote(q); err == nil {
					if en = findValue(all, line, "", v); en != nil {
						break
					}
				}
			}
			if en == nil {
				en = findValue(all, line, "", "")
			}
			if en != nil {
				en.used = true
				e.Path = en.path
				skip[moot(en.path)] = true
			}
		}
		errs = append(errs, e)
	}
	return errs, skip
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

// moot is the path a failed decode leaves unreliable: a list drops an item
// that fails, so the indexes of the whole list shift.
func moot(path string) string {
	if strings.HasSuffix(path, "]") {
		return path[:strings.LastIndex(path, "[")]
	}
	return path
}

func findKey(all byLine, line int, key string) *entry {
	for _, en := range all[line] {
		if !en.used && en.key != nil && en.key.Line == line && en.key.Value == key {
			en.used = true
			return en
		}
	}
	return nil
}

// findValue returns the first unused node on line matching the decoder's
// tag and value ("" matches anything; a value ending in "..." is a prefix).
func findValue(all byLine, line int, tag, value string) *entry {
	for _, en := range all[line] {
		n := en.value
		if en.used || n.Line != line || !kindMatches(n, tag) {
			continue
		}
		prefix, cut := strings.CutSuffix(value, "...")
		if value == "" || n.Value == value || cut && strings.HasPrefix(n.Value, prefix) {
			return en
		}
	}
	return nil
}

func kindMatches(n *yaml.Node, tag string) bool {
	switch tag {
	case "":
		return true
	case "map":
		return n.Kind == yaml.MappingNode
	case "seq":
		return n.Kind == yaml.SequenceNode
	}
	return n.Kind == yaml.ScalarNode
}

// describeType names a Go type from a decoder message the way a YAML author thinks of it.
func describeType(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.Contains(t, "."):
		return "a mapping"
	case strings.HasPrefix(t, "uint"):
		return "a non-negative integer"
	case strings.HasPrefix(t, "int"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	}
	return t
}

// PathSet holds paths such as plcs[0].tags; a path covers itself and
// everything beneath it.
type PathSet map[string]bool

// Covers reports whether path is in s or lies beneath a path in s. It looks
// up each of path's ancestors, so its cost does not grow with s: a file
// with an error on every one of 40,000 tags stays linear.
func (s PathSet) Covers(path string) bool {
	if len(s) == 0 {
		return false
	}
	if s[""] || s[path] {
		return true
	}
	for i := 0; i < len(path); i++ {
		if (path[i] == '.' || path[i] == '[') && s[path[:i]] {
			return true
		}
	}
	return false
}
