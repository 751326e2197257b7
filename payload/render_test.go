package payload

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestRenderAsReplacer: render fills templates as strings.Replacer does,
// on templates made of the placeholders, their fragments and other text.
func TestRenderAsReplacer(t *testing.T) {
	parts := []string{"{agent}", "{plc}", "{tag}", "{", "}", "{ag", "plc}", "{{tag}}", "a/", "/", "x", "ü", "{tag", ""}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5000 {
		var tmpl strings.Builder
		for range rng.IntN(8) {
			tmpl.WriteString(parts[rng.IntN(len(parts))])
		}
		agent, plc, tag := "edge-1", "line{plc}", "Temp/{tag}"
		want := strings.NewReplacer("{agent}", agent, "{plc}", plc, "{tag}", tag).Replace(tmpl.String())
		if got := render(tmpl.String(), agent, plc, tag); got != want {
			t.Fatalf("render(%q) = %q, strings.Replacer %q", tmpl.String(), got, want)
		}
	}
}

func BenchmarkRender(b *testing.B) {
	for b.Loop() {
		render("tagbridge/{agent}/{plc}/{tag}", "edge-1", "plc01", "Int32.00001")
	}
}
