// Package packaging tests the Debian package that scripts/package.sh builds
// from this directory's nfpm.yaml, unit and maintainer scripts.
//
// The test installs the package on the machine it runs on, so it runs only
// as root on a system with dpkg (CI) and skips itself otherwise.
package packaging

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/internal/testutil"
)

const (
	pkgName    = "tagbridge"
	unitPath   = "/usr/lib/systemd/system/tagbridge.service"
	configPath = "/etc/tagbridge/config.yaml"
	envPath    = "/etc/default/tagbridge"
	maxScore   = 2.0 // systemd-analyze security: 2.0 and below is "OK" or better
)

// entry is a path in the package, with the mode and owner that both
// dpkg-deb -c and the installed file must show. Directories end in "/".
type entry struct {
	path, mode, owner string
}

var contents = []entry{
	{"/usr/bin/tagbridge", "-rwxr-xr-x", "root/root"},
	{unitPath, "-rw-r--r--", "root/root"},
	{"/etc/tagbridge/", "drwxr-xr-x", "root/root"},
	{configPath, "-rw-r-----", "root/tagbridge"},
	{"/etc/tagbridge/certs/", "drwx------", "tagbridge/tagbridge"},
	{envPath, "-rw-------", "root/root"},
	{"/var/lib/tagbridge/", "drwxr-x---", "tagbridge/tagbridge"},
	{"/var/lib/tagbridge/pki/", "drwx------", "tagbridge/tagbridge"},
	{"/var/lib/tagbridge/spool/", "drwx------", "tagbridge/tagbridge"},
	{"/usr/share/doc/tagbridge/copyright", "-rw-r--r--", "root/root"},
	{"/usr/share/doc/tagbridge/changelog.Debian.gz", "-rw-r--r--", "root/root"},
	{"/usr/share/lintian/overrides/tagbridge", "-rw-r--r--", "root/root"},
	{"/usr/share/bash-completion/completions/tagbridge", "-rw-r--r--", "root/root"},
	{"/usr/share/zsh/vendor-completions/_tagbridge", "-rw-r--r--", "root/root"},
	{"/usr/share/man/man1/tagbridge.1.gz", "-rw-r--r--", "root/root"},
	{"/usr/share/tagbridge/config.schema.json", "-rw-r--r--", "root/root"},
}

// manPages are the commands with a page tagbridge-NAME(1) besides tagbridge(1).
var manPages = []string{"run", "validate", "status", "version", "certs-create", "certs-renew", "browse", "completion", "schema", "man"}

var wantConffiles = []string{envPath, configPath}

