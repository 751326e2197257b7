// Package peerproc runs scripts/opcua-peer (a node-opcua server) as a child
// process for tests: the secured OPC UA peer that gopcua's own server cannot
// be. It serves the same variables as scripts/plcsim, with the security
// policies, modes, users and certificates a test asks for.
//
// node-opcua is installed by scripts/test (npm ci into
// scripts/opcua-peer/node_modules). When it or node is missing, Start fails
// the test: it never skips.
package peerproc

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/internal/testkit"
)

// ReadyTimeout bounds the wait for the peer's READY line. node-opcua loads
// the standard nodeset and may generate a certificate on start: about 3 s on
// an idle two-core machine, much more on a busy one.
const ReadyTimeout = 60 * time.Second

// stopTimeout bounds the wait for the peer to exit after SIGTERM.
const stopTimeout = 10 * time.Second

// Options configure a peer. The zero value is a peer like plcsim's default
// with 8 tags that also offers Basic256Sha256 (Sign and SignAndEncrypt),
// accepts anonymous users and trusts every client certificate.
type Options struct {
	Tags     int           // number of variables (default 8); as plcsim's -tags
	Interval time.Duration // time between changes (default 100ms)
	Start    int           // value of the Int32 counters before the first change
	Port     int           // TCP port; 0 picks a free one

	// Policies are the security policy names to offer: None, Basic128Rsa15,
	// Basic256, Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss
	// (default None and Basic256Sha256). Modes are None, Sign and
	// SignAndEncrypt (default all three). Every policy is offered with
	// every mode; None/None only when both lists hold None.
	Policies []string
	Modes    []string

	NoAnonymous bool              // refuse anonymous users
	Users       map[string]string // user name -> password; offered when not empty
	X509Users   bool              // offer and accept X.509 user tokens

	// PKIDir is node-opcua's PKI folder: own/ (the server's certificate
	// and key), trusted/certs, trusted/crl, issuers/certs, issuers/crl and
	// rejected/ (refused client certificates as rejected/*.pem, not in a
	// certs/ subfolder). node-opcua watches it: a certificate moved from
	// rejected/ to trusted/certs is trusted without a restart. Default: a
	// new folder below t.TempDir(). UserPKIDir is the same for X.509 user
	// certificates (default PKIDir/users).
	PKIDir     string
	UserPKIDir string
	// RequireTrust refuses client (and user) certificates that are not in
	// trusted/certs; by default unknown ones are trusted (and copied there).
	RequireTrust bool

	// CertFile and KeyFile are the server's certificate (PEM or DER) and
	// PEM private key. When empty, node-opcua generates a self-signed one
	// for ApplicationURI and the host name (pure JavaScript, no openssl).
	CertFile, KeyFile string
	// ApplicationURI is the server's (default urn:tagbridge:opcua-peer).
	ApplicationURI string
	// Hostname is the host in the advertised endpoint URLs (default
	// 127.0.0.1, where the peer listens).
	Hostname string

	MaxSessions int // default 10

	// TokenLifetime caps the secure channel token lifetime and is what a
	// client that asks for 0 gets (node-opcua's default 10 min).
	// MinTokenLifetime is the shortest a client can get (default 2.5 s).
	TokenLifetime, MinTokenLifetime time.Duration

	// ClockOffset runs the peer under libfaketime with its wall clock
	// shifted by this much (whole seconds), e.g. -2*time.Hour. Monotonic
	// clocks, and so node's timers, are not shifted.
	ClockOffset time.Duration

	Debug bool     // log every request
	Args  []string // more server.js flags
}

// Peer is a running test peer.
type Peer struct {
	t      testing.TB
	opts   Options
	proc   *testkit.Proc // nil when stopped
	stderr testkit.Log
	// Endpoint is the URL the peer printed: opc.tcp://HOST:PORT.
	Endpoint string
	// PKIDir is the peer's PKI folder.
	PKIDir string
	// StartupTime is how long the last start took until READY.
	StartupTime time.Duration
}

// Dir is the folder of server.js and package.json.
func Dir() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..")
}

// Check reports why the peer cannot run here: node not on PATH or node-opcua
// not installed. nil when it can.
func Check() error {
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("opcua-peer: node is not on PATH (%v): run scripts/test, which installs Node.js and node-opcua", err)
	}
	mod := filepath.Join(Dir(), "node_modules", "node-opcua", "package.json")
	if _, err := os.Stat(mod); err != nil {
		return fmt.Errorf("opcua-peer: node-opcua is not installed in %s: run scripts/test (or npm ci there)", filepath.Join(Dir(), "node_modules"))
	}
	return nil
}

// Start runs the peer with opts and waits for its READY line. The process is
// stopped when the test ends, and its log is shown when the test failed.
func Start(t testing.TB, opts Options) *Peer {
	t.Helper()
	if err := Check(); err != nil {
		t.Fatal(err)
	}
	if opts.PKIDir == "" {
		opts.PKIDir = filepath.Join(t.TempDir(), "pki")
	}
	if opts.ClockOffset != 0 {
		if _, err := testkit.FakeTimeEnv(opts.ClockOffset, true); err != nil {
			t.Fatalf("opcua-peer: ClockOffset: %v", err)
		}
	}
	p := &Peer{t: t, opts: opts, PKIDir: opts.PKIDir}
	p.start()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("opcua-peer %s log:\n%s", p.Endpoint, p.stderr.String())
		}
	})
	return p
}

