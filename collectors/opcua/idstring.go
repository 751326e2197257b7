package opcua

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gopcua/opcua/ua"
)

// The text forms of node ids, qualified names and GUIDs, in values and logs.

// nodeIDString formats a node id like gopcua's NodeID.String
// ("ns=2;s=Line1.Temp", "i=2258") without its panics on an invalid type or a
// short GUID, both of which a failed decode can leave behind.
func nodeIDString(n *ua.NodeID) string {
	id := nodeIdentifier(n)
	if ns := n.Namespace(); ns != 0 {
		return "ns=" + strconv.FormatUint(uint64(ns), 10) + ";" + id
	}
	return id
}

// nodeIdentifier is the "i=", "s=", "g=" or "b=" part of a node id.
func nodeIdentifier(n *ua.NodeID) string {
	switch n.Type() {
	case ua.NodeIDTypeTwoByte, ua.NodeIDTypeFourByte, ua.NodeIDTypeNumeric:
		return "i=" + strconv.FormatUint(uint64(n.IntID()), 10)
	case ua.NodeIDTypeString:
		return "s=" + n.StringID()
	case ua.NodeIDTypeGUID:
		return "g=" + guidNodeString(n)
	case ua.NodeIDTypeByteString:
		return "b=" + n.StringID()
	}
	return "<invalid node id type " + strconv.Itoa(int(n.Type())) + ">"
}

// guidNodeString is StringID of a GUID node id, which panics when the GUID is
// shorter than 16 bytes.
func guidNodeString(n *ua.NodeID) (s string) {
	defer func() {
		if recover() != nil {
			s = "<invalid guid>"
		}
	}()
	return n.StringID()
}

// expandedNodeIDString formats an ExpandedNodeId as in Part 6, 5.3.1.11:
// "svr=1;nsu=urn:x;s=Temp" or, without URI, like a node id. gopcua's String
// drops the namespace URI and server index.
func expandedNodeIDString(e *ua.ExpandedNodeID) string {
	var svr string
	if e.ServerIndex != 0 {
		svr = "svr=" + strconv.FormatUint(uint64(e.ServerIndex), 10) + ";"
	}
	if e.NamespaceURI != "" {
		return svr + "nsu=" + uriEscaper.Replace(e.NamespaceURI) + ";" + nodeIdentifier(e.NodeID)
	}
	return svr + nodeIDString(e.NodeID)
}

var uriEscaper = strings.NewReplacer("%", "%25", ";", "%3B")

// qualifiedNameString is "ns:name", or the bare name in namespace 0.
func qualifiedNameString(q *ua.QualifiedName) string {
	if q.NamespaceIndex == 0 {
		return q.Name
	}
	return strconv.FormatUint(uint64(q.NamespaceIndex), 10) + ":" + q.Name
}

// guidString is the canonical upper-case form gopcua also uses in node ids.
func guidString(g *ua.GUID) string {
	if len(g.Data4) != 8 {
		return fmt.Sprintf("<invalid guid %08X-%04X-%04X-%X>", g.Data1, g.Data2, g.Data3, g.Data4)
	}
	return g.String()
}