// TestDebianPackage builds the .deb for this machine's architecture (amd64
// in CI), inspects it, installs it, checks the installed files, the user,
// the configuration and the unit, reinstalls it over a changed
// configuration, removes it and purges it.
func TestDebianPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: installs the package with dpkg, so it runs only as root (as in CI)")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("skipped: dpkg not found (not a Debian system)")
	}
	for _, tool := range []string{"dpkg-deb", "dpkg-query", "git", "getent", "runuser", "systemd-analyze", "lintian", "man", "zsh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found; scripts/test installs what this test needs (systemd-analyze: Debian package systemd; lintian, man-db, zsh)", tool)
		}
	}
	arch := runtime.GOARCH
	if arch != "amd64" && arch != "arm64" {
		t.Skipf("skipped: packages are built for amd64 and arm64, this is %s", arch)
	}
	if dpkgArch := strings.TrimSpace(run(t, "dpkg", "--print-architecture")); dpkgArch != arch {
		t.Skipf("skipped: dpkg architecture %s differs from GOARCH %s", dpkgArch, arch)
	}
	lockMachine(t)
	if status, ok := pkgStatus(); ok {
		t.Fatalf("package %s is already installed (%s) and this test would purge it; remove it first: dpkg -P %s", pkgName, status, pkgName)
	}
	// Purge keeps the system user: one this test creates, it deletes.
	if _, err := user.Lookup("tagbridge"); err != nil {
		t.Cleanup(func() {
			if _, err := user.Lookup("tagbridge"); err != nil {
				return // the test stopped before the install
			}
			if b, err := exec.Command("userdel", "tagbridge").CombinedOutput(); err != nil {
				t.Errorf("cleanup: userdel tagbridge: %v\n%s", err, b)
			}
		})
	}
	if _, err := os.Lstat("/var/lib/tagbridge"); err == nil {
		t.Fatal("/var/lib/tagbridge exists without the package and this test's purge would delete it; move it away first")
	}

	start := time.Now()
	out := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "scripts/package.sh", "-a", arch, "-f", "deb", "-o", out)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/package.sh: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("scripts/package.sh made %d .deb files in %s, want 1", len(debs), out)
	}
	deb := debs[0]
	t.Logf("built %s in %s", filepath.Base(deb), time.Since(start).Round(time.Millisecond))

	version := inspect(t, deb, arch)
	if t.Failed() {
		t.FailNow()
	}

	// A state directory made by hand, owned by root and open to all, is
	// given to the service user and closed by the install.
	t.Cleanup(func() { purge(t) })
	if err := os.MkdirAll("/var/lib/tagbridge/spool", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod("/var/lib/tagbridge", 0o755); err != nil {
		t.Fatal(err)
	}
	if got := runCombined(t, "dpkg", "-i", deb); !strings.Contains(got, "/var/lib/tagbridge/spool was owned by root; gave it to user tagbridge, mode 0700") {
		t.Errorf("dpkg -i over a root-owned /var/lib/tagbridge/spool does not say it repaired it:\n%s", got)
	}
	checkInstalled(t, version)
	checkDocs(t)
	checkUser(t)
	if t.Failed() {
		t.FailNow()
	}
	checkUnit(t)

	// Service user: the configuration as installed validates; the secrets
	// file is not readable.
	if got := run(t, "runuser", "-u", "tagbridge", "--", "/usr/bin/tagbridge", "validate", "-c", configPath); !strings.HasPrefix(got, "config OK") {
		t.Errorf("tagbridge validate as user tagbridge: %q, want config OK", got)
	}
	// As the README says: as root, with the service's secrets, as its user.
	if got := run(t, "/usr/bin/tagbridge", "validate", "--env-file", envPath, "--user", "tagbridge", "-c", configPath); !strings.HasPrefix(got, "config OK") {
		t.Errorf("tagbridge validate --env-file %s --user tagbridge: %q, want config OK", envPath, got)
	}
	if b, err := exec.Command("runuser", "-u", "tagbridge", "--", "cat", envPath).CombinedOutput(); err == nil {
		t.Errorf("user tagbridge can read %s:\n%s", envPath, b)
	}

	// Upgrade (a reinstall runs the same scripts): local changes stay.
	local := []byte("# changed locally\n")
	testutil.AppendFile(t, configPath, local)
	testutil.WriteFile(t, "/var/lib/tagbridge/spool/0001.seg", []byte("spooled"), 0o600)
	testutil.WriteFile(t, "/etc/tagbridge/certs/ca.pem", []byte("certificate"), 0o600)
	testutil.WriteFile(t, "/etc/tagbridge/certs/client-key.pem", []byte("key"), 0o600)
	testutil.WriteFile(t, envPath, []byte("TAGBRIDGE_MQTT_PASSWORD=secret\n"), 0o600)
	run(t, "dpkg", "-i", deb)
	if b, err := os.ReadFile(configPath); err != nil || !bytes.HasSuffix(b, local) {
		t.Errorf("after reinstall, %s lost its local change (err %v)", configPath, err)
	}
	if b, err := os.ReadFile(envPath); err != nil || string(b) != "TAGBRIDGE_MQTT_PASSWORD=secret\n" {
		t.Errorf("after reinstall, %s lost its local change (err %v)", envPath, err)
	}

	// Remove: the program goes, configuration, data and user stay.
	run(t, "dpkg", "-r", pkgName)
	if status, _ := pkgStatus(); status != "deinstall ok config-files" {
		t.Errorf("after dpkg -r, status %q, want deinstall ok config-files", status)
	}
	for _, p := range []string{"/usr/bin/tagbridge", unitPath} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after dpkg -r, %s: %v, want it gone", p, err)
		}
	}
	for _, p := range []string{configPath, envPath, "/var/lib/tagbridge/spool/0001.seg", "/etc/tagbridge/certs/ca.pem"} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("after dpkg -r, %s should be kept: %v", p, err)
		}
	}
	if _, err := user.Lookup("tagbridge"); err != nil {
		t.Errorf("after dpkg -r, user tagbridge should be kept: %v", err)
	}

	// Purge: everything goes but the user, and it says what of value it deletes.
	purged := runCombined(t, "dpkg", "-P", pkgName)
	for _, want := range []string{
		"purge deletes the spool /var/lib/tagbridge/spool (1 files, 7 bytes): values not yet delivered to the broker are lost",
		"purge deletes the agent's private key /etc/tagbridge/certs/client-key.pem",
		"user and group tagbridge are kept",
	} {
		if !strings.Contains(purged, want) {
			t.Errorf("dpkg -P does not say %q:\n%s", want, purged)
		}
	}
	if status, ok := pkgStatus(); ok {
		t.Errorf("after dpkg -P, status %q, want the package unknown to dpkg", status)
	}
	for _, p := range []string{"/etc/tagbridge", envPath, "/var/lib/tagbridge"} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after dpkg -P, %s: %v, want it gone", p, err)
		}
	}
	if _, err := user.Lookup("tagbridge"); err != nil {
		t.Errorf("after dpkg -P, user tagbridge should be kept: %v", err)
	}
	if _, err := user.LookupGroup("tagbridge"); err != nil {
		t.Errorf("after dpkg -P, group tagbridge should be kept: %v", err)
	}
	t.Logf("whole cycle in %s", time.Since(start).Round(time.Millisecond))
}

