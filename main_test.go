package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		{name: "no command", args: nil, code: 2, stderr: "Usage:"},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{name: "help", args: []string{"--help"}, code: 0, stdout: "tagbridge run"},
		{name: "validate ok", args: []string{"validate", "-c", good}, code: 0, stdout: "config OK: 3 PLCs, 120 tags\n", noStderr: true},
		{name: "validate bad", args: []string{"validate", "-c", bad}, code: 2, stderr: bad + ":1: agent.id:"},
		{name: "validate missing file", args: []string{"validate", "-c", "/nonexistent/tagbridge.yaml"}, code: 2, stderr: "/nonexistent/tagbridge.yaml"},
		{name: "validate help", args: []string{"validate", "-h"}, code: 0, stdout: "configuration"},
		{name: "validate bad flag", args: []string{"validate", "-x"}, code: 2, stderr: "flag provided but not defined"},
		{name: "validate extra arg", args: []string{"validate", "-c", good, "extra"}, code: 2, stderr: `unexpected argument "extra"`},
		{name: "run help", args: []string{"run", "-h"}, code: 0, stdout: "SIGTERM"},
		{name: "run bad config", args: []string{"run", "-c", bad}, code: 2, stderr: "mqtt.qos"},
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

func TestValidateReportsEveryProblemOnItsOwnLine(t *testing.T) {
	bad := writeConfig(t, "agent: {id: a/b}\nmqtt: {qos: 3}\nplcs: []\n")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "-c", bad}, &stdout, &stderr); code != 2 {
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
