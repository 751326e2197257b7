// Package o62proc runs the open62541 v1.5.7 test server (o62server, from
// ../shared/peers/open62541 beside the repository) as a child process for
// tests: a second, independent OPC UA stack with every RSA and ECC policy,
// users, anonymous login and any secure-channel token lifetime.
//
// The server binary is found through TAGBRIDGE_O62SERVER or at
// ../shared/peers/open62541/o62server from the repository root. When it is
// missing, Start fails the test: it never skips.
package o62proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/internal/testkit"
)

// EnvBinary names the environment variable that points at o62server.
const EnvBinary = "TAGBRIDGE_O62SERVER"

// ReadyTimeout bounds the wait for the READY line; generating the ECC and
// RSA certificates takes well under a second on an idle machine.
const ReadyTimeout = 30 * time.Second

const stopTimeout = 10 * time.Second

// Options configure a server. The zero value offers every policy but the
// deprecated ones, anonymous login and the user integrations /
// integrations-pw, 20 tags changing every second, and accepts every client
// certificate.
type Options struct {
	Port     int           // 0 picks a free one
	Tags     int           // --tags (default 20)
	Interval time.Duration // --interval (default 1 s)

	// Policies are policy names as after '#' in the URI (None,
	// Basic256Sha256, ECC_nistP256, ...) or the groups all, rsa, ecc.
	Policies []string
	// TokenLifetime caps the granted token lifetime (--token-lifetime).
	TokenLifetime time.Duration

	// RequireTrust refuses client certificates not in
	// PKIDir/ApplCerts/trusted/certs (--auto-accept 0).
	RequireTrust bool
	NoAnonymous  bool
	// User and Password are the one user; NoUser offers none.
	User, Password string
	NoUser         bool

	CertHostname string   // --cert-hostname (default localhost); "-" for none
	CertIPs      []string // --cert-ip (default 127.0.0.1)
	AppURI       string   // --app-uri
	KeySize      int      // --key-size of the generated RSA certificate
	CertFile     string   // --cert, with KeyFile: an RSA certificate to use
	KeyFile      string

	// PKIDir keeps generated certificates and the trust store; default a
	// folder below t.TempDir(). A restart with the same PKIDir presents
	// the same certificates.
	PKIDir string

	// ClockOffset runs the server under libfaketime with its wall clock
	// shifted by this much (whole seconds); monotonic clocks are not
	// shifted.
	ClockOffset time.Duration

	LogLevel string   // --log-level (default info)
	Args     []string // more flags
}

// Server is a running o62server.
type Server struct {
	t    testing.TB
	opts Options
	proc *testkit.Proc // nil when stopped
	log  testkit.Log

	// Endpoint is the URL the server printed: opc.tcp://127.0.0.1:PORT.
	Endpoint string
	// PKIDir is the server's state folder.
	PKIDir string
}

// Binary returns the path of o62server, or why it cannot be used.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("o62proc: %s=%s: %w", EnvBinary, p, err)
		}
		return p, nil
	}
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(self), "..", "..", "..")
	p := filepath.Join(root, "..", "shared", "peers", "open62541", "o62server")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("o62proc: the open62541 test server is missing: set %s or put ../shared beside the repository (%v)", EnvBinary, err)
	}
	return filepath.Clean(p), nil
}

// Start runs a server with opts and waits for its READY line. It is stopped
// when the test ends, and its log is shown when the test failed.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := Binary(); err != nil {
		t.Fatal(err)
	}
	if opts.PKIDir == "" {
		opts.PKIDir = filepath.Join(t.TempDir(), "o62pki")
	}
	if opts.ClockOffset != 0 {
		if _, err := testkit.FakeTimeEnv(opts.ClockOffset, false); err != nil {
			t.Fatalf("o62proc: ClockOffset: %v", err)
		}
	}
	s := &Server{t: t, opts: opts, PKIDir: opts.PKIDir}
	s.start()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("o62server %s log (tail):\n%s", s.Endpoint, tail(s.Log(), 200))
		}
	})
	return s
}

