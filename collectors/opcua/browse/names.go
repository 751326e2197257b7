package browse

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/gopcua/opcua/ua"
)

// TagName makes a browse path safe for one MQTT topic level and for a
// configuration's tag name: no "/", "+", "#", NUL, spaces or control
// characters.
func TagName(p string) string {
	s := strings.Map(func(r rune) rune {
		if r == '/' || r == '+' || r == '#' || unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return '_'
		}
		return r
	}, p)
	if s == "" {
		return "_"
	}
	return s
}

// uniqueName returns name, or name_2, name_3, ... when taken, and marks it taken.
func uniqueName(name string, taken map[string]bool) string {
	n := name
	for i := 2; taken[n]; i++ {
		n = name + "_" + strconv.Itoa(i)
	}
	taken[n] = true
	return n
}

// ParseNodeID parses a node id given as ns=<index>;..., nsu=<uri>;... or
// bare (namespace 0); nsu= forms are resolved with the server's namespace
// array.
func ParseNodeID(s string, namespaces []string) (*ua.NodeID, error) {
	if strings.HasPrefix(s, "nsu=") {
		e, err := ua.ParseExpandedNodeID(s, namespaces)
		if err != nil {
			return nil, fmt.Errorf("node id %q: %w", s, err)
		}
		return e.NodeID, nil
	}
	n, err := ua.ParseNodeID(s)
	if err != nil {
		return nil, fmt.Errorf("node id %q: %w", s, err)
	}
	return n, nil
}

// localID turns a reference's target into a node id of this server,
// resolving a namespace URI to its index.
func (b *browser) localID(e *ua.ExpandedNodeID) (*ua.NodeID, bool) {
	s := e.NodeID.String()
	if e.NamespaceURI != "" {
		ns, ok := b.nsIndex[e.NamespaceURI]
		if !ok {
			return nil, false
		}
		_, ident := splitNS(s)
		s = ident
		if ns != 0 {
			s = "ns=" + strconv.Itoa(int(ns)) + ";" + ident
		}
	}
	// Parsed afresh: the decoded id may carry the expanded id's flags.
	n, err := ua.ParseNodeID(s)
	return n, err == nil
}

// configID writes n as a configuration's node id: ns=<index>;... or, with
// NamespaceURIs, nsu=<uri>;... (namespace 0 stays bare).
func (b *browser) configID(n *ua.NodeID) string {
	s := n.String()
	ns := n.Namespace()
	if !b.opts.NamespaceURIs || ns == 0 || int(ns) >= len(b.namespaces) {
		return s
	}
	_, ident := splitNS(s)
	return "nsu=" + b.namespaces[ns] + ";" + ident
}

func splitNS(s string) (ns, ident string) {
	if strings.HasPrefix(s, "ns=") {
		ns, ident, _ = strings.Cut(s, ";")
		return ns, ident
	}
	return "", s
}
