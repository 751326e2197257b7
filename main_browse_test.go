package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/internal/cli/browsecmd"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// runBrowse runs tagbridge browse in-process.
func runBrowse(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(append([]string{"browse"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// validateEntry pastes a browse output under an agent and mqtt section and
// loads it as tagbridge validate does; it returns validate's summary.
func validateEntry(t *testing.T, agent, entry string) string {
	t.Helper()
	file := writeConfig(t, agent+"mqtt: {url: \"tcp://127.0.0.1:1883\"}\n"+entry)
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "-c", file}, &out, &errOut); code != exitOK {
		t.Fatalf("validate: exit %d\n%s", code, errOut.String())
	}
	return strings.TrimSpace(out.String())
}

var tagNode = regexp.MustCompile(`(?m)^      - name: "([^"]+)"\n        node: "([^"]+)"  # (\w+), (read)$`)

// A browse of plcsim's 3000 variables, forced through continuation points,
// prints an entry that tagbridge validate accepts with every variable in it.
func TestBrowsePrintsAValidEntryForEveryVariable(t *testing.T) {
	const n = 3000
	sim := simproc.Start(t, "-tags", fmt.Sprint(n), "-interval", "1s")
	code, _, errOut := runBrowse(t, sim.Endpoint, "--plc", "press1", "--max-refs", "100", "-c", filepath.Join(t.TempDir(), "none.yaml"))
	if code == exitOK {
		t.Fatalf("browse with a missing -c FILE succeeded:\n%s", errOut)
	}
	code, out, errOut := runBrowse(t, sim.Endpoint, "--plc", "press1", "--max-refs", "100")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if want := fmt.Sprintf("plcs:\n  - name: \"press1\"\n    endpoint: %q\n    tags:\n", sim.Endpoint); !strings.HasPrefix(out, want) {
		t.Errorf("output starts\n%.200s\nwant\n%s", out, want)
	}
	if got, want := validateEntry(t, "agent: {id: line1}\n", out), fmt.Sprintf("config OK: 1 PLC, %d tags", n); got != want {
		t.Errorf("validate: %q, want %q", got, want)
	}
	tags := tagNode.FindAllStringSubmatch(out, -1)
	if len(tags) != n {
		t.Fatalf("%d tags with name, node and comment, want %d:\n%.500s", len(tags), n, out)
	}
	for i, m := range tags {
		kind := []string{"Double", "Int32", "Boolean", "String"}[i%4]
		if want := fmt.Sprintf("ns=1;s=%s.%04d", kind, i); m[2] != want || m[1] != "PLCSim."+want[7:] || m[3] != kind {
			t.Fatalf("tag %d: %q %q # %s; want node %s of type %s", i, m[1], m[2], m[3], want, kind)
		}
	}
	if !strings.Contains(errOut, fmt.Sprintf("%d variables found", n)) {
		t.Errorf("stderr lacks the summary:\n%s", errOut)
	}

	// The flags reach the walk.
	code, out, errOut = runBrowse(t, "--nsu", "--filter", "PLCSim.Boolean.*", sim.Endpoint, "--depth", "2")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if got, want := validateEntry(t, "agent: {id: line1}\n", out), fmt.Sprintf("config OK: 1 PLC, %d tags", n/4); got != want {
		t.Errorf("validate: %q, want %q", got, want)
	}
	// Without --security: None, and stderr says so and how to pick another.
	if want := "tagbridge browse: connected to " + sim.Endpoint + " with security None/None (the default: unsecured; --security POLICY/MODE or --security auto picks another)\n"; !strings.Contains(errOut, want) {
		t.Errorf("stderr lacks %q:\n%s", want, errOut)
	}
	if !strings.Contains(out, "name: \"127.0.0.1\"") || !strings.Contains(out, `node: "nsu=urn:tagbridge:plcsim;s=Boolean.0002"  # Boolean, read`) {
		t.Errorf("output lacks the default name or an nsu= node id:\n%.400s", out)
	}
	code, _, errOut = runBrowse(t, sim.Endpoint, "--depth", "1")
	if code != exitRuntime || !strings.Contains(errOut, "no variables found") {
		t.Errorf("depth 1: exit %d, want %d with no variables found:\n%s", code, exitRuntime, errOut)
	}

	// --tags-only prints the tags: list alone, ready to go under an entry.
	code, out, errOut = runBrowse(t, sim.Endpoint, "--tags-only", "--filter", "PLCSim.String.*")
	if code != exitOK {
		t.Fatalf("--tags-only: exit %d\n%s", code, errOut)
	}
	if !strings.HasPrefix(out, "    tags:\n      - name: ") || strings.Contains(out, "plcs:") || strings.Contains(out, "endpoint:") {
		t.Errorf("--tags-only output is not a bare tags: list:\n%.300s", out)
	}
	entry := fmt.Sprintf("plcs:\n  - name: press1\n    endpoint: %q\n", sim.Endpoint) + out
	if got, want := validateEntry(t, "agent: {id: line1}\n", entry), fmt.Sprintf("config OK: 1 PLC, %d tags", n/4); got != want {
		t.Errorf("--tags-only under an entry: validate %q, want %q", got, want)
	}

	// The Server object's variables are namespace 0: left out unless --ns0.
	code, out, errOut = runBrowse(t, sim.Endpoint, "--root", "i=2253", "--depth", "1")
	if code != exitRuntime || out != "" || !regexp.MustCompile(`no variables found \(1 node browsed; \d+ variables? of namespace 0 left out, --ns0 keeps them\)`).MatchString(errOut) {
		t.Errorf("root Server without --ns0: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	code, out, errOut = runBrowse(t, sim.Endpoint, "--root", "i=2253", "--depth", "1", "--ns0")
	if code != exitOK || !strings.Contains(out, `node: "i=2255"`) {
		t.Errorf("root Server with --ns0: exit %d, want NamespaceArray (i=2255) among the tags:\n%s\n%.600s", code, errOut, out)
	}
}

func TestBrowseUsage(t *testing.T) {
	t.Setenv(browsecmd.PasswordEnv, "")
	os.Unsetenv(browsecmd.PasswordEnv)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no endpoint", nil, "ENDPOINT required"},
		{"two endpoints", []string{"opc.tcp://a:4840", "opc.tcp://b:4840"}, `unexpected argument "opc.tcp://b:4840"`},
		{"no password flag", []string{"opc.tcp://a:4840", "--password", "x"}, "flag provided but not defined: -password"},
		{"bad endpoint", []string{"http://a"}, `ENDPOINT: "http://a" has an unsupported scheme "http"`},
		{"bad policy", []string{"opc.tcp://a:4840", "--security", "Basic999/Sign"}, `--security: "Basic999" is not a valid security policy`},
		{"None with a mode", []string{"opc.tcp://a:4840", "--security", "None/Sign"}, `--security: policy None needs mode None, not "Sign"`},
		{"password unset", []string{"opc.tcp://a:4840", "--user", "operator"}, `$TAGBRIDGE_PASSWORD: environment variable "TAGBRIDGE_PASSWORD" is not set`},
		{"certificate outside the allowed directories", []string{"opc.tcp://a:4840", "--security", "Basic256Sha256", "--cert", "/tmp/c.pem", "--key", "/tmp/k.pem"}, `--cert: /tmp/c.pem is not in an allowed directory (/etc/tagbridge/certs)`},
		{"bad plc name", []string{"opc.tcp://a:4840", "--plc", "a/b"}, `--plc: "a/b" is not a valid MQTT topic level`},
		{"negative depth", []string{"opc.tcp://a:4840", "--depth", "-1"}, "--depth -1: must not be negative"},
		{"zero timeout", []string{"opc.tcp://a:4840", "--timeout", "0s"}, "--timeout 0s: must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runBrowse(t, tc.args...)
			if code != exitConfig || out != "" || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit %d and %q", code, out, errOut, exitConfig, tc.want)
			}
		})
	}
}

// A secured browse uses the trust store and allowed directories of -c FILE:
// the unknown server certificate is refused and saved, and once moved to
// trusted/certs the browse runs over Basic256Sha256/SignAndEncrypt with a
// user name whose password never shows.
func TestBrowseSecuredPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node-opcua")
	}
	const tags = 40
	peer := peerproc.Start(t, peerproc.Options{Tags: tags, Policies: []string{"Basic256Sha256"}, Modes: []string{"SignAndEncrypt"},
		NoAnonymous: true, Users: map[string]string{"operator": "correct horse"}})
	dir := t.TempDir()
	cert, key := testkit.KeyPairFiles(t, dir, certs.Options{AgentID: "browsetest", Hostname: "localhost"})
	pki := filepath.Join(t.TempDir(), "pki")
	agent := fmt.Sprintf("agent: {id: line1, allowed_cert_dirs: [%q], pki_dir: %q}\n", dir, pki)
	cfg := writeConfig(t, agent)
	t.Setenv(browsecmd.PasswordEnv, "correct horse")
	args := []string{peer.Endpoint, "-c", cfg, "--security", "Basic256Sha256/SignAndEncrypt", "--cert", cert, "--key", key, "--user", "operator"}

	// The default (None, anonymous) is refused: the endpoints are listed
	// with the flags that select them.
	code, out, errOut := runBrowse(t, peer.Endpoint, "-c", cfg)
	if code != exitRuntime || out != "" || !strings.Contains(errOut, "the server offers:\n") || !strings.Contains(errOut, "\n  --security Basic256Sha256/SignAndEncrypt --user NAME\n") {
		t.Fatalf("default refused: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}

	code, out, errOut = runBrowse(t, args...)
	if code != exitRuntime || out != "" || !strings.Contains(errOut, "is not trusted") || !strings.Contains(errOut, "mv ") {
		t.Fatalf("untrusted server: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	rejected, _ := filepath.Glob(filepath.Join(pki, "rejected", "certs", "*"))
	if len(rejected) != 1 {
		t.Fatalf("rejected/certs holds %v, want the server's certificate", rejected)
	}
	if err := os.Rename(rejected[0], filepath.Join(pki, "trusted", "certs", filepath.Base(rejected[0]))); err != nil {
		t.Fatal(err)
	}

	before := peer.Log()
	code, out, errOut = runBrowse(t, args...)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if strings.Contains(out+errOut, "correct horse") {
		t.Error("the password appears in the output")
	}
	news := strings.TrimPrefix(peer.Log(), before)
	if !strings.Contains(news, "SecurityPolicy#Basic256Sha256 SignAndEncrypt)") || !strings.Contains(news, "session activated: UserNameIdentityToken") {
		t.Errorf("peer log lacks a Basic256Sha256/SignAndEncrypt session for a user name:\n%s", news)
	}
	// The entry names a variable of this PLC's own (default name: the
	// endpoint's host), not the one browse read the password from.
	u, err := url.Parse(peer.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	env := browsecmd.PasswordEnvFor(u.Hostname())
	want := fmt.Sprintf("    security:\n      policy: \"Basic256Sha256\"\n      mode: \"SignAndEncrypt\"\n      certificate_file: %q\n      key_file: %q\n    auth:\n      username: \"operator\"\n      password_env: %s\n", cert, key, env)
	if !strings.Contains(out, want) || env == browsecmd.PasswordEnv {
		t.Errorf("output lacks\n%s\n%.600s", want, out)
	}
	t.Setenv(env, "correct horse")
	if want := " with security Basic256Sha256/SignAndEncrypt\n"; !strings.Contains(errOut, want) {
		t.Errorf("stderr lacks %q:\n%s", want, errOut)
	}
	if got := strings.Count(out, `node: "ns=1;s=`); got != tags {
		t.Errorf("%d plcsim variables, want %d:\n%s", got, tags, out)
	}
	got := validateEntry(t, agent, out)
	if !strings.HasPrefix(got, "config OK: 1 PLC, ") {
		t.Errorf("validate: %q", got)
	}

	// auto is written as the policy and mode the session used.
	args[4] = "auto"
	code, out, errOut = runBrowse(t, args...)
	if code != exitOK {
		t.Fatalf("auto: exit %d\n%s", code, errOut)
	}
	if !strings.Contains(out, want) || strings.Contains(out, `"auto"`) {
		t.Errorf("auto: output lacks\n%s\n%.600s", want, out)
	}
}

// silentServer accepts TCP connections and never sends a byte, as a PLC
// whose OPC UA stack hangs does. A connection accepted shows on accepted.
func silentServer(t *testing.T) (endpoint string, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{}, 1)
	var mu sync.Mutex
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return "opc.tcp://" + ln.Addr().String(), ch
}

// A server that accepts TCP and never answers the handshake: browse gives
// up after --timeout, and stops at once on Ctrl-C (issue 20, finding 2).
func TestBrowseSilentServer(t *testing.T) {
	endpoint, accepted := silentServer(t)

	start := time.Now()
	code, out, errOut := runBrowse(t, endpoint, "--timeout", "1s")
	el := time.Since(start)
	if code != exitRuntime || out != "" || !strings.Contains(errOut, "connect "+endpoint) || el < time.Second || el > 4*time.Second {
		t.Errorf("--timeout 1s: exit %d after %s, stdout %q, stderr:\n%s\nwant exit %d after 1s to 4s, naming the endpoint", code, el.Round(time.Millisecond), out, errOut, exitRuntime)
	}
	select {
	case <-accepted:
	default:
		t.Fatal("browse never connected to the silent server")
	}

	// The real binary and a real SIGINT, with the default timeout of 30 s.
	var stderr testkit.Log
	cmd := exec.Command(buildBinary(t), "browse", endpoint)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	select {
	case <-accepted: // connected, so the signal handler is in place
	case <-exited:
		t.Fatalf("browse exited before connecting: %v\n%s", waitErr, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("browse did not connect within 10s\n%s", stderr.String())
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	select {
	case <-exited:
		var exit *exec.ExitError
		if !errors.As(waitErr, &exit) || exit.ExitCode() != exitRuntime || !strings.Contains(stderr.String(), "tagbridge browse: interrupted") {
			t.Errorf("after Ctrl-C: %v, stderr:\n%s\nwant exit %d and \"interrupted\"", waitErr, stderr.String(), exitRuntime)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("browse took %s to stop after Ctrl-C, want under 2s", el.Round(time.Millisecond))
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("browse still running 5s after Ctrl-C\n%s", stderr.String())
	}
}
