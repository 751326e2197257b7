package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"
	"go.yaml.in/yaml/v3"

	"github.com/tagbridge/tagbridge/config/yamlfile"
)

// Duration is a time.Duration written as a Go duration string ("500ms", "1s").
type Duration time.Duration

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes d back in the form it is read.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML parses a Go duration string; negative durations are rejected.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return yamlfile.ScalarError(n, "expected a duration (e.g. 500ms, 1s, 2m), got %s", yamlfile.DescribeNode(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return yamlfile.ScalarError(n, "%q is not a valid duration (e.g. 500ms, 1s, 2m)", n.Value)
	}
	if v < 0 {
		return yamlfile.ScalarError(n, "%q must not be negative", n.Value)
	}
	*d = Duration(v)
	return nil
}

// NodeID is an OPC UA node id in its string form, checked at load time.
// Raw is handed to ua.ParseNodeID, or ua.ParseExpandedNodeID with the
// server's namespace array for the nsu= form.
type NodeID struct {
	Raw string
}

// ParseNodeID checks the syntax of an OPC UA node id: [ns=<n>;|nsu=<uri>;]{i|s|g|b}=<id>.
func ParseNodeID(s string) (NodeID, error) {
	bad := fmt.Errorf("%q is not a valid node id", s)
	ns, id := splitNodeID(s)
	// gopcua takes an unknown "x=1" as a string id; we want a typo caught.
	if len(id) < 3 || id[1] != '=' || !strings.ContainsRune("isgb", rune(id[0])) {
		return NodeID{}, bad
	}
	check := s
	if uri, ok := strings.CutPrefix(ns, "nsu="); ok {
		if uri == "" {
			return NodeID{}, bad
		}
		// The namespace index is only known once connected; check the syntax alone.
		check = "ns=1;" + id
	}
	if _, err := ua.ParseNodeID(check); err != nil {
		return NodeID{}, bad
	}
	return NodeID{Raw: s}, nil
}

// splitNodeID splits s into its namespace part ("" when absent) and identifier.
func splitNodeID(s string) (ns, id string) {
	if !strings.HasPrefix(s, "ns=") && !strings.HasPrefix(s, "nsu=") {
		return "", s
	}
	ns, id, _ = strings.Cut(s, ";")
	return ns, id
}

func (n NodeID) String() string { return n.Raw }

// NamespaceURI returns the uri of an nsu= node id, else "".
func (n NodeID) NamespaceURI() string {
	ns, _ := splitNodeID(n.Raw)
	if uri, ok := strings.CutPrefix(ns, "nsu="); ok {
		return uri
	}
	return ""
}

// Identifier returns the part after the namespace, e.g. "s=Line1.Temp".
func (n NodeID) Identifier() string {
	_, id := splitNodeID(n.Raw)
	return id
}

// MarshalYAML writes the node id back as its string form.
func (n NodeID) MarshalYAML() (any, error) { return n.Raw, nil }

// UnmarshalYAML checks the node id's syntax. An empty value stays empty so
// that Validate reports it as missing.
func (n *NodeID) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind != yaml.ScalarNode {
		return yamlfile.ScalarError(node, "expected a node id (e.g. ns=2;s=Line1.Temp), got %s", yamlfile.DescribeNode(node))
	}
	if node.Value == "" {
		*n = NodeID{}
		return nil
	}
	id, err := ParseNodeID(node.Value)
	if err != nil {
		return yamlfile.ScalarError(node, "%s", err)
	}
	*n = id
	return nil
}

// Size is a number of bytes, written as an integer (268435456) or with a
// binary unit: 512KiB, 256MiB, 1GiB.
type Size int64

var sizeUnits = []struct {
	suffix string
	shift  uint
}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}, {"B", 0}}

func (s Size) String() string {
	for _, u := range sizeUnits {
		if u.shift > 0 && s != 0 && s%(1<<u.shift) == 0 && (u.shift == 40 || s%(1<<(u.shift+10)) != 0) {
			return fmt.Sprintf("%d%s", s>>u.shift, u.suffix)
		}
	}
	return fmt.Sprintf("%d", int64(s))
}

// MarshalYAML writes s back in the form it is read.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

// UnmarshalYAML parses an integer number of bytes or a number with a binary unit.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	const want = "an integer number of bytes or a size such as 512KiB, 256MiB, 1GiB"
	if n.Kind != yaml.ScalarNode {
		return yamlfile.ScalarError(n, "expected %s, got %s", want, yamlfile.DescribeNode(n))
	}
	v, err := parseSize(n.Value)
	if err != nil {
		return yamlfile.ScalarError(n, "%q is not a valid size (%s)", n.Value, want)
	}
	*s = v
	return nil
}

func parseSize(str string) (Size, error) {
	num, shift := str, uint(0)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(str, u.suffix); ok {
			num, shift = strings.TrimSpace(rest), u.shift
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || num == "" || num[0] == '+' || v > math.MaxInt64>>shift {
		return 0, fmt.Errorf("bad size %q", str)
	}
	return Size(v << shift), nil
}
