package sparkplug

import (
	"bytes"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/internal/testkit"
)

// TestSparkplugUnboxed: a scalar carried in Bits gets the datatype and the
// metric bytes of the same scalar boxed in Value, for random values of
// every type that unboxes and for the golden cases.
func TestSparkplugUnboxed(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 15, 30, 0, time.UTC)
	samples := testkit.Scalars(200)
	for _, c := range append(testkit.ValueCases(), testkit.ExtraValueCases()...) {
		samples = append(samples, c.Sample)
	}
	var f sparkplugFormat
	unboxed := 0
	for _, s := range samples {
		u := s
		if !u.Unbox() {
			continue
		}
		unboxed++
		if spType(&u) != spType(&s) || spDeclaredType(&u) != spDeclaredType(&s) {
			t.Errorf("%s %#v: datatype %d/%d unboxed, %d/%d boxed", s.Type, s.Value, spType(&u), spDeclaredType(&u), spType(&s), spDeclaredType(&s))
		}
		got, want := f.appendDataMetric(nil, 7, &u, now, false), f.appendDataMetric(nil, 7, &s, now, false)
		if !bytes.Equal(got, want) {
			t.Errorf("%s %#v:\nunboxed %x\nboxed   %x", s.Type, s.Value, got, want)
		}
	}
	if want := len(testkit.Scalars(200)) + 20; unboxed < want {
		t.Errorf("%d samples unboxed, want at least %d", unboxed, want)
	}
}
