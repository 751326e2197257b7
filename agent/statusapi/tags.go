package statusapi

import (
	"fmt"
	"strings"

	"github.com/tagbridge/tagbridge/collectors"
)

// SetRequireAllTags makes health fail while a PLC refuses any tag.
func (s *Server) SetRequireAllTags(on bool) { s.allTags = on }

// maxTagsNamed bounds the tags one health problem names.
const maxTagsNamed = 5

// tagProblems are the health problems of refused tags, when all must stream.
func (s *Server) tagProblems(plcs []collectors.PLCState) []string {
	if !s.allTags {
		return nil
	}
	var out []string
	for _, p := range plcs {
		if len(p.FailedTags) == 0 {
			continue
		}
		var named []string
		for _, f := range p.FailedTags[:min(len(p.FailedTags), maxTagsNamed)] {
			named = append(named, f.Tag+" ("+f.Status+")")
		}
		more := ""
		if n := len(p.FailedTags) - len(named); n > 0 {
			more = fmt.Sprintf(" and %d more", n)
		}
		out = append(out, fmt.Sprintf("plc %s: %d tags refused: %s%s (agent.status_require_all_tags)", p.PLC, len(p.FailedTags), strings.Join(named, ", "), more))
	}
	return out
}
