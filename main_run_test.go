package main

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// binary is the tagbridge binary the tests run, built once per test run.
var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

// buildBinary builds tagbridge from this tree on first use and returns its
// path.
func buildBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		if binary.dir, binary.err = os.MkdirTemp("", "tagbridge-bin-"); binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "tagbridge")
		if out, err := exec.Command("go", "build", "-o", binary.path, ".").CombinedOutput(); err != nil {
			binary.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// The real binary: values flow; SIGHUP with an invalid file logs every
// error with its line and changes nothing; SIGHUP with a valid one applies
// it; SIGTERM stops it in order within 10 s with exit code 0.
func TestRunBinarySignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	broker := testkit.StartBroker(t)
	plc := simproc.Start(t, "-tags", "8", "-interval", "100ms")
	tagLines := func(n int) string {
		var tags strings.Builder
		for _, l := range strings.Split(strings.TrimRight(simproc.Tags(t, n), "\n"), "\n") {
			fmt.Fprintf(&tags, "    %s\n", l)
		}
		return tags.String()
	}
	spool := t.TempDir()
	configFor := func(agentID, tags string) string {
		return fmt.Sprintf("agent: {id: %s, spool_dir: %s}\nmqtt: {url: %s}\nplcs:\n  - name: sim\n    endpoint: %s\n    publishing_interval: 50ms\n%s",
			agentID, spool, broker.URL(), plc.Endpoint, tags)
	}
	cfg := writeConfig(t, configFor("bin", tagLines(4)))
	msgs := testkit.Subscribe(t, broker.URL(), "tagbridge/bin/#", 1)

	var logs testkit.Log
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
	waitLog := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(logs.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// next returns the topic of the next value.
	next := func(what string) string {
		t.Helper()
		select {
		case m := <-msgs:
			return m.Topic
		case err := <-exited:
			t.Fatalf("tagbridge exited %s: %v", what, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("no value %s", what)
		}
		return ""
	}
	next("at start")

	// Two errors: the agent id and a node id.
	bad := strings.Replace(configFor("bin/x", tagLines(8)), `"ns=1;s=Int32.0005"`, `"ns=1;x=Int32.0005"`, 1)
	if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	var want config.Errors
	if _, err := config.Load(cfg); !errors.As(err, &want) || len(want) < 2 {
		t.Fatalf("the invalid configuration gives %v, want 2 or more config.Errors", err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("configuration refused")
	type logLine struct {
		Level, File, Path, Message string
		Line                       int
	}
	var logged []logLine
	for _, l := range strings.Split(logs.String(), "\n") {
		var ll logLine
		if json.Unmarshal([]byte(l), &ll) == nil && ll.Level == "error" && ll.Line > 0 {
			logged = append(logged, ll)
		}
	}
	for _, e := range want {
		if !slices.Contains(logged, logLine{"error", cfg, e.Path, e.Error(), e.Line}) || e.Line == 0 {
			t.Errorf("config error %q (line %d) not logged with its file and line", e.Error(), e.Line)
		}
	}
	// Still alive and publishing the old configuration: four tags, agent "bin".
	for range 20 {
		if topic := next("after the refused reload"); strings.HasSuffix(topic, "/int32_0005") {
			t.Fatalf("a value on %s: the refused configuration was applied", topic)
		}
	}

	if err := os.WriteFile(cfg, []byte(configFor("bin", tagLines(8))), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("configuration reloaded")
	for n := 0; ; n++ {
		if topic := next("after the reload"); topic == "tagbridge/bin/sim/int32_0005" {
			break
		}
		if n > 200 {
			t.Fatal("no value of the added tag int32_0005 after the reload")
		}
	}
	go func() {
		for range msgs { // keep the subscriber drained
		}
	}()

	stopAt := time.Now()
	stopLog := len(logs.String())
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
	// A clean stop is no error (paho once logged the broker closing its end
	// after our DISCONNECT as one).
	for line := range strings.Lines(logs.String()[stopLog:]) {
		if strings.Contains(line, `"level":"error"`) {
			t.Errorf("error logged during a clean stop: %s", line)
		}
	}
	_ = os.Remove(cfg)
}

// A whole run at debug level over a secured session with a user password and
// the agent's private key: neither reaches the log.
func TestRunLogsNoSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	const password = "Tr0ub4dor&3-secret"
	peer := peerproc.Start(t, peerproc.Options{Tags: 4, Policies: []string{"Basic256Sha256"}, Modes: []string{"SignAndEncrypt"},
		Users: map[string]string{"operator": password}})
	broker := testkit.StartBroker(t)

	dir := t.TempDir()
	certFile, keyFile := testkit.KeyPairFiles(t, dir, certs.Options{AgentID: "secret", Hostname: "localhost"})
	var tags strings.Builder
	for _, l := range strings.Split(strings.TrimRight(simproc.Tags(t, 4), "\n"), "\n") {
		fmt.Fprintf(&tags, "    %s\n", l)
	}
	cfg := writeConfig(t, fmt.Sprintf(`agent: {id: secret, log_level: debug, allowed_cert_dirs: [%[1]s], pki_dir: %[1]s/pki, spool_dir: %[1]s/spool}
mqtt: {url: %[2]s}
plcs:
  - name: peer
    endpoint: %[3]s
    publishing_interval: 50ms
    security: {policy: Basic256Sha256, mode: SignAndEncrypt, certificate_file: %[4]s, key_file: %[5]s, trust: fingerprint, auto_accept: true}
    auth: {username: operator, password_env: PEER_PASSWORD}
%[6]s`, dir, broker.URL(), peer.Endpoint, certFile, keyFile, tags.String()))
	msgs := testkit.Subscribe(t, broker.URL(), "tagbridge/secret/#", 1)

	var logs testkit.Log
	cmd := exec.Command(bin, "run", "-c", cfg)
	cmd.Env = append(os.Environ(), "PEER_PASSWORD="+password)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for n := 0; n < 20; n++ {
		select {
		case <-msgs:
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d values within 30 s; log:\n%s", n, logs.String())
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()

	out := logs.String()
	if !strings.Contains(out, `"level":"debug"`) {
		t.Fatalf("no debug lines: the check would prove little\n%s", out)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(keyPEM)
	b64 := base64.StdEncoding.EncodeToString(block.Bytes)
	for _, secret := range []string{password, "PRIVATE KEY", b64[100:140], b64[len(b64)-60 : len(b64)-20]} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains secret material %q", secret)
		}
	}
}
