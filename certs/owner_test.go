package certs

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tagbridge/tagbridge/internal/testutil"
)

// The trust store as the package lays it out: owned by the service user,
// with commands run as root now and then (browse, certs create, a mv).
// "nobody" stands for the service user.

func nobody(t *testing.T) (uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: gives files to another user, so it runs only as root (as in CI)")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("user nobody: %v", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

func owner(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

// serviceStore is a store directory owned by nobody, reachable by nobody.
func serviceStore(t *testing.T, uid, gid int) string {
	t.Helper()
	parent, err := os.MkdirTemp("", "tagbridge-owner-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "pki")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRootWritesOwnedLikeStore: a root-run command creating the store's
// directories and saving a refused certificate leaves them to the store's
// owner, so that after the mv the error suggests the service can read it.
func TestRootWritesOwnedLikeStore(t *testing.T) {
	uid, gid := nobody(t)
	dir := serviceStore(t, uid, gid)
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"trusted", TrustedCerts, RejectedCerts, IssuersCRL} {
		if got := owner(t, s.Path(sub)); got != uid {
			t.Errorf("%s owned by uid %d, want %d (the store's owner)", sub, got, uid)
		}
	}
	cert := mkCert(t, certSpec{cn: "plc1", key: key(t, 4)}, nil)
	if _, err := s.Verify(cert.cert.Raw, VerifyOptions{Now: now}); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("Verify: %v, want ErrUntrusted", err)
	}
	rejected := filepath.Join(s.Path(RejectedCerts), fileName(cert.cert))
	if got := owner(t, rejected); got != uid {
		t.Errorf("rejected certificate owned by uid %d, want %d", got, uid)
	}
	if fi, err := os.Stat(rejected); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("rejected certificate mode: %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}

// TestUnreadableTrustedNamed: a certificate in trusted/certs the service
// user cannot read is named in the error, with that user.
func TestUnreadableTrustedNamed(t *testing.T) {
	if os.Getenv("TAGBRIDGE_UNREADABLE_STORE") != "" {
		return // the child, run by the parent below
	}
	uid, gid := nobody(t)
	dir := serviceStore(t, uid, gid)
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Copied in by root (cp keeps root as owner, mode 0600).
	plc := mkCert(t, certSpec{cn: "plc1", key: key(t, 4)}, nil)
	unreadable := filepath.Join(s.Path(TrustedCerts), "plc1.der")
	testutil.WriteFile(t, unreadable, plc.cert.Raw, 0o600)
	testutil.WriteFile(t, filepath.Join(filepath.Dir(dir), "peer.der"), plc.cert.Raw, 0o644)

	// The test binary, run again as nobody, verifies plc1's certificate.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(filepath.Dir(dir), "certs.test")
	testutil.CopyFile(t, self, bin, 0o755)
	cmd := exec.CommandContext(t.Context(), "runuser", "-u", "nobody", "--", bin, "-test.run=^TestUnreadableTrustedChild$", "-test.v")
	cmd.Env = append(os.Environ(), "TAGBRIDGE_UNREADABLE_STORE="+dir)
	out, _ := cmd.CombinedOutput()
	want := unreadable + " is not readable by user nobody (uid " + strconv.Itoa(uid) + "), who needs to read it (e.g. chown nobody " + unreadable + ")"
	if !strings.Contains(string(out), want) {
		t.Errorf("as user nobody, the error does not name the unreadable file and the user:\nwant %s\ngot:\n%s", want, out)
	}
}

// TestUnreadableTrustedChild runs as nobody for TestUnreadableTrustedNamed.
func TestUnreadableTrustedChild(t *testing.T) {
	dir := os.Getenv("TAGBRIDGE_UNREADABLE_STORE")
	if dir == "" {
		return // run only as the child
	}
	der, err := os.ReadFile(filepath.Join(filepath.Dir(dir), "peer.der"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Verify(der, VerifyOptions{Now: now})
	t.Logf("Verify: %v", err)
}
