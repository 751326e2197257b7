package opcua

import (
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/scripts/open62541/o62proc"
)

// TestUnknownNodeAtStart, against open62541: a tag whose node the PLC does
// not have (removed by a program change) is named as failed while the
// others stream. open62541 answers the reads of its DataType, ValueRank
// and Historizing with a status and no value at all: a nil Variant, which
// once crashed the agent at every start (found in the fresh-install walk).
func TestUnknownNodeAtStart(t *testing.T) {
	srv := o62proc.Start(t, o62proc.Options{Tags: 2, Interval: o62Interval, Policies: []string{"None"}})
	tags := "tags:\n  - {name: t1, node: \"ns=1;s=Tag0001\"}\n  - {name: gone, node: \"ns=1;s=NoSuchTag\"}\n"
	r, s := startSessionValue(t, plcConfig(t, srv.Endpoint, tags))
	waitUntil(t, "values of t1, and gone named as failed", 15*time.Second, func() bool {
		f := s.States().Snapshot()[0].FailedTags
		return r.count("t1") > 0 && len(f) == 1 && f[0].Tag == "gone" && f[0].Status == "BadNodeIdUnknown"
	})
}