// inspect checks the package file and returns its upstream version (the
// Version field without the Debian revision).
func inspect(t *testing.T, deb, arch string) string {
	t.Helper()
	fields := run(t, "dpkg-deb", "--showformat", "${Package}\n${Architecture}\n${Version}\n${Pre-Depends}\n", "--show", deb)
	f := strings.Split(fields, "\n")
	if len(f) < 4 || f[0] != pkgName || f[1] != arch || f[3] != "passwd" {
		t.Errorf("control fields Package, Architecture, Version, Pre-Depends: %q, want tagbridge, %s, ..., passwd", f, arch)
	}
	version, _, _ := strings.Cut(f[2], "-")

	// dpkg-deb -c: ./path with mode, owner/group, size, date, time.
	listing := run(t, "dpkg-deb", "-c", deb)
	got := map[string]entry{}
	for line := range strings.Lines(listing) {
		w := strings.Fields(line)
		if len(w) != 6 {
			t.Errorf("dpkg-deb -c: unexpected line %q", line)
			continue
		}
		p := strings.TrimPrefix(w[5], ".")
		if w[1] == "0/0" { // nfpm writes the changelog with ids, no names
			w[1] = "root/root"
		}
		got[p] = entry{p, w[0], w[1]}
	}
	for _, want := range contents {
		if e, ok := got[want.path]; !ok {
			t.Errorf("package lacks %s", want.path)
		} else if e != want {
			t.Errorf("package has %s %s %s, want %s %s", e.path, e.mode, e.owner, want.mode, want.owner)
		}
	}
	for p, e := range got {
		if slices.ContainsFunc(contents, func(c entry) bool { return c.path == p }) {
			continue
		}
		if strings.HasPrefix(p, "/usr/share/man/man1/tagbridge-") && e.mode == "-rw-r--r--" && e.owner == "root/root" {
			continue
		}
		parent := slices.ContainsFunc(contents, func(c entry) bool { return strings.HasPrefix(c.path, p) })
		if !parent || e.mode != "drwxr-xr-x" || e.owner != "root/root" {
			t.Errorf("package has unexpected %s %s %s", p, e.mode, e.owner)
		}
	}

	control := filepath.Join(t.TempDir(), "DEBIAN")
	run(t, "dpkg-deb", "--control", deb, control)
	b, err := os.ReadFile(filepath.Join(control, "conffiles"))
	if err != nil {
		t.Errorf("no conffiles: %v", err)
	}
	conffiles := strings.Fields(string(b))
	slices.Sort(conffiles)
	if !slices.Equal(conffiles, wantConffiles) {
		t.Errorf("conffiles %q, want %q", conffiles, wantConffiles)
	}
	// lintian with the package's overrides: no error, no warning.
	if b, err := exec.CommandContext(t.Context(), "lintian", "--fail-on", "error,warning", deb).CombinedOutput(); err != nil {
		t.Errorf("lintian %s: %v\n%s", filepath.Base(deb), err, b)
	}
	for _, name := range manPages {
		if _, ok := got["/usr/share/man/man1/tagbridge-"+name+".1.gz"]; !ok {
			t.Errorf("package lacks the man page tagbridge-%s(1)", name)
		}
	}
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
		if fi, err := os.Stat(filepath.Join(control, s)); err != nil || fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("maintainer script %s missing or not executable (%v)", s, err)
		}
	}
	return version
}

