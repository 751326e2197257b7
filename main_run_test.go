package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/publish/brokertest"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The real binary: values flow, SIGHUP does not stop it, SIGTERM stops it in
// order within 10 s with exit code 0.
func TestRunBinarySignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "tagbridge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	broker := brokertest.Start(t)
	plc := simproc.Start(t, "-tags", "8", "-interval", "100ms")
	var tags strings.Builder
	for _, l := range strings.Split(strings.TrimRight(simproc.Tags(t, 8), "\n"), "\n") {
		fmt.Fprintf(&tags, "    %s\n", l)
	}
	cfg := writeConfig(t, fmt.Sprintf("agent: {id: bin, spool_dir: %s}\nmqtt: {url: %s}\nplcs:\n  - name: sim\n    endpoint: %s\n    publishing_interval: 50ms\n%s",
		t.TempDir(), broker.URL(), plc.Endpoint, tags.String()))
	msgs := brokertest.Subscribe(t, broker.URL(), "tagbridge/bin/#", 1)

	var logs lockedBuffer
	cmd := exec.Command(bin, "run", "-c", cfg)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("tagbridge log:\n%s", logs.String())
		}
	})

	select {
	case <-msgs:
	case err := <-exited:
		t.Fatalf("tagbridge exited: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no value within 20 s")
	}
	cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "SIGHUP") {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP not acknowledged in the log")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Still alive and publishing after SIGHUP.
	for range 2 {
		select {
		case <-msgs:
		case err := <-exited:
			t.Fatalf("tagbridge exited after SIGHUP: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("no value after SIGHUP")
		}
	}
	go func() {
		for range msgs { // keep the subscriber drained
		}
	}()

	stopAt := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want code 0", err)
		}
		if took := time.Since(stopAt); took > 10*time.Second {
			t.Errorf("stopped in %v, want within 10 s", took)
		}
	case <-time.After(12 * time.Second):
		t.Fatal("tagbridge still running 12 s after SIGTERM")
	}
	if !strings.Contains(logs.String(), "agent stopped") {
		t.Errorf("no orderly stop in the log")
	}
	_ = os.Remove(cfg)
}
