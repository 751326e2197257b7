package certs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tagbridge/tagbridge/internal/testutil"
)

func TestGuard(t *testing.T) {
	root := t.TempDir()
	allowed := filepath.Join(root, "certs")
	outside := filepath.Join(root, "home")
	testutil.WriteFile(t, filepath.Join(allowed, "client.pem"), []byte("x"), 0o644)
	testutil.WriteFile(t, filepath.Join(allowed, "sub", "ca.pem"), []byte("x"), 0o644)
	testutil.WriteFile(t, filepath.Join(outside, "client.pem"), []byte("x"), 0o644)
	testutil.WriteFile(t, filepath.Join(root, "certs-evil", "client.pem"), []byte("x"), 0o644)
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
	testutil.WriteFile(t, filepath.Join(dir, "certs", "a.pem"), []byte("x"), 0o644)
	t.Chdir(dir)
	got, err := Guard{Dirs: []string{"certs"}}.Check("certs/a.pem")
	real, _ := filepath.EvalSymlinks(filepath.Join(dir, "certs", "a.pem"))
	if err != nil || got != real {
		t.Fatalf("Check = %q, %v; want %q", got, err, real)
	}
}

// A key symlink swapped after the configuration was checked, to a file
// outside the allowed directories, is refused when the agent opens it.
func TestGuardAtOpen(t *testing.T) {
	root := t.TempDir()
	allowed := filepath.Join(root, "certs")
	outside := filepath.Join(root, "home")
	testutil.WriteFile(t, filepath.Join(allowed, "real.key"), []byte("inside"), 0o600)
	testutil.WriteFile(t, filepath.Join(outside, "stolen.key"), []byte("outside"), 0o600)
	testutil.WriteFile(t, filepath.Join(allowed, "open.key"), []byte("inside"), 0o644)
	link := filepath.Join(allowed, "client.key")
	if err := os.Symlink(filepath.Join(allowed, "real.key"), link); err != nil {
		t.Fatal(err)
	}
	g := Guard{Dirs: []string{allowed}}
	if _, err := g.Check(link); err != nil {
		t.Fatalf("Check before the swap: %v", err)
	}
	if data, err := g.ReadKeyFile(link); err != nil || string(data) != "inside" {
		t.Fatalf("ReadKeyFile before the swap = %q, %v", data, err)
	}
	swap(t, filepath.Join(outside, "stolen.key"), link)
	data, err := g.ReadKeyFile(link)
	if !errors.Is(err, ErrNotAllowed) || data != nil {
		t.Fatalf("ReadKeyFile after the swap = %q, %v; want ErrNotAllowed", data, err)
	}
	want := link + " resolves to " + filepath.Join(outside, "stolen.key") + ", which is not in an allowed directory (" + allowed + ")"
	if err.Error() != want {
		t.Errorf("message:\n got %s\nwant %s", err, want)
	}
	if _, err := g.ReadKeyFile(filepath.Join(allowed, "open.key")); !errors.Is(err, ErrKeyPermissions) {
		t.Errorf("key readable by others: %v, want ErrKeyPermissions", err)
	}
	if _, err := g.ReadFile(filepath.Join(allowed, "open.key")); err != nil {
		t.Errorf("certificate readable by others: %v", err)
	}
	// The allowed directory named through a symlink, as /etc/tagbridge/certs -> /srv/certs.
	linkedDir := filepath.Join(root, "linked-certs")
	if err := os.Symlink(allowed, linkedDir); err != nil {
		t.Fatal(err)
	}
	if data, err := (Guard{Dirs: []string{linkedDir}}).ReadKeyFile(filepath.Join(linkedDir, "real.key")); err != nil || string(data) != "inside" {
		t.Errorf("through a symlinked allowed directory: %q, %v", data, err)
	}
	if err := syscall.Mkfifo(filepath.Join(allowed, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.ReadFile(filepath.Join(allowed, "fifo")); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("FIFO: %v, want not a regular file", err)
	}
}

// While a symlink flips between a file inside and one outside, every read
// either fails or returns the inside file: the check is made on what was
// opened, so no interleaving lets the outside file through.
func TestGuardAtOpenRace(t *testing.T) {
	root := t.TempDir()
	allowed := filepath.Join(root, "certs")
	outside := filepath.Join(root, "home")
	testutil.WriteFile(t, filepath.Join(allowed, "real.key"), []byte("inside"), 0o600)
	testutil.WriteFile(t, filepath.Join(outside, "stolen.key"), []byte("outside"), 0o600)
	link := filepath.Join(allowed, "client.key")
	if err := os.Symlink(filepath.Join(allowed, "real.key"), link); err != nil {
		t.Fatal(err)
	}
	g := Guard{Dirs: []string{allowed}}
	done := make(chan struct{})
	flipped := make(chan int)
	go func() {
		n := 0
		targets := []string{filepath.Join(outside, "stolen.key"), filepath.Join(allowed, "real.key")}
		for {
			select {
			case <-done:
				flipped <- n
				return
			default:
			}
			swap(t, targets[n%2], link)
			n++
		}
	}()
	var ok, refused int
	var bad error // the first read that must not happen; the swapper is stopped before reporting it
	for range 2000 {
		data, err := g.ReadKeyFile(link)
		if err == nil && string(data) == "inside" {
			ok++
		} else if err == nil {
			bad = fmt.Errorf("read %q through a swapped symlink", data)
		} else if errors.Is(err, ErrNotAllowed) || errors.Is(err, os.ErrNotExist) {
			refused++
		} else {
			bad = fmt.Errorf("unexpected error: %w", err)
		}
		if bad != nil {
			break
		}
	}
	close(done)
	n := <-flipped
	if bad != nil {
		t.Fatal(bad)
	}
	t.Logf("%d swaps; %d reads inside, %d refused", n, ok, refused)
	if refused == 0 || n < 10 {
		t.Errorf("the race was not exercised: %d swaps, %d refused", n, refused)
	}
}

// swap points link at target atomically (rename over it), as an attacker would.
func swap(t *testing.T, target, link string) {
	tmp := link + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Error(err)
	}
}
