package testutil

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestHelpers(t *testing.T) {
	if got := Unhex(t, "0a 1B\n\tff"); string(got) != "\x0a\x1b\xff" {
		t.Errorf("Unhex: %x", got)
	}
	if got, want := Indent("a: 1\nb: 2\n\n", "  "), "  a: 1\n  b: 2\n"; got != want {
		t.Errorf("Indent: %q, want %q", got, want)
	}
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "f")
	WriteFile(t, path, []byte("x"), 0o644)
	CopyFile(t, path, filepath.Join(dir, "g"), 0o755)
	AppendFile(t, path, []byte("y"))
	for name, perm := range map[string]os.FileMode{path: 0o644, filepath.Join(dir, "g"): 0o755} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != perm {
			t.Errorf("%s: mode %v, want %v despite umask 077", name, fi.Mode().Perm(), perm)
		}
		want := map[string]string{path: "xy"}[name]
		if want == "" {
			want = "x"
		}
		if b, _ := os.ReadFile(name); string(b) != want {
			t.Errorf("%s: %q, want %q", name, b, want)
		}
	}
}
