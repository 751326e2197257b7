package payload

import (
	"bytes"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/internal/testkit"
)

// TestAppendJSONUnboxed: a scalar carried in Bits is written exactly as
// the same scalar boxed in Value, for random values of every type that
// unboxes and for the golden cases.
func TestAppendJSONUnboxed(t *testing.T) {
	ts := time.Date(2026, 11, 22, 10, 15, 30, 0, time.UTC)
	samples := testkit.Scalars(200)
	for _, c := range append(testkit.ValueCases(), testkit.ExtraValueCases()...) {
		samples = append(samples, c.Sample)
	}
	unboxed := 0
	for _, s := range samples {
		s.ServerTime = ts // "time" is never the clock
		u := s
		if !u.Unbox() {
			continue
		}
		unboxed++
		if got, want := AppendJSON(nil, &u), AppendJSON(nil, &s); !bytes.Equal(got, want) {
			t.Errorf("%s %#v:\nunboxed %s\nboxed   %s", s.Type, s.Value, got, want)
		}
	}
	if want := len(testkit.Scalars(200)) + 20; unboxed < want {
		t.Errorf("%d samples unboxed, want at least %d", unboxed, want)
	}
}
