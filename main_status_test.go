package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/agent/statusapi"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

const testStatusToken = "main-status-token-9a8b7c6d5e4f"

// runStatus runs "tagbridge status" from bin and returns its exit code,
// standard output and standard error.
func runStatus(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"status"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// tagbridge status against the real binary serving on a unix socket:
// a clear error while the agent is not running, the table once it is.
func TestStatusCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	broker := testkit.StartBroker(t)
	plc := simproc.Start(t, "-tags", "4", "-interval", "100ms")
	dir := t.TempDir()
	sock := filepath.Join(dir, "status.sock")
	// A spool directory open to the group: the spool warns about it, so the
	// log has a line from below the MQTT component's logger.
	spoolDir := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(spoolDir, 0o750); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(testStatusToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var tags strings.Builder
	for _, l := range strings.Split(strings.TrimRight(simproc.Tags(t, 4), "\n"), "\n") {
		fmt.Fprintf(&tags, "    %s\n", l)
	}
	cfg := writeConfig(t, fmt.Sprintf("agent: {id: stat, spool_dir: %s, status_listen: %s, status_token_file: %s}\nmqtt: {url: %s, password_env: TAGBRIDGE_TEST_STATUS_MQTT_PASS}\nplcs:\n  - name: press1\n    endpoint: %s\n    publishing_interval: 50ms\n%s",
		spoolDir, sock, tokenFile, broker.URL(), plc.Endpoint, tags.String()))

	// Not running yet.
	code, out, errOut := runStatus(t, bin, "-c", cfg)
	if code != exitRuntime || !strings.Contains(errOut, "no agent answers at "+sock) || !strings.Contains(errOut, "is tagbridge running?") || out != "" {
		t.Errorf("status without an agent: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// The agent needs the MQTT password from its environment; status does not.
	var logs testkit.Log
	cmd := exec.Command(bin, "run", "-c", cfg)
	cmd.Env = append(os.Environ(), "TAGBRIDGE_TEST_STATUS_MQTT_PASS=unused-by-mosquitto")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("tagbridge log:\n%s", logs.String())
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, errOut = runStatus(t, bin, "-c", cfg, "--wide")
		if code == exitOK {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("tagbridge exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("status not healthy within 30 s: exit %d\n%s%s", code, out, errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("tagbridge status:\n%s", out)
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "agent stat: healthy") {
		t.Errorf("first line %q, want agent stat: healthy", lines[0])
	}
	var header, row string
	for i, l := range lines {
		if strings.HasPrefix(l, "PLC ") && i+1 < len(lines) {
			header, row = l, lines[i+1]
		}
	}
	for _, col := range []string{"STATE", "ENDPOINT", "SECURITY", "CHANNEL/TOKEN", "RENEWALS", "RECONNECTS", "TAGS OK/FAILED", "VALUES/S", "CLOCK OFFSET"} {
		if !strings.Contains(header, col) {
			t.Errorf("header %q lacks %s", header, col)
		}
	}
	fields := strings.Fields(row)
	if len(fields) < 5 || fields[0] != "press1" || fields[1] != "streaming" || !strings.Contains(row, plc.Endpoint) || !strings.Contains(row, " 4/0 ") || !strings.Contains(row, "None None") {
		t.Errorf("PLC row %q, want press1 streaming %s None None ... 4/0", row, plc.Endpoint)
	}
	if !strings.Contains(out, "\nbroker: connected; in flight ") {
		t.Errorf("no broker line in:\n%s", out)
	}
	if errOut != "" {
		t.Errorf("stderr: %q", errOut)
	}

	// --json is the agent's document.
	code, out, _ = runStatus(t, bin, "-c", cfg, "--json")
	var st statusapi.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != exitOK || st.Agent != "stat" || len(st.PLCs) != 1 || st.PLCs[0].TagsOK != 4 {
		t.Errorf("status --json: exit %d, %v:\n%s", code, err, out)
	}

	// reconnect over the same socket: a streaming entry is not waiting,
	// an unknown one is named (the retry itself: collectors/opcua TestRetryNow).
	for _, c := range []struct{ plc, want string }{{"press1", "409 Conflict: plc press1: not waiting to reconnect"}, {"nosuch", "404 Not Found: plc nosuch: no such plc entry"}} {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, "reconnect", "-c", cfg, c.plc)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitRuntime || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("reconnect %s: %v, stdout %q, stderr %q, want exit %d and %q", c.plc, err, stdout.String(), stderr.String(), exitRuntime, c.want)
		}
	}

	// The broker goes away: exit 3 and the reason.
	broker.Stop()
	deadline = time.Now().Add(30 * time.Second)
	for {
		code, out, _ = runStatus(t, bin, "-c", cfg)
		if code == exitUnhealthy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status not unhealthy within 30 s of stopping the broker: exit %d\n%s", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out, "agent stat: UNHEALTHY") || !strings.Contains(out, "  - broker: not connected\n") || !strings.Contains(out, "broker: NOT CONNECTED") {
		t.Errorf("unhealthy status:\n%s", out)
	}

	// Another token than the agent's.
	if err := os.WriteFile(tokenFile, []byte("some-other-token-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runStatus(t, bin, "-c", cfg)
	if code != exitRuntime || !strings.Contains(errOut, "refused the token") {
		t.Errorf("status with another token: exit %d, stderr %q", code, errOut)
	}
	if strings.Contains(logs.String(), testStatusToken) || strings.Contains(logs.String(), "some-other-token") {
		t.Error("the agent's log shows a token")
	}
	checkLogKeys(t, logs.String(), "spool: the directory is open to other users")
}

// checkLogKeys fails on a JSON log line that holds a key twice (zerolog
// writes every field it is given, and readers keep one of them), and when
// no line contains want.
func checkLogKeys(t *testing.T, log, want string) {
	t.Helper()
	found := false
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		found = found || strings.Contains(line, want)
		dec := json.NewDecoder(strings.NewReader(line))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Errorf("log line is not a JSON object: %s", line)
			continue
		}
		seen := map[string]bool{}
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				t.Errorf("log line %s: %v", line, err)
				break
			}
			if seen[key.(string)] {
				t.Errorf("key %q twice in log line %s", key, line)
			}
			seen[key.(string)] = true
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				t.Errorf("log line %s: %v", line, err)
				break
			}
		}
	}
	if !found {
		t.Errorf("no log line contains %q", want)
	}
}