// checkInstalled compares the installed files with the package's contents
// and the installed program's version with the package's.
func checkInstalled(t *testing.T, version string) {
	t.Helper()
	for _, want := range contents {
		p := strings.TrimSuffix(want.path, "/")
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("installed: %v", err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		got := entry{want.path, fi.Mode().String(), userName(st.Uid) + "/" + groupName(st.Gid)}
		if got != want {
			t.Errorf("installed %s is %s %s, want %s %s", p, got.mode, got.owner, want.mode, want.owner)
		}
	}
	shipped, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if installed, err := os.ReadFile(configPath); err != nil || !bytes.Equal(installed, shipped) {
		t.Errorf("%s differs from config.example.yaml (err %v)", configPath, err)
	}
	checkShippedConfig(t, string(shipped))
	v := run(t, "/usr/bin/tagbridge", "version")
	if !regexp.MustCompile(`^tagbridge ` + regexp.QuoteMeta(version) + ` \(commit [0-9a-f]{40}, built \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, go[0-9.]+\)\n$`).MatchString(v) {
		t.Errorf("tagbridge version: %q, want version %s, a commit and a build date", v, version)
	}
}

// checkDocs checks what the installed documentation does for a user: the
// man pages, the completion scripts, the copyright file.
func checkDocs(t *testing.T) {
	t.Helper()
	if got := strings.Join(strings.Fields(run(t, "man", "-P", "cat", "tagbridge-validate")), " "); !strings.Contains(got, "Loads the configuration exactly as run does") || !strings.Contains(got, "--env-file file") {
		t.Errorf("man tagbridge-validate does not show the command's help:\n%s", got)
	}
	// bash: complete "tagbridge va" and "tagbridge certs create --d".
	script := `. /usr/share/bash-completion/completions/tagbridge
COMP_WORDS=(tagbridge va); COMP_CWORD=1; _tagbridge; echo "${COMPREPLY[*]}"
COMP_WORDS=(tagbridge certs create --d); COMP_CWORD=3; _tagbridge; echo "${COMPREPLY[*]}"`
	if got := run(t, "bash", "-c", script); got != "validate\n--days --dir\n" {
		t.Errorf("bash completion: %q, want validate, then --days --dir", got)
	}
	run(t, "zsh", "-n", "/usr/share/zsh/vendor-completions/_tagbridge")

	// Every Go module compiled into the binary is named in the copyright file.
	copyright, err := os.ReadFile("/usr/share/doc/tagbridge/copyright")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(run(t, "go", "version", "-m", "/usr/bin/tagbridge")) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "dep" && !bytes.Contains(copyright, []byte(f[1])) {
			t.Errorf("/usr/share/doc/tagbridge/copyright does not name the module %s compiled into the binary", f[1])
		}
	}
}

// checkUser checks the system user and group the package created.
func checkUser(t *testing.T) {
	t.Helper()
	// name:password:uid:gid:gecos:home:shell
	pw := strings.Split(strings.TrimSpace(run(t, "getent", "passwd", "tagbridge")), ":")
	gr := strings.Split(strings.TrimSpace(run(t, "getent", "group", "tagbridge")), ":")
	if len(pw) != 7 || len(gr) < 3 {
		t.Fatalf("getent: passwd %q, group %q", pw, gr)
	}
	if uid, _ := strconv.Atoi(pw[2]); uid == 0 || uid >= 1000 {
		t.Errorf("user tagbridge has uid %s, want a system uid (1-999)", pw[2])
	}
	if pw[3] != gr[2] {
		t.Errorf("user tagbridge has group id %s, want tagbridge's %s", pw[3], gr[2])
	}
	if pw[6] != "/usr/sbin/nologin" {
		t.Errorf("user tagbridge has shell %s, want /usr/sbin/nologin", pw[6])
	}
	if pw[5] != "/var/lib/tagbridge" {
		t.Errorf("user tagbridge has home %s, want /var/lib/tagbridge", pw[5])
	}
}

