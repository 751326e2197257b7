// Package simproc runs scripts/plcsim as a child process for tests: a real
// OPC UA server that can be killed and restarted like a PLC.
package simproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/internal/testkit"
)

// binary builds plcsim once per test binary.
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "plcsim-*")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "plcsim")
	_, self, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(filepath.Dir(self), "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build plcsim: %v\n%s", err, out)
	}
	return bin, nil
})

// PLC is a running simulator.
type PLC struct {
	t        testing.TB
	proc     *testkit.Proc // nil when killed
	stderr   testkit.Log
	Endpoint string // opc.tcp://127.0.0.1:PORT
}

// Start runs plcsim with args and waits for its READY line. The process is
// killed when the test ends.
func Start(t testing.TB, args ...string) *PLC {
	t.Helper()
	p := &PLC{t: t}
	p.start(args)
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("plcsim %s log:\n%s", p.Endpoint, p.stderr.String())
		}
	})
	return p
}

// Restart starts the simulator again on the same port with args.
func (p *PLC) Restart(args ...string) {
	p.t.Helper()
	p.Kill()
	p.start(append(args, "-port", p.Port()))
}

// Port is the TCP port the simulator listens on.
func (p *PLC) Port() string {
	return p.Endpoint[strings.LastIndex(p.Endpoint, ":")+1:]
}

func (p *PLC) start(args []string) {
	p.t.Helper()
	bin, err := binary()
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &p.stderr
	proc, err := testkit.StartProc(cmd, 15*time.Second, nil)
	p.proc = proc
	switch {
	case err == nil:
		p.Endpoint = proc.Endpoint
	case errors.Is(err, testkit.ErrExitedBeforeReady):
		p.t.Fatalf("plcsim %v exited before READY", args)
	case errors.Is(err, testkit.ErrNoReady):
		p.proc = nil
		p.t.Fatalf("plcsim %v: no READY within 15s", args)
	default:
		p.t.Fatal(err)
	}
}

// Kill stops the simulator abruptly, as a power cut would.
func (p *PLC) Kill() {
	if p.proc == nil {
		return
	}
	p.proc.Kill()
	p.proc = nil
}

// Tags returns plcsim's -print-tags output for n tags: a YAML tags: list.
func Tags(t testing.TB, n int) string {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-tags", fmt.Sprint(n), "-print-tags").Output()
	if err != nil {
		t.Fatalf("plcsim -print-tags: %v", err)
	}
	return string(out)
}
