package statusapi

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
)

// TestFailedTags: a refused tag is named in the metrics; with
// require-all-tags it also fails health, named with its status.
func TestFailedTags(t *testing.T) {
	src := healthySource()
	src.plcs[1].FailedTags = []collectors.FailedTag{{Tag: "temp", Node: "ns=3;s=\"DB\".\"Temp\"", Status: "BadNodeIdUnknown"}}
	s, err := New("127.0.0.1:0", config.Secret(token), "ipc01", src, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	want := `
# HELP tagbridge_tag_failed 1 for each tag the PLC refuses, with the status it gave (e.g. BadNodeIdUnknown).
# TYPE tagbridge_tag_failed gauge
tagbridge_tag_failed{plc="oven2",status="BadNodeIdUnknown",tag="temp"} 1
`
	if err := testutil.CollectAndCompare(metrics{s}, strings.NewReader(want), "tagbridge_tag_failed"); err != nil {
		t.Error(err)
	}
	if st := s.Snapshot(); !st.Healthy {
		t.Errorf("without require-all-tags: problems %q, want healthy", st.Problems)
	}
	s.SetRequireAllTags(true)
	st := s.Snapshot()
	if st.Healthy || len(st.Problems) != 1 || st.Problems[0] != "plc oven2: 1 tags refused: temp (BadNodeIdUnknown) (agent.status_require_all_tags)" {
		t.Errorf("with require-all-tags: healthy %v, problems %q", st.Healthy, st.Problems)
	}
}
