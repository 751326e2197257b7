package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzLoad feeds arbitrary bytes through the whole load path: it may reject
// them, but must not panic, and every error must carry the file name; a
// file decoded in parts must give what the whole file gives.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	seeds = append(seeds, "../config.example.yaml")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("a: &a [*a]\nagent: {id: *a}"))
	f.Add([]byte("plcs: [{tags: [{node: {<<: *x}}]}]"))
	f.Add([]byte(benchShaped(2, 3, "        queue_size: 2\n")))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if parts, ok := parseInParts("fuzz.yaml", data); ok {
			whole, wholeErr := parseWhole("fuzz.yaml", data)
			if wholeErr != nil || !reflect.DeepEqual(parts, whole) {
				t.Fatalf("decoded in parts, not as the whole file: whole error %v", wholeErr)
			}
		}
		if err == nil {
			if c == nil {
				t.Fatal("nil config without error")
			}
			return
		}
		errs, ok := err.(Errors)
		if !ok || len(errs) == 0 {
			t.Fatalf("error %T %v, want non-empty Errors", err, err)
		}
		for _, e := range errs {
			if e.File != "fuzz.yaml" {
				t.Fatalf("error without file: %v", e)
			}
		}
	})
}
