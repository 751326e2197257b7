package config

import (
	"io"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tagbridge/tagbridge/config/yamlfile"
)

// tagsPerPart is how many tags one part of a tag list holds: its node
// tree is some 850 bytes a tag, freed once the part is decoded. A
// variable for the tests, which cut smaller lists.
var tagsPerPart = 2000

// parseInParts decodes a file whose plcs, and their tags, are plain block
// sequences part by part: the file without the PLC entries, each PLC entry
// without its tags, then its tags some thousands at a time, so that the
// node tree of the whole file never exists at once (85 MB at 100,000
// tags, twice that in the heap while the collector catches up). It gives
// up (ok false) on anything it would have to report or place: a part that
// does not parse or decode cleanly, a cut the parser does not confirm, a
// validation error. Parse then does it all again whole, so that every
// message and line is the one the whole file gives.
func parseInParts(file string, data []byte) (c *Config, ok bool) {
	lines := yamlfile.NewLines(data)
	plcs, ok := lines.BlockSequence(0, lines.Len(), 0, "plcs")
	if !ok {
		return nil, false
	}
	c = &Config{File: file}
	head := cutOut(lines, plcs.Key+1, plcs.End)
	root, ok := decodePart(file, head, c)
	if !ok || len(c.PLCs) != 0 {
		return nil, false
	}
	plcsValue := valueAt(root, "plcs", plcs.Key+1)
	if plcsValue == nil {
		return nil, false
	}
	var plcNodes []*yaml.Node
	for i, start := range plcs.Entries {
		end := plcs.End
		if i+1 < len(plcs.Entries) {
			end = plcs.Entries[i+1]
		}
		p, node, ok := decodePLC(file, lines, start, end)
		if !ok {
			return nil, false
		}
		c.PLCs = append(c.PLCs, p)
		plcNodes = append(plcNodes, node)
	}
	// The PLC entries without their tags go back under plcs, for isSet:
	// defaults look at some of their keys.
	*plcsValue = yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: plcsValue.Line, Column: plcsValue.Column, Content: plcNodes}
	c.root = root
	c.applyDefaults()
	if c.Validate() != nil {
		return nil, false
	}
	c.root = nil
	return c, true
}

// decodePLC decodes the PLC entry in lines [start, end) and returns its
// mapping node without the tags, which it decodes a part at a time when
// they are a block sequence of their own, else with the entry.
func decodePLC(file string, lines yamlfile.Lines, start, end int) (p PLC, node *yaml.Node, ok bool) {
	keyIndent, ok := lines.EntryKeyIndent(start, end)
	if !ok {
		return p, nil, false
	}
	tags, split := lines.BlockSequence(start+1, end, keyIndent, "tags")
	text := lines.Text(start, end)
	if split {
		text = cutOut(lines, tags.Key+1, tags.End, start, end)
	}
	var one []PLC
	root, ok := decodePart(file, text, &one)
	if !ok || len(one) != 1 || root.Kind != yaml.DocumentNode || len(root.Content[0].Content) != 1 {
		return p, nil, false
	}
	p, node = one[0], root.Content[0].Content[0]
	if !split {
		return p, node, true
	}
	if len(p.Tags) != 0 || valueAt(root.Content[0].Content[0], "tags", tags.Key-start+1) == nil {
		return p, nil, false
	}
	p.Tags = make([]Tag, 0, len(tags.Entries))
	for i := 0; i < len(tags.Entries); i += tagsPerPart {
		to := tags.End
		if i+tagsPerPart < len(tags.Entries) {
			to = tags.Entries[i+tagsPerPart]
		}
		var part []Tag
		if _, ok := decodePart(file, lines.Text(tags.Entries[i], to), &part); !ok || len(part) != min(tagsPerPart, len(tags.Entries)-i) {
			return p, nil, false
		}
		p.Tags = append(p.Tags, packStrings(part)...)
	}
	return p, node, true
}

// packStrings moves the names and node ids of tags, which the parser
// allocated one by one (40 bytes a tag in the allocator's size classes),
// into one string (29 bytes a tag at 100,000 tags as scripts/bench names
// them), as they stay in the heap for as long as the agent runs.
func packStrings(tags []Tag) []Tag {
	n := 0
	for i := range tags {
		n += len(tags[i].Name) + len(tags[i].Node.Raw)
	}
	var b strings.Builder
	b.Grow(n)
	for i := range tags {
		b.WriteString(tags[i].Name)
		b.WriteString(tags[i].Node.Raw)
	}
	all, off := b.String(), 0
	for i := range tags {
		t := &tags[i]
		t.Name, off = all[off:off+len(t.Name)], off+len(t.Name)
		t.Node.Raw, off = all[off:off+len(t.Node.Raw)], off+len(t.Node.Raw)
	}
	return tags
}

// cutOut is lines [within[0], within[1]) (the whole text when within is
// empty) without lines [from, to).
func cutOut(lines yamlfile.Lines, from, to int, within ...int) []byte {
	first, last := 0, lines.Len()
	if len(within) == 2 {
		first, last = within[0], within[1]
	}
	before, after := lines.Text(first, from), lines.Text(to, last)
	out := make([]byte, 0, len(before)+len(after))
	return append(append(out, before...), after...)
}

// decodePart parses and decodes text, one document, into v, and reports
// whether that went without a single problem.
func decodePart(file string, text []byte, v any) (*yaml.Node, bool) {
	dec, root, errs := yamlfile.Parse(file, text)
	if errs != nil || root.Kind == 0 {
		return nil, false
	}
	if typeErr, err := yamlfile.DecodeNode(root, v); err != nil || typeErr != nil {
		return nil, false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, false
	}
	return root, true
}

// valueAt returns the null value of key in mapping n (or the document
// holding it) when the key stands on line: the parser's confirmation that
// the sequence cut out was that key's value and nothing else's.
func valueAt(n *yaml.Node, key string, line int) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == key && k.Line == line {
			if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" && v.Value == "" {
				return v
			}
			return nil
		}
	}
	return nil
}
