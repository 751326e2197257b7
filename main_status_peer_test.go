package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// squatterScript listens where the agent would (argv: unix PATH or tcp),
// prints "ready" or its port, accepts one connection, prints what it
// received in hex and, if it received a request, answers as an agent would.
const squatterScript = `
import socket, sys
kind, where = sys.argv[1], sys.argv[2]
if kind == "unix":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(where)
else:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
s.listen(8)
print(s.getsockname()[1] if kind == "tcp" else "ready", flush=True)
s.settimeout(20)
c, _ = s.accept()
c.settimeout(5)
data = b""
try:
    while b"\r\n\r\n" not in data:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
except socket.timeout:
    pass
print("GOT " + data.hex(), flush=True)
if data:
    body = b'{"agent":"squatter","healthy":true,"plcs":[],"broker":{"connected":true}}'
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
c.close()
`

// squatter is a process holding the status address while the agent is down.
type squatter struct {
	addr string // the socket path or 127.0.0.1:port
	out  *bufio.Scanner
	cmd  *exec.Cmd
}

// startSquatter runs squatterScript, as uid 65534 (nobody) when foreign.
func startSquatter(t *testing.T, kind, dir string, foreign bool) *squatter {
	t.Helper()
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("the squatter needs %s: %v", python, err)
	}
	sock := filepath.Join(dir, "status.sock")
	args := []string{python, "-c", squatterScript, kind, sock}
	if foreign {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Fatalf("a listener of another user needs setpriv (util-linux): %v", err)
		}
		if os.Getuid() != 0 {
			t.Fatalf("a listener of another user needs root to start it; running as uid %d", os.Getuid())
		}
		args = append([]string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("squatter stderr: %s", stderr.String())
		}
	})
	s := &squatter{out: bufio.NewScanner(stdout), cmd: cmd}
	ready := make(chan bool, 1)
	go func() { ready <- s.out.Scan() }()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("squatter did not start: %s", stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("squatter not ready within 10 s: %s", stderr.String())
	}
	s.addr = sock
	if kind == "tcp" {
		s.addr = "127.0.0.1:" + s.out.Text()
	}
	return s
}

// received returns what the squatter was sent, once the client is done.
func (s *squatter) received(t *testing.T) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		if s.out.Scan() {
			got <- s.out.Text()
		}
		close(got)
	}()
	select {
	case line, ok := <-got:
		raw, err := hex.DecodeString(strings.TrimPrefix(line, "GOT "))
		if !ok || !strings.HasPrefix(line, "GOT ") || err != nil {
			t.Fatalf("squatter said %q", line)
		}
		return string(raw)
	case <-time.After(10 * time.Second):
		t.Fatal("squatter did not report within 10 s")
	}
	return ""
}

// While the agent is down, another user's process holding its socket path
// or port is not sent the token; a process of a trusted user is (the
// control that shows the squatter would have seen it).
func TestStatusListenerVerified(t *testing.T) {
	for _, kind := range []string{"unix", "tcp"} {
		for _, foreign := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/foreign=%v", kind, foreign), func(t *testing.T) {
				// Another user must be able to create the socket in dir.
				dir, err := os.MkdirTemp("", "tagbridge-status-")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(dir) })
				if err := os.Chmod(dir, 0o777); err != nil {
					t.Fatal(err)
				}
				sq := startSquatter(t, kind, dir, foreign)
				tokenFile := filepath.Join(t.TempDir(), "token")
				if err := os.WriteFile(tokenFile, []byte(testStatusToken+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				cfg := writeConfig(t, fmt.Sprintf("agent: {id: stat, status_listen: %q, status_token_file: %s}\nplcs: []\n", sq.addr, tokenFile))
				var stdout, stderr bytes.Buffer
				code := cmdStatus([]string{"-c", cfg}, &stdout, &stderr)
				got := sq.received(t)
				if !foreign {
					if code != exitOK || !strings.Contains(got, "Bearer "+testStatusToken) || !strings.Contains(stdout.String(), "agent squatter: healthy") {
						t.Fatalf("trusted listener: exit %d, sent %q, stdout %q, stderr %q", code, got, stdout.String(), stderr.String())
					}
					return
				}
				if strings.Contains(got, testStatusToken) || got != "" {
					t.Fatalf("the token went to another user's listener: %q", got)
				}
				want := sq.addr + " is held by a process of user nobody (uid 65534), neither root, you (uid 0) nor the owner of " + tokenFile + " (uid 0): the token is not sent to it"
				if code != exitRuntime || !strings.Contains(stderr.String(), want) || stdout.Len() > 0 {
					t.Errorf("foreign listener: exit %d, stdout %q, stderr %q; want exit %d and %q", code, stdout.String(), stderr.String(), exitRuntime, want)
				}
			})
		}
	}
}
