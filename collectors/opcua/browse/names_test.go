package browse

import (
	"strings"
	"testing"
)

func TestUniqueName(t *testing.T) {
	taken := map[string]bool{}
	var got []string
	for _, n := range []string{"a", "a", "a_2", "a", "b"} {
		got = append(got, uniqueName(n, taken))
	}
	if want := "a a_2 a_2_2 a_3 b"; strings.Join(got, " ") != want {
		t.Errorf("unique names %v, want %s", got, want)
	}
}