// writablePath finds the absolute paths under /run and /var in the shipped
// configuration, comments included (they suggest values to uncomment).
var writablePath = regexp.MustCompile(`(/run|/var)/[A-Za-z0-9_./-]*[A-Za-z0-9_]`)

// checkShippedConfig holds the shipped configuration to what a user may
// copy from it: no notes of the project's own, and every path the agent
// would write to (socket, spool, trust store) inside the directories the
// unit's sandbox lets it write.
func checkShippedConfig(t *testing.T, shipped string) {
	t.Helper()
	for _, word := range []string{"issue ", "issue)", "TODO", "FIXME", "XXX", "/work/", "/tmp/"} {
		if strings.Contains(shipped, word) {
			t.Errorf("the shipped configuration mentions %q, an internal note or a private path", word)
		}
	}
	unit, err := os.ReadFile("tagbridge.service")
	if err != nil {
		t.Fatal(err)
	}
	var writable []string
	for line := range strings.Lines(string(unit)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "RuntimeDirectory":
			writable = append(writable, "/run/"+v+"/")
		case "StateDirectory":
			writable = append(writable, "/var/lib/"+v+"/")
		case "ReadWritePaths":
			writable = append(writable, strings.TrimSuffix(v, "/")+"/")
		}
	}
	for _, p := range writablePath.FindAllString(shipped, -1) {
		if !slices.ContainsFunc(writable, func(w string) bool { return strings.HasPrefix(p+"/", w) }) {
			t.Errorf("the shipped configuration names %s, which tagbridge.service may not write (writable: %v)", p, writable)
		}
	}
}

var exposure = regexp.MustCompile(`Overall exposure level for tagbridge\.service: ([0-9.]+)`)

// checkUnit runs systemd-analyze verify and security on the installed unit.
func checkUnit(t *testing.T) {
	t.Helper()
	if b, err := exec.CommandContext(t.Context(), "systemd-analyze", "verify", unitPath).CombinedOutput(); err != nil || bytes.Contains(b, []byte("tagbridge")) {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitPath, err, b)
	}
	// --offline=true analyses the unit file itself, without asking a
	// running systemd (there is none in containers).
	report := run(t, "systemd-analyze", "security", "--offline=true", "--no-pager", unitPath)
	m := exposure.FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("systemd-analyze security: no overall exposure level in\n%s", report)
	}
	score, err := strconv.ParseFloat(m[1], 64)
	if err != nil || score > maxScore {
		t.Errorf("systemd-analyze security: exposure %s, want %.1f or lower\n%s", m[1], maxScore, report)
	}
	t.Logf("systemd-analyze security: exposure level %s", m[1])
}

// purge removes what the test installed, whatever state it is in.
func purge(t *testing.T) {
	if _, ok := pkgStatus(); !ok {
		return
	}
	if b, err := exec.Command("dpkg", "-P", pkgName).CombinedOutput(); err != nil {
		t.Errorf("cleanup: dpkg -P %s: %v\n%s", pkgName, err, b)
	}
}

// pkgStatus reports dpkg's status of the package, and whether dpkg knows it.
func pkgStatus() (string, bool) {
	b, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", pkgName).Output()
	if err != nil || len(b) == 0 || string(b) == "unknown ok not-installed" {
		return "", false
	}
	return string(b), true
}

// lockMachine keeps two runs of this test (from two checkouts) from
// installing the package at the same time.
func lockMachine(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "tagbridge-packaging-test.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	locked := make(chan error, 1)
	go func() { locked <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-locked:
		if err != nil {
			t.Fatalf("lock %s: %v", f.Name(), err)
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("another run of this test holds %s for more than 5 minutes", f.Name())
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String()
}

// runCombined runs a command and returns its standard output and error,
// as a user sees them.
func runCombined(t *testing.T, name string, args ...string) string {
	t.Helper()
	b, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
	return string(b)
}

func userName(uid uint32) string {
	if u, err := user.LookupId(fmt.Sprint(uid)); err == nil {
		return u.Username
	}
	return fmt.Sprint(uid)
}

func groupName(gid uint32) string {
	if g, err := user.LookupGroupId(fmt.Sprint(gid)); err == nil {
		return g.Name
	}
	return fmt.Sprint(gid)
}