// Args is the o62server command line for opts (without the binary).
func Args(opts Options, port int) []string {
	args := []string{"--port", strconv.Itoa(port), "--pki", opts.PKIDir}
	add := func(name, value string) { args = append(args, "--"+name, value) }
	if opts.Tags != 0 {
		add("tags", strconv.Itoa(opts.Tags))
	}
	if opts.Interval != 0 {
		add("interval", strconv.FormatInt(opts.Interval.Milliseconds(), 10))
	}
	if len(opts.Policies) > 0 {
		add("policies", strings.Join(opts.Policies, ","))
	}
	if opts.TokenLifetime != 0 {
		add("token-lifetime", strconv.FormatInt(opts.TokenLifetime.Milliseconds(), 10))
	}
	if opts.RequireTrust {
		add("auto-accept", "0")
	}
	if opts.NoAnonymous {
		add("anonymous", "0")
	}
	switch {
	case opts.NoUser:
		add("user", "")
	case opts.User != "":
		add("user", opts.User)
		add("password", opts.Password)
	}
	switch opts.CertHostname {
	case "":
	case "-":
		add("cert-hostname", "")
	default:
		add("cert-hostname", opts.CertHostname)
	}
	if opts.CertIPs != nil {
		add("cert-ip", strings.Join(opts.CertIPs, ","))
	}
	if opts.AppURI != "" {
		add("app-uri", opts.AppURI)
	}
	if opts.KeySize != 0 {
		add("key-size", strconv.Itoa(opts.KeySize))
	}
	if opts.CertFile != "" {
		add("cert", opts.CertFile)
		add("key", opts.KeyFile)
	}
	if opts.LogLevel != "" {
		add("log-level", opts.LogLevel)
	}
	return append(args, opts.Args...)
}

func (s *Server) start() {
	s.t.Helper()
	bin, err := Binary()
	if err != nil {
		s.t.Fatal(err)
	}
	port := s.opts.Port
	if port == 0 {
		port = testkit.Port(s.t)
	}
	args := Args(s.opts, port)
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ()
	if s.opts.ClockOffset != 0 {
		env, err := testkit.FakeTimeEnv(s.opts.ClockOffset, false)
		if err != nil {
			s.t.Fatalf("o62proc: %v", err)
		}
		cmd.Env = append(cmd.Env, env...)
	}
	cmd.Stderr = &s.log
	// stdout goes to the log too, without colours.
	proc, err := testkit.StartProc(cmd, ReadyTimeout, func(line string) string {
		line = ansi.ReplaceAllString(line, "")
		s.log.Write([]byte(line + "\n"))
		return line
	})
	s.proc = proc
	switch {
	case err == nil:
		s.Endpoint = proc.Endpoint
	case errors.Is(err, testkit.ErrExitedBeforeReady):
		s.t.Fatalf("o62server exited before READY (%s); args %q; log:\n%s", cmd.ProcessState, args, tail(s.Log(), 100))
	case errors.Is(err, testkit.ErrNoReady):
		s.proc = nil
		s.t.Fatalf("o62server: no READY within %s; args %q; log:\n%s", ReadyTimeout, args, tail(s.Log(), 100))
	default:
		s.t.Fatalf("o62proc: %v", err)
	}
	s.opts.Port = port
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// Port is the TCP port the server listens on.
func (s *Server) Port() int { return s.opts.Port }

// Restart stops the server and starts it again with the same options, port
// and PKI folder (so the same certificates).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Stop asks the server to stop (SIGTERM) and waits; after 10 s it kills it.
func (s *Server) Stop() {
	if s.proc == nil {
		return
	}
	if s.proc.Stop(stopTimeout) {
		s.t.Logf("o62server: no exit within %s of SIGTERM; killed it", stopTimeout)
	}
	s.proc = nil
}

// Kill stops the server abruptly, as a power cut would.
func (s *Server) Kill() {
	if s.proc == nil {
		return
	}
	s.proc.Kill()
	s.proc = nil
}

// TrustedDir is where the server looks for trusted client certificates
// when RequireTrust is set; RejectedDir is where it puts refused ones.
func (s *Server) TrustedDir() string { return filepath.Join(s.PKIDir, "ApplCerts", "trusted", "certs") }
func (s *Server) RejectedDir() string {
	return filepath.Join(s.PKIDir, "ApplCerts", "rejected", "certs")
}

// Certificate returns the DER certificate the server uses for policy (a
// name such as Basic256Sha256 or ECC_nistP256), from its start-up lines.
func (s *Server) Certificate(policy string) ([]byte, error) {
	re := regexp.MustCompile(`^\[o62server\] policy ` + regexp.QuoteMeta(policy) + ` certificate (\S+)$`)
	for _, line := range strings.Split(s.Log(), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			return os.ReadFile(m[1])
		}
	}
	return nil, errors.New("o62proc: no certificate line for policy " + policy)
}

// Log returns what the server printed so far (stdout and stderr, without
// colours).
func (s *Server) Log() string { return s.log.String() }

// Count returns how many lines of the log match re.
func (s *Server) Count(re *regexp.Regexp) int { return len(s.log.Matching(re)) }

// WaitLog waits until the log has n lines matching re and returns them; it
// fails the test after timeout.
func (s *Server) WaitLog(re *regexp.Regexp, n int, timeout time.Duration) []string {
	s.t.Helper()
	return s.log.Wait(s.t, "o62server", re, n, timeout)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
