package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tagbridge/tagbridge/certs"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func threePLCs(tagsEach int) string {
	var b strings.Builder
	b.WriteString("agent: {id: line1}\nplcs:\n")
	for p := range 3 {
		fmt.Fprintf(&b, "  - name: plc%d\n    endpoint: opc.tcp://127.0.0.1:%d\n    tags:\n", p, 4840+p)
		for i := range tagsEach {
			fmt.Fprintf(&b, "      - node: ns=2;i=%d\n", i+1)
		}
	}
	return b.String()
}

func TestCommands(t *testing.T) {
	good := writeConfig(t, threePLCs(40))
	bad := writeConfig(t, "agent: {id: a/b}\nmqtt: {qos: 3}\nplcs: []\n")
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string // substring expected on stdout
		stderr   string // substring expected on stderr
		noStderr bool
	}{
		{name: "no command", args: nil, code: exitConfig, stderr: "Usage:"},
		{name: "unknown command", args: []string{"frobnicate"}, code: exitConfig, stderr: `unknown command "frobnicate"`},
		{name: "help", args: []string{"--help"}, code: 0, stdout: "tagbridge run"},
		{name: "validate ok", args: []string{"validate", "-c", good}, code: 0, stdout: "config OK: 3 PLCs, 120 tags\n", noStderr: true},
		{name: "validate bad", args: []string{"validate", "-c", bad}, code: exitConfig, stderr: bad + ":1: agent.id:"},
		{name: "validate missing file", args: []string{"validate", "-c", "/nonexistent/tagbridge.yaml"}, code: exitConfig, stderr: "/nonexistent/tagbridge.yaml"},
		{name: "validate help", args: []string{"validate", "-h"}, code: 0, stdout: "configuration"},
		{name: "validate bad flag", args: []string{"validate", "-x"}, code: exitConfig, stderr: "flag provided but not defined"},
		{name: "validate extra arg", args: []string{"validate", "-c", good, "extra"}, code: exitConfig, stderr: `unexpected argument "extra"`},
		{name: "run help", args: []string{"run", "-h"}, code: 0, stdout: "SIGTERM"},
		{name: "run bad config", args: []string{"run", "-c", bad}, code: exitConfig, stderr: "mqtt.qos"},
		{name: "version", args: []string{"version"}, code: 0, stdout: "tagbridge dev (commit "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, &stdout, &stderr)
			}
			if !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("stdout %q lacks %q", &stdout, tc.stdout)
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", &stderr, tc.stderr)
			}
			if tc.noStderr && stderr.Len() > 0 {
				t.Errorf("unexpected stderr %q", &stderr)
			}
		})
	}
}

// Topics that run would refuse (here a tag whose topic is its PLC's status
// topic) are refused by validate too.
func TestValidateChecksTopics(t *testing.T) {
	bad := writeConfig(t, "agent: {id: ipc1}\nplcs:\n  - name: press1\n    endpoint: opc.tcp://127.0.0.1:4840\n    tags:\n      - {node: \"ns=2;s=status\"}\n")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "-c", bad}, &stdout, &stderr); code != exitConfig {
		t.Fatalf("exit code %d, stderr %s", code, &stderr)
	}
	if want := `status topic "tagbridge/ipc1/press1/status" is also the topic of a tag`; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q, want %q", &stderr, want)
	}
}

func TestValidateReportsEveryProblemOnItsOwnLine(t *testing.T) {
	bad := writeConfig(t, "agent: {id: a/b}\nmqtt: {qos: 3}\nplcs: []\n")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "-c", bad}, &stdout, &stderr); code != exitConfig {
		t.Fatalf("exit code %d", code)
	}
	lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
	if len(lines) < 3 {
		t.Fatalf("want at least 3 problems (agent.id, mqtt.qos, plcs), got:\n%s", &stderr)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, bad+":") {
			t.Errorf("line %q does not start with %q", l, bad+":")
		}
	}
}

func TestCertsCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	cfg := writeConfig(t, "agent: {id: line1-ipc01}\nplcs: []\n")
	var stdout, stderr bytes.Buffer
	code := run([]string{"certs", "create", "--dir", dir, "-c", cfg, "--hostname", "ipc01", "--days", "10"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit code %d\n%s", code, &stderr)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, "client-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert, der, key, err := certs.LoadKeyPair(filepath.Join(dir, "client-cert.pem"), filepath.Join(dir, "client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if key.N.BitLen() != 2048 {
		t.Errorf("key size %d", key.N.BitLen())
	}
	if d, _ := os.ReadFile(filepath.Join(dir, "client-cert.der")); !bytes.Equal(d, der) {
		t.Error("client-cert.der differs from client-cert.pem")
	}
	uri, _ := certs.ApplicationURI(cert)
	for _, want := range []string{"ApplicationURI:      urn:ipc01:tagbridge:line1-ipc01\n", "SHA-256 fingerprint: " + certs.Fingerprint(der) + "\n",
		"Import " + filepath.Join(dir, "client-cert.der") + " into each PLC's list of trusted client certificates"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, &stdout)
		}
	}
	if uri != "urn:ipc01:tagbridge:line1-ipc01" {
		t.Errorf("ApplicationURI %q", uri)
	}
	for name, perm := range map[string]os.FileMode{"client-key.pem": 0o600, "client-cert.pem": 0o644, "client-cert.der": 0o644} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != perm {
			t.Errorf("%s: mode %v, want %v (%v)", name, fi.Mode().Perm(), perm, err)
		}
	}

	// A second run keeps the files unless --force.
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"certs", "create", "--dir", dir, "--agent-id", "x", "--hostname", "h"}, &stdout, &stderr); code != 1 {
		t.Fatalf("second run: exit code %d", code)
	}
	if !strings.Contains(stderr.String(), "client-cert.pem exists; keeping it (--force replaces it") {
		t.Errorf("stderr %q", &stderr)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, "client-cert.pem")); !bytes.Equal(now, certPEM) {
		t.Error("certificate overwritten without --force")
	}
	if code := run([]string{"certs", "create", "--dir", dir, "--agent-id", "x", "--hostname", "h", "--force"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--force: exit code %d\n%s", code, &stderr)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, "client-cert.pem")); bytes.Equal(now, certPEM) {
		t.Error("--force did not replace the certificate")
	}
	if _, _, _, err := certs.LoadKeyPair(filepath.Join(dir, "client-cert.pem"), filepath.Join(dir, "client-key.pem")); err != nil {
		t.Errorf("after --force: %v", err)
	}
}

func TestCertsCreateUsage(t *testing.T) {
	dir := t.TempDir()
	noID := writeConfig(t, "agent: {log_level: info}\n")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{name: "certs alone", args: []string{"certs"}, code: exitConfig, stderr: "Usage: tagbridge certs create"},
		{name: "certs unknown", args: []string{"certs", "delete"}, code: exitConfig, stderr: `unknown command "delete"`},
		{name: "help", args: []string{"certs", "create", "-h"}, code: 0, stdout: "--agent-id ID | -c FILE"},
		{name: "key size", args: []string{"certs", "create", "--dir", dir, "--agent-id", "a", "--key-size", "1024"}, code: exitConfig, stderr: "--key-size 1024: want 2048, 3072 or 4096"},
		{name: "days", args: []string{"certs", "create", "--dir", dir, "--agent-id", "a", "--days", "0"}, code: exitConfig, stderr: "--days 0: must be at least 1"},
		{name: "no agent id in config", args: []string{"certs", "create", "--dir", dir, "-c", noID}, code: exitConfig, stderr: noID + ": agent.id: required\n"},
		{name: "missing config", args: []string{"certs", "create", "--dir", dir, "-c", "/nonexistent/c.yaml"}, code: exitConfig, stderr: "give --agent-id or a configuration with agent.id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != tc.code {
				t.Errorf("exit code %d, want %d\n%s", code, tc.code, &stderr)
			}
			if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stdout %q stderr %q; want %q, %q", &stdout, &stderr, tc.stdout, tc.stderr)
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused runs wrote files: %v", entries)
	}
}

func TestCertsCreateTakesDirOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	dir := t.TempDir()
	if err := os.Chown(dir, 4321, 4322); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"certs", "create", "--dir", dir, "--agent-id", "a", "--hostname", "h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d\n%s", code, &stderr)
	}
	for _, name := range []string{"client-key.pem", "client-cert.pem", "client-cert.der"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 4321 || st.Gid != 4322 {
			t.Errorf("%s owned by %d:%d, want 4321:4322", name, st.Uid, st.Gid)
		}
	}
}
