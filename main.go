// Command tagbridge forwards OPC UA tag values from PLCs to an MQTT broker.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/agent"
	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/cli"
	"github.com/tagbridge/tagbridge/internal/cli/browsecmd"
	"github.com/tagbridge/tagbridge/publish"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=... -X main.date=...".
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// Exit codes, documented in the README.
const (
	exitOK      = cli.ExitOK
	exitRuntime = cli.ExitRuntime
	exitConfig  = cli.ExitConfig // bad configuration or usage
)

const defaultConfig = cli.DefaultConfig

const usage = `tagbridge forwards OPC UA tag values from PLCs to an MQTT broker.

Usage:
  tagbridge run      [-c FILE]   run until SIGINT/SIGTERM
  tagbridge validate [-c FILE]   check the configuration and start nothing
  tagbridge status   [-c FILE]   print the running agent's status (agent.status_listen)
  tagbridge reconnect [-c FILE] PLC
                                 make the running agent connect to PLC now
  tagbridge version              print version information
  tagbridge certs create [flags] write the agent's OPC UA certificate and key
  tagbridge certs renew [flags]  renew that certificate before it expires
  tagbridge browse ENDPOINT [flags]
                                 print a plcs: entry listing the server's variables
  tagbridge completion bash|zsh  print the shell completion script
  tagbridge schema               print the configuration's JSON Schema
  tagbridge man DIR              write the man pages into DIR

Run "tagbridge COMMAND -h" for a command's options.
Exit codes: 0 ok, 1 runtime failure, 78 bad configuration or usage.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitConfig
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "version":
		return cmdVersion(args[1:], stdout, stderr)
	case "certs":
		return cmdCerts(args[1:], stdout, stderr)
	case "browse":
		return browsecmd.Run(args[1:], stdout, stderr, newLogger(config.Agent{LogFormat: "console", LogLevel: "warn"}, stderr))
	case "status":
		return cmdStatus(args[1:], stdout, stderr)
	case "reconnect":
		return cmdReconnect(args[1:], stdout, stderr)
	case "completion":
		return cmdCompletion(args[1:], stdout, stderr)
	case "schema":
		return cmdSchema(args[1:], stdout, stderr)
	case "man":
		return cmdMan(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "tagbridge: unknown command %q\n\n%s", args[0], usage)
		return exitConfig
	}
}

// parseFlags parses a subcommand's flags; done is true when the caller
// should return code right away (help or a usage error).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, done bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout) // asked for: usage is the output, not an error
			fs.Usage()
			return exitOK, true
		}
	}
	switch err := fs.Parse(args); {
	case err != nil:
		return exitConfig, true
	case fs.NArg() > 0:
		fmt.Fprintf(fs.Output(), "tagbridge %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitConfig, true
	}
	return exitOK, false
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	return cli.NewFlagSet(name, synopsis, stderr)
}

// loadCommand parses "-c FILE" and loads the configuration. run and
// validate share it, so validate checks exactly what run would load.
func loadCommand(name, synopsis string, args []string, stdout, stderr io.Writer) (*config.Config, int) {
	fs := newFlagSet(name, synopsis, stderr)
	file := fs.String("c", defaultConfig, "configuration `file`")
	if code, done := parseFlags(fs, args, stdout); done {
		return nil, code
	}
	cfg, err := loadConfig(*file)
	if err != nil {
		printConfigError(stderr, err)
		return nil, exitConfig
	}
	return cfg, exitOK
}

// loadConfig is the one load path of run, validate and the reload on SIGHUP.
func loadConfig(file string) (*config.Config, error) {
	cfg, err := config.Load(file)
	if err != nil {
		return nil, err
	}
	if err := publish.CheckTopics(cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	cfg.Agent.Version = version
	return cfg, nil
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	cfg, code := loadCommand("run", "run [-c FILE]\n\nRuns the agent until SIGINT or SIGTERM, then stops in order within 10 s.", args, stdout, stderr)
	if cfg == nil {
		return code
	}
	log := newLogger(cfg.Agent, stderr)
	bridgeLibraryLoggers(log)
	defer startCPUProfile(log)() // only with TAGBRIDGE_CPUPROFILE set (profile.go)
	applyMemoryLimit(cfg, log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := agent.New(cfg, log)
	// SIGHUP (systemctl reload) re-reads the file; signals that arrive during
	// a reload are coalesced into one more.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer func() { signal.Stop(hup); close(hup) }()
	go func() {
		for range hup {
			reload(a, cfg.File, log)
		}
	}()
	if err := a.Run(ctx); err != nil {
		log.Error().Err(err).Msg("agent failed")
		return exitRuntime
	}
	return exitOK
}

// reload loads file as run did and hands it to the agent. A configuration
// with errors is refused, each error logged; the agent keeps the one it has.
func reload(a *agent.Agent, file string, log zerolog.Logger) {
	log.Info().Str("file", file).Msg("SIGHUP: reloading the configuration")
	cfg, err := loadConfig(file)
	if err != nil {
		var list config.Errors
		if !errors.As(err, &list) {
			list = config.Errors{{File: file, Msg: err.Error()}}
		}
		for _, e := range list {
			log.Error().Str("file", e.File).Int("line", e.Line).Str("path", e.Path).Msg(e.Error())
		}
		log.Error().Int("errors", len(list)).Msg("configuration refused; still running on the previous one")
		a.NoteReload(false)
		return
	}
	if err := a.Reload(cfg); err != nil {
		log.Error().Err(err).Msg("configuration not applied; still running on the previous one")
		a.NoteReload(false)
		return
	}
	applyMemoryLimit(cfg, log)
	a.NoteReload(true)
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "version\n\nPrints the version, the commit and the build date of this program.", stderr)
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	rev, built := commit, date
	if info, ok := debug.ReadBuildInfo(); ok && rev == "" {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				built = s.Value
			}
		}
	}
	fmt.Fprintf(stdout, "tagbridge %s (commit %s, built %s, %s)\n", version, orUnknown(rev), orUnknown(built), runtime.Version())
	return exitOK
}

const certsUsage = `Usage: tagbridge certs create|renew [flags]

