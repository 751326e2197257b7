package certs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestGuard(t *testing.T) {
	root := t.TempDir()
	allowed := filepath.Join(root, "certs")
	outside := filepath.Join(root, "home")
	writeFile(t, filepath.Join(allowed, "client.pem"), []byte("x"), 0o644)
	writeFile(t, filepath.Join(allowed, "sub", "ca.pem"), []byte("x"), 0o644)
	writeFile(t, filepath.Join(outside, "client.pem"), []byte("x"), 0o644)
	writeFile(t, filepath.Join(root, "certs-evil", "client.pem"), []byte("x"), 0o644)
	symlink := func(target, link string) {
		t.Helper()
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	symlink(filepath.Join(outside, "client.pem"), filepath.Join(allowed, "escape.pem"))
	symlink(outside, filepath.Join(allowed, "escape-dir"))
	symlink(filepath.Join(allowed, "client.pem"), filepath.Join(allowed, "alias.pem"))
	symlink("client.pem", filepath.Join(allowed, "relative.pem"))
	// The allowed directory itself reached through a symlink, as /etc/tagbridge/certs -> /srv/certs.
	linkedDir := filepath.Join(root, "linked-certs")
	symlink(allowed, linkedDir)
	symlink(filepath.Join(outside, "client.pem"), filepath.Join(outside, "back-in.pem"))
	symlink(filepath.Join(allowed, "client.pem"), filepath.Join(outside, "into-allowed.pem"))

	real := filepath.Join(allowed, "client.pem")
	tests := []struct {
		name string
		dirs []string
		path string
		want string // resolved path; "" for a refusal
		msg  string // the refusal's exact message
		err  error
	}{
		{name: "inside", dirs: []string{allowed}, path: real, want: real},
		{name: "subdirectory", dirs: []string{allowed}, path: filepath.Join(allowed, "sub", "ca.pem"), want: filepath.Join(allowed, "sub", "ca.pem")},
		{name: "symlink inside to inside", dirs: []string{allowed}, path: filepath.Join(allowed, "alias.pem"), want: real},
		{name: "relative symlink", dirs: []string{allowed}, path: filepath.Join(allowed, "relative.pem"), want: real},
		{name: "second allowed dir", dirs: []string{outside, allowed}, path: real, want: real},
		{name: "allowed dir is a symlink", dirs: []string{linkedDir}, path: filepath.Join(linkedDir, "client.pem"), want: real},
		{name: "allowed dir is a symlink, path through the real dir", dirs: []string{linkedDir}, path: real, want: real},
		{name: "path through symlinked dir", dirs: []string{allowed}, path: filepath.Join(linkedDir, "client.pem"), err: ErrNotAllowed,
			msg: filepath.Join(linkedDir, "client.pem") + " is not in an allowed directory (" + allowed + ")"},
		{name: "outside", dirs: []string{allowed}, path: filepath.Join(outside, "client.pem"), err: ErrNotAllowed,
			msg: filepath.Join(outside, "client.pem") + " is not in an allowed directory (" + allowed + ")"},
		{name: "outside, missing file", dirs: []string{"/etc/tagbridge/certs"}, path: "/home/ops/client.pem", err: ErrNotAllowed,
			msg: "/home/ops/client.pem is not in an allowed directory (/etc/tagbridge/certs)"},
		{name: "dot-dot escape", dirs: []string{allowed}, path: allowed + "/../home/client.pem", err: ErrNotAllowed,
			msg: allowed + "/../home/client.pem is not in an allowed directory (" + allowed + ")"},
		{name: "dot-dot staying inside", dirs: []string{allowed}, path: allowed + "/sub/../client.pem", want: real},
		{name: "prefix is not a parent", dirs: []string{allowed}, path: filepath.Join(root, "certs-evil", "client.pem"), err: ErrNotAllowed,
			msg: filepath.Join(root, "certs-evil", "client.pem") + " is not in an allowed directory (" + allowed + ")"},
		{name: "symlink escaping", dirs: []string{allowed}, path: filepath.Join(allowed, "escape.pem"), err: ErrNotAllowed,
			msg: filepath.Join(allowed, "escape.pem") + " resolves to " + filepath.Join(outside, "client.pem") + ", which is not in an allowed directory (" + allowed + ")"},
		{name: "symlinked directory escaping", dirs: []string{allowed}, path: filepath.Join(allowed, "escape-dir", "client.pem"), err: ErrNotAllowed,
			msg: filepath.Join(allowed, "escape-dir", "client.pem") + " resolves to " + filepath.Join(outside, "client.pem") + ", which is not in an allowed directory (" + allowed + ")"},
		{name: "symlink outside into allowed", dirs: []string{allowed}, path: filepath.Join(outside, "into-allowed.pem"), err: ErrNotAllowed,
			msg: filepath.Join(outside, "into-allowed.pem") + " is not in an allowed directory (" + allowed + ")"},
		{name: "no allowed dirs", dirs: nil, path: real, err: ErrNotAllowed, msg: real + " is not in an allowed directory (none configured)"},
		{name: "missing inside", dirs: []string{allowed}, path: filepath.Join(allowed, "nope.pem"), err: os.ErrNotExist},
		{name: "missing allowed dir", dirs: []string{filepath.Join(root, "gone"), allowed}, path: real, want: real},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Guard{Dirs: tc.dirs}.Check(tc.path)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Check(%q) = %q, %v; want %v", tc.path, got, err, tc.err)
				}
				if tc.msg != "" && err.Error() != tc.msg {
					t.Fatalf("message:\n got %s\nwant %s", err, tc.msg)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Check(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
			}
		})
	}
}

func TestGuardRelativePath(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "certs", "a.pem"), []byte("x"), 0o644)
	t.Chdir(dir)
	got, err := Guard{Dirs: []string{"certs"}}.Check("certs/a.pem")
	real, _ := filepath.EvalSymlinks(filepath.Join(dir, "certs", "a.pem"))
	if err != nil || got != real {
		t.Fatalf("Check = %q, %v; want %q", got, err, real)
	}
}
