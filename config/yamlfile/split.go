package yamlfile

import "bytes"

// Lines indexes the lines of a YAML text, so that its long block sequences
// can be cut into parts at their entries and each part parsed by itself:
// the node tree of a whole file of 100,000 tags takes some 85 MB.
type Lines struct {
	data   []byte
	starts []int // offset of each line's first byte, then len(data)
}

// NewLines indexes data's lines.
func NewLines(data []byte) Lines {
	starts := make([]int, 1, bytes.Count(data, []byte{'\n'})+2)
	for i, b := range data {
		if b == '\n' {
			starts = append(starts, i+1)
		}
	}
	if starts[len(starts)-1] != len(data) {
		starts = append(starts, len(data))
	}
	return Lines{data: data, starts: starts}
}

// Len is the number of lines.
func (l Lines) Len() int { return len(l.starts) - 1 }

// Text is the text of lines [from, to).
func (l Lines) Text(from, to int) []byte { return l.data[l.starts[from]:l.starts[to]] }

// line returns the indent of line i (leading spaces) and what follows it,
// without the line break; tab reports a tab in the indent, which YAML does
// not allow there and which the cutting leaves to the parser.
func (l Lines) line(i int) (indent int, rest []byte, tab bool) {
	s := bytes.TrimRight(l.data[l.starts[i]:l.starts[i+1]], "\r\n")
	for indent < len(s) && s[indent] == ' ' {
		indent++
	}
	rest = s[indent:]
	return indent, rest, len(rest) > 0 && rest[0] == '\t'
}

// content reports whether rest holds more than blanks and a comment.
func content(rest []byte) bool {
	rest = bytes.Trim(rest, " \t")
	return len(rest) > 0 && rest[0] != '#'
}

// entryStart reports whether rest starts a block sequence entry ("-" followed
// by a blank or nothing).
func entryStart(rest []byte) bool {
	return len(rest) > 0 && rest[0] == '-' && (len(rest) == 1 || rest[1] == ' ')
}

// Sequence is a block sequence found by BlockSequence: the line of its
// key, the first line of each entry, and the line after its last entry.
type Sequence struct {
	Key     int
	Entries []int
	End     int
}

// BlockSequence looks in lines [from, to) for the key written alone at
// indent keyIndent ("key:" and at most a comment) and the block sequence
// under it, indented deeper than the key, one entry a line starting "- ".
// ok is false when there is no such key, or when the lines under it are
// anything but such entries, deeper lines within them, blank lines and
// comments (a tab in an indent, a line between the key's indent and the
// entries'): a caller then parses the text whole, as it would anyway. The
// cut is only a guess about the text; the parts' parses confirm it.
func (l Lines) BlockSequence(from, to, keyIndent int, key string) (seq Sequence, ok bool) {
	seq.Key = -1
	for i := from; i < to; i++ {
		indent, rest, tab := l.line(i)
		if tab {
			return seq, false
		}
		if indent < keyIndent && content(rest) {
			return seq, false // keyIndent is the caller's mapping; this is past it
		}
		if indent != keyIndent || !bytes.HasPrefix(rest, []byte(key+":")) {
			continue
		}
		if after := rest[len(key)+1:]; content(after) || len(after) > 0 && after[0] != ' ' && after[0] != '\t' {
			return seq, false // a value on the key's line: not a block sequence
		}
		seq.Key = i
		break
	}
	if seq.Key < 0 {
		return seq, false
	}
	entryIndent := -1
	for i := seq.Key + 1; i < to; i++ {
		indent, rest, tab := l.line(i)
		if tab {
			return seq, false
		}
		if !content(rest) {
			continue
		}
		switch {
		case indent <= keyIndent:
			seq.End = i
			return seq, len(seq.Entries) > 0
		case entryIndent < 0:
			if !entryStart(rest) {
				return seq, false
			}
			entryIndent = indent
			seq.Entries = append(seq.Entries, i)
		case indent < entryIndent:
			return seq, false
		case indent == entryIndent:
			if !entryStart(rest) {
				return seq, false
			}
			seq.Entries = append(seq.Entries, i)
		}
	}
	seq.End = to
	return seq, len(seq.Entries) > 0
}

// EntryKeyIndent is the indent of the keys of the mapping that the entry
// at line i (a "- " at indent d) holds: the column after "- " when the
// entry's first key is on that line, else the indent of the next line
// with content. ok is false when the entry holds no mapping of that shape.
func (l Lines) EntryKeyIndent(i, to int) (keyIndent int, ok bool) {
	indent, rest, _ := l.line(i)
	after := bytes.TrimLeft(rest[1:], " ")
	if content(after) {
		return indent + len(rest) - len(after), true
	}
	for j := i + 1; j < to; j++ {
		next, rest, tab := l.line(j)
		if tab {
			return 0, false
		}
		if content(rest) {
			return next, next > indent
		}
	}
	return 0, false
}