// Args returns the command line that runs server.js for opts.
func Args(opts Options) []string {
	args := []string{"--security-revert=CVE-2023-46809", filepath.Join(Dir(), "server.js")}
	add := func(name, value string) { args = append(args, "-"+name, value) }
	if opts.Tags != 0 {
		add("tags", strconv.Itoa(opts.Tags))
	}
	if opts.Interval != 0 {
		add("interval", ms(opts.Interval))
	}
	if opts.Start != 0 {
		add("start", strconv.Itoa(opts.Start))
	}
	if opts.Port != 0 {
		add("port", strconv.Itoa(opts.Port))
	}
	if len(opts.Policies) > 0 {
		add("policies", strings.Join(opts.Policies, ","))
	}
	if len(opts.Modes) > 0 {
		add("modes", strings.Join(opts.Modes, ","))
	}
	if opts.NoAnonymous {
		args = append(args, "-anonymous=false")
	}
	for _, name := range slices.Sorted(maps.Keys(opts.Users)) {
		add("user", name+":"+opts.Users[name])
	}
	if opts.X509Users {
		args = append(args, "-x509-users")
	}
	if opts.PKIDir != "" {
		add("pki", opts.PKIDir)
	}
	if opts.UserPKIDir != "" {
		add("user-pki", opts.UserPKIDir)
	}
	if opts.RequireTrust {
		args = append(args, "-trust-unknown=false")
	}
	if opts.CertFile != "" || opts.KeyFile != "" {
		add("cert", opts.CertFile)
		add("key", opts.KeyFile)
	}
	if opts.ApplicationURI != "" {
		add("application-uri", opts.ApplicationURI)
	}
	if opts.Hostname != "" {
		add("hostname", opts.Hostname)
	}
	if opts.MaxSessions != 0 {
		add("max-sessions", strconv.Itoa(opts.MaxSessions))
	}
	if opts.TokenLifetime != 0 {
		add("token-lifetime", ms(opts.TokenLifetime))
	}
	if opts.MinTokenLifetime != 0 {
		add("min-token-lifetime", ms(opts.MinTokenLifetime))
	}
	if opts.Debug {
		args = append(args, "-debug")
	}
	args = append(args, opts.Args...)
	return args
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

func (p *Peer) start() {
	p.t.Helper()
	args := Args(p.opts)
	cmd := exec.Command("node", args...)
	cmd.Dir = Dir()
	cmd.Env = os.Environ()
	if p.opts.ClockOffset != 0 {
		// The multi-threaded variant: node runs threads; its timers stay
		// on the real, monotonic clock.
		env, err := testkit.FakeTimeEnv(p.opts.ClockOffset, true)
		if err != nil {
			p.t.Fatalf("opcua-peer: %v", err)
		}
		cmd.Env = append(cmd.Env, env...)
	}
	cmd.Stderr = &p.stderr
	began := time.Now()
	proc, err := testkit.StartProc(cmd, ReadyTimeout, nil)
	p.proc = proc
	switch {
	case err == nil:
		p.Endpoint = proc.Endpoint
		p.StartupTime = time.Since(began)
	case errors.Is(err, testkit.ErrExitedBeforeReady):
		p.t.Fatalf("opcua-peer exited before READY (%s); args %q; log:\n%s", cmd.ProcessState, args, p.stderr.String())
	case errors.Is(err, testkit.ErrNoReady):
		p.proc = nil
		p.t.Fatalf("opcua-peer: no READY within %s; args %q; log:\n%s", ReadyTimeout, args, p.stderr.String())
	default:
		p.t.Fatalf("opcua-peer: %v", err)
	}
}

// Restart stops the peer and starts it again with the same options, on the
// same port and with the same PKI folder.
func (p *Peer) Restart() {
	p.t.Helper()
	p.Stop()
	port, err := strconv.Atoi(p.Port())
	if err != nil {
		p.t.Fatalf("opcua-peer: endpoint %q has no port", p.Endpoint)
	}
	p.opts.Port = port
	p.start()
}

// Port is the TCP port the peer listens on.
func (p *Peer) Port() string {
	return p.Endpoint[strings.LastIndex(p.Endpoint, ":")+1:]
}

// Stop asks the peer to stop (SIGTERM) and waits for it; after 10 s it kills
// it.
func (p *Peer) Stop() {
	if p.proc == nil {
		return
	}
	if p.proc.Stop(stopTimeout) {
		p.t.Logf("opcua-peer: no exit within %s of SIGTERM; killed it", stopTimeout)
	}
	p.proc = nil
}

// Kill stops the peer abruptly, as a power cut would.
func (p *Peer) Kill() {
	if p.proc == nil {
		return
	}
	p.proc.Kill()
	p.proc = nil
}

// Log returns what the peer wrote to stderr so far.
func (p *Peer) Log() string { return p.stderr.String() }

// WaitLog waits until the peer's log has n lines matching re, and returns
// them. It fails the test after timeout.
func (p *Peer) WaitLog(re *regexp.Regexp, n int, timeout time.Duration) []string {
	p.t.Helper()
	return p.stderr.Wait(p.t, "opcua-peer", re, n, timeout)
}