Run "tagbridge certs create -h" or "tagbridge certs renew -h" for the flags.
`

func cmdCerts(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) > 0 && args[0] == "create":
		return cmdCertsCreate(args[1:], stdout, stderr)
	case len(args) > 0 && args[0] == "renew":
		return cmdCertsRenew(args[1:], stdout, stderr)
	case len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help"):
		fmt.Fprint(stdout, certsUsage)
		return exitOK
	case len(args) > 0:
		fmt.Fprintf(stderr, "tagbridge certs: unknown command %q\n\n%s", args[0], certsUsage)
		return exitConfig
	}
	fmt.Fprint(stderr, certsUsage)
	return exitConfig
}

// Files written by certs create, and the defaults of security.certificate_file and key_file.
const (
	certFileName = "client-cert.pem"
	derFileName  = "client-cert.der"
	keyFileName  = "client-key.pem"
)

func cmdCertsCreate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("certs create", `certs create [--dir DIR] [--days N] [--key-type rsa|nistP256|nistP384|
                        brainpoolP256r1|brainpoolP384r1|ed25519|ed448]
                        [--key-size 2048|3072|4096] [--force] [--agent-id ID | -c FILE] [--hostname NAME]

Writes a self-signed OPC UA application instance certificate for the agent
and its private key into DIR: `+certFileName+` (certificate, PEM), `+derFileName+`
(the same certificate as DER, to import into the PLC) and `+keyFileName+`
(private key, PEM, mode 0600). An ECC key type writes client-cert-<type>.pem,
.der and client-key-<type>.pem instead, so that an agent can hold an RSA
certificate and ECC ones side by side: nistP256 goes with the policies
ECC_nistP256, _AesGcm and _ChaChaPoly, nistP384 with ECC_nistP384,
brainpoolP256r1 with ECC_brainpoolP256r1, brainpoolP384r1 with
ECC_brainpoolP384r1, ed25519 with ECC_curve25519, ed448 with ECC_curve448.
Its ApplicationURI is urn:<hostname>:tagbridge:<agent id>. The agent id comes from --agent-id, or
else from agent.id in the configuration file named by -c (only that key is
read). Existing files are kept unless --force is given. Run as root, the
files take the owner of DIR (the tagbridge user for the package's directory).`, stderr)
	dir := fs.String("dir", config.DefaultCertDir, "`directory` to write the files to (created 0700 if missing)")
	days := fs.Int("days", certs.DefaultDays, "validity in `days`")
	keyType := fs.String("key-type", certs.KeyTypeRSA, "key `type`: "+strings.Join(certs.KeyTypes, ", "))
	keySize := fs.Int("key-size", 2048, "RSA key size in `bits`: 2048, 3072 or 4096")
	force := fs.Bool("force", false, "overwrite existing files")
	agentID := fs.String("agent-id", "", "agent `id` for the ApplicationURI (default: agent.id from -c)")
	file := fs.String("c", defaultConfig, "configuration `file` to read agent.id from when --agent-id is not given")
	hostname := fs.String("hostname", "", "host `name` for the DNS SAN and the ApplicationURI (default: this machine's)")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	switch *keySize {
	case 2048, 3072, 4096:
	default:
		fmt.Fprintf(stderr, "tagbridge certs create: --key-size %d: want 2048, 3072 or 4096\n", *keySize)
		return exitConfig
	}
	if !slices.Contains(certs.KeyTypes, *keyType) {
		fmt.Fprintf(stderr, "tagbridge certs create: --key-type %s: want one of %s\n", *keyType, strings.Join(certs.KeyTypes, ", "))
		return exitConfig
	}
	sizeGiven := false
	fs.Visit(func(f *flag.Flag) { sizeGiven = sizeGiven || f.Name == "key-size" })
	if *keyType != certs.KeyTypeRSA {
		if sizeGiven {
			fmt.Fprintf(stderr, "tagbridge certs create: --key-size applies to RSA keys, not to --key-type %s\n", *keyType)
			return exitConfig
		}
		*keySize = 0
	}
	if *days < 1 {
		fmt.Fprintf(stderr, "tagbridge certs create: --days %d: must be at least 1\n", *days)
		return exitConfig
	}
	if *agentID == "" {
		id, err := config.ReadAgentID(*file)
		if err != nil {
			printConfigError(stderr, err)
			fmt.Fprintln(stderr, "tagbridge certs create: give --agent-id or a configuration with agent.id (-c FILE)")
			return exitConfig
		}
		*agentID = id
	}
	if *hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			fmt.Fprintf(stderr, "tagbridge certs create: host name: %v (give --hostname)\n", err)
			return exitRuntime
		}
		*hostname = h
	}
	certPEM, keyPEM, err := certs.Generate(certs.Options{AgentID: *agentID, Hostname: *hostname, Days: *days, KeySize: *keySize, KeyType: *keyType})
	if err != nil {
		fmt.Fprintf(stderr, "tagbridge certs create: %v\n", err)
		return exitConfig
	}
	cert, der, err := certs.ParseCertificate(certPEM)
	if err != nil {
		fmt.Fprintf(stderr, "tagbridge certs create: %v\n", err)
		return exitRuntime
	}
	certName, derName, keyName := certFileName, derFileName, keyFileName
	if *keyType != certs.KeyTypeRSA {
		certName, derName, keyName = "client-cert-"+*keyType+".pem", "client-cert-"+*keyType+".der", "client-key-"+*keyType+".pem"
	}
	certPath, derPath, keyPath := filepath.Join(*dir, certName), filepath.Join(*dir, derName), filepath.Join(*dir, keyName)
	if !*force {
		for _, p := range []string{certPath, derPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				fmt.Fprintf(stderr, "tagbridge certs create: %s exists; keeping it (--force replaces it, and the PLC must then trust the new certificate)\n", p)
				return exitRuntime
			}
		}
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		fmt.Fprintf(stderr, "tagbridge certs create: %v\n", err)
		return exitRuntime
	}
	// The key first: a certificate without its key is useless, the reverse is harmless.
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{{keyPath, keyPEM, 0o600}, {certPath, certPEM, 0o644}, {derPath, der, 0o644}} {
		if err := certs.WriteFileAtomic(f.path, f.data, f.perm, *force); err != nil {
			fmt.Fprintf(stderr, "tagbridge certs create: write %s: %v\n", f.path, err)
			return exitRuntime
		}
	}
	if err := chownLikeDir(*dir, keyPath, certPath, derPath); err != nil {
		fmt.Fprintf(stderr, "tagbridge certs create: %v\n", err)
		return exitRuntime
	}
	uri, _ := certs.ApplicationURI(cert)
	fmt.Fprintf(stdout, `wrote %s (certificate), %s (the same, DER) and %s (private key, mode 0600)
ApplicationURI:      %s
SHA-256 fingerprint: %s
valid until:         %s

Next:
  1. Import %s into each PLC's list of trusted client certificates
     (often "trusted clients" or the certificate manager of the OPC UA server;
     check the fingerprint above). Until then the PLC rejects the connection.
  2. In the configuration, for each PLC with a security policy other than None:
       security: {certificate_file: %s, key_file: %s}
     (the directory must be one of agent.allowed_cert_dirs).
`, certPath, derPath, keyPath, uri, certs.Fingerprint(der), cert.NotAfter.UTC().Format("2006-01-02"), derPath, certPath, keyPath)
	return exitOK
}

// chownLikeDir gives files the owner and group of dir when running as root,
// so "sudo tagbridge certs create" into the package's /etc/tagbridge/certs
// (owned by the tagbridge user) leaves a key the service can read.
func chownLikeDir(dir string, files ...string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	for _, f := range files {
		if err := os.Chown(f, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	return nil
}

// printConfigError prints one problem per line; config.Errors already reads
// as FILE:LINE: path: message lines.
func printConfigError(w io.Writer, err error) {
	msg := err.Error()
	var list config.Errors
	if !errors.As(err, &list) {
		msg = "tagbridge: " + msg
	}
	fmt.Fprintln(w, msg)
}

func plural(n int, noun string) string { return cli.Plural(n, noun) }

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
