package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
)

// A configuration error must exit with a status that no crash gives, since
// the unit's RestartPreventExitStatus keeps the agent down after it: a Go
// panic (measured here, not assumed) must be restarted.
func TestConfigErrorExitIsNotACrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	exitOf := func(bin string, args ...string) int {
		t.Helper()
		err := exec.CommandContext(t.Context(), bin, args...).Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("%s %v: %v, want a non-zero exit", filepath.Base(bin), args, err)
		}
		return exit.ExitCode()
	}

	dir := t.TempDir()
	src := filepath.Join(dir, "panics.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() { panic(\"crash\") }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	panics := filepath.Join(dir, "panics")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", panics, src).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	crash := exitOf(panics)

	bad := writeConfig(t, "agent: {id: ipc1}\nmqtt: {qos: 3}\nplcs: []\n")
	config := exitOf(buildBinary(t), "run", "-c", bad)
	if config != exitConfig || config == crash || config == exitRuntime {
		t.Errorf("run with a bad configuration exits %d, a panic %d, a runtime failure %d: want %d, distinct from both", config, crash, exitRuntime, exitConfig)
	}

	unit, err := os.ReadFile("packaging/tagbridge.service")
	if err != nil {
		t.Fatal(err)
	}
	var prevent []int
	for _, m := range regexp.MustCompile(`(?m)^RestartPreventExitStatus=(.*)$`).FindAllSubmatch(unit, -1) {
		for _, f := range regexp.MustCompile(`\d+`).FindAll(m[1], -1) {
			n, _ := strconv.Atoi(string(f))
			prevent = append(prevent, n)
		}
	}
	if !slices.Equal(prevent, []int{config}) {
		t.Errorf("tagbridge.service RestartPreventExitStatus %v, want only the configuration error's %d (a panic exits %d)", prevent, config, crash)
	}
}
