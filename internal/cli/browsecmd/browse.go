// Package browsecmd is tagbridge browse: it walks a server's address space
// and prints a plcs: entry for the configuration.
package browsecmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"

	"github.com/tagbridge/tagbridge/collectors/opcua"
	"github.com/tagbridge/tagbridge/collectors/opcua/browse"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/cli"
)

// PasswordEnv holds the --user password: secrets never go on a command line.
const PasswordEnv = "TAGBRIDGE_PASSWORD"

// PasswordEnvFor is the variable the printed entry names for plc's password,
// one per PLC as the README recommends for /etc/default/tagbridge:
// TAGBRIDGE_<PLC>_PASSWORD, upper case, other characters than letters and
// digits as _.
func PasswordEnvFor(plc string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, plc)
	return "TAGBRIDGE_" + name + "_PASSWORD"
}

const browseSynopsis = `browse ENDPOINT [--security POLICY/MODE --cert F --key F --user U] [--root NODE]
                  [--depth N] [--filter GLOB] [--plc NAME] [--nsu] [--ns0] [--tags-only]
                  [--timeout D] [-c FILE]

Walks the server's address space from the Objects folder (or --root) along
hierarchical references and prints a plcs: entry for the configuration
whose tags: list holds every variable found, named after its browse path.
It connects as run does: the same endpoint selection, trust store
(agent.pki_dir) and allowed directories (agent.allowed_cert_dirs), both
taken from -c FILE when it exists. The password for --user comes from the
environment variable ` + PasswordEnv + `; the entry names TAGBRIDGE_<PLC>_PASSWORD,
one per PLC, for /etc/default/tagbridge. Without --security the session is
unsecured (None), as stderr says. The standard Server object is passed
by unless --root names it, and variables of namespace 0 (the standard's
own nodes) are left out unless --ns0. The entry holds the security policy
and mode the session used (what auto chose). --tags-only prints only the
tags: list, indented to go under an existing entry. When the server
refuses the connection asked for, its endpoints are listed with the flags
that would select them. Progress goes to stderr on long walks. Connecting
and each request give up after --timeout; Ctrl-C stops at once.`

type browseFlags struct {
	endpoint, security, cert, key, user string
	root, filter, plc, configFile       string
	depth                               int
	maxRefs                             uint
	timeout                             time.Duration
	nsu, ns0, tagsOnly, configSet       bool
	securitySet                         bool
}

// Run runs tagbridge browse with args (those after "browse"); log is for
// the OPC UA client's warnings.
func Run(args []string, stdout, stderr io.Writer, log zerolog.Logger) int {
	fs := cli.NewFlagSet("browse", browseSynopsis, stderr)
	var f browseFlags
	fs.StringVar(&f.security, "security", "None", "security `POLICY/MODE`, e.g. Basic256Sha256/SignAndEncrypt, Basic256Sha256 (mode SignAndEncrypt) or auto")
	fs.StringVar(&f.cert, "cert", "", "client certificate `file` (default "+config.DefaultCertificateFile+")")
	fs.StringVar(&f.key, "key", "", "client private key `file` (default "+config.DefaultKeyFile+")")
	fs.StringVar(&f.user, "user", "", "user `name`; the password comes from $"+PasswordEnv)
	fs.StringVar(&f.root, "root", "", "`node` id to start from (default the Objects folder, i=85); ns=, nsu= or bare")
	fs.IntVar(&f.depth, "depth", 0, "levels below the root to walk, 0 for no limit")
	fs.StringVar(&f.filter, "filter", "", "keep only tags whose name matches this `glob` (e.g. 'Line1.*')")
	fs.StringVar(&f.plc, "plc", "", "`name` of the PLC entry (default the endpoint's host)")
	fs.BoolVar(&f.nsu, "nsu", false, "write node ids with namespace URIs (nsu=...) instead of indexes (ns=...)")
	fs.BoolVar(&f.ns0, "ns0", false, "keep variables of namespace 0 (the OPC UA standard's own nodes)")
	fs.BoolVar(&f.tagsOnly, "tags-only", false, "print only the tags: list, to paste under an existing plcs: entry")
	fs.StringVar(&f.configFile, "c", cli.DefaultConfig, "configuration `file` to take agent.pki_dir and agent.allowed_cert_dirs from, when it exists")
	fs.UintVar(&f.maxRefs, "max-refs", uint(browse.DefaultMaxReferencesPerNode), "references to ask for per node in one Browse; more come by BrowseNext")
	fs.DurationVar(&f.timeout, "timeout", browse.DefaultRequestTimeout, "give up on connecting, and on each request, after this `duration`")
	if code, done := parseBrowseFlags(fs, args, &f, stdout); done {
		return code
	}
	fs.Visit(func(fl *flag.Flag) {
		f.configSet = f.configSet || fl.Name == "c"
		f.securitySet = f.securitySet || fl.Name == "security"
	})
	if f.depth < 0 {
		fmt.Fprintf(stderr, "tagbridge browse: --depth %d: must not be negative\n", f.depth)
		return cli.ExitConfig
	}
	if f.maxRefs < 1 || f.maxRefs > 1<<31 {
		fmt.Fprintf(stderr, "tagbridge browse: --max-refs %d: must be between 1 and 2147483648\n", f.maxRefs)
		return cli.ExitConfig
	}
	if f.timeout <= 0 {
		fmt.Fprintf(stderr, "tagbridge browse: --timeout %s: must be positive\n", f.timeout)
		return cli.ExitConfig
	}
	plc, err := browsePLC(f)
	if err != nil {
		printBrowseError(stderr, err)
		return cli.ExitConfig
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dctx, cancelDial := context.WithTimeout(ctx, f.timeout)
	c, err := opcua.Dial(dctx, plc, log)
	cancelDial()
	if err != nil {
		fmt.Fprintf(stderr, "tagbridge browse: %s\n", interrupted(ctx, err))
		if ctx.Err() == nil && (errors.Is(err, opcua.ErrNoEndpoint) || f.security == "None" && f.user == "") {
			suggestEndpoints(ctx, plc.Endpoint, f.timeout, log, stderr)
		}
		return cli.ExitRuntime
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = c.Close(cctx)
	}()

	client := c
	// The entry holds what the session used, not "auto".
	plc.Security.Policy = c.Channel().Policy().Name()
	plc.Security.Mode = strings.TrimPrefix(c.Channel().Mode().String(), "MessageSecurityMode")
	var chosen string
	if !f.securitySet {
		chosen = " (the default: unsecured; --security POLICY/MODE or --security auto picks another)"
	}
	fmt.Fprintf(stderr, "tagbridge browse: connected to %s with security %s/%s%s\n", plc.Endpoint, plc.Security.Policy, plc.Security.Mode, chosen)

	opts := browse.Options{Depth: f.depth, Filter: f.filter, MaxReferencesPerNode: uint32(f.maxRefs), NamespaceURIs: f.nsu, Namespace0: f.ns0, RequestTimeout: f.timeout}
	if f.root != "" {
		if opts.Root, err = browse.ParseNodeID(f.root, client.Namespaces()); err != nil {
			fmt.Fprintf(stderr, "tagbridge browse: --root: %v\n", err)
			return cli.ExitConfig
		}
	}
	var visited atomic.Int64
	opts.OnVisit = func(n int) { visited.Add(int64(n)) }
	stopProgress := progress(stderr, &visited)
	vars, stats, err := browse.Walk(ctx, client, opts)
	stopProgress()
	if err != nil {
		fmt.Fprintf(stderr, "tagbridge browse: %s: %s\n", plc.Endpoint, interrupted(ctx, err))
		return cli.ExitRuntime
	}
	if n := len(stats.Skipped); n > 0 {
		fmt.Fprintf(stderr, "tagbridge browse: the server would not browse %s, e.g. %s\n", cli.Plural(n, "node"), strings.Join(stats.Skipped[:min(n, 3)], "; "))
	}
	if len(vars) == 0 {
		var ns0 string
		if stats.Namespace0 > 0 {
			ns0 = fmt.Sprintf("; %s of namespace 0 left out, --ns0 keeps them", cli.Plural(stats.Namespace0, "variable"))
		}
		fmt.Fprintf(stderr, "tagbridge browse: no variables found (%s browsed%s)\n", cli.Plural(stats.Visited, "node"), ns0)
		return cli.ExitRuntime
	}
	fmt.Fprintf(stderr, "tagbridge browse: %s found, %s browsed\n", cli.Plural(len(vars), "variable"), cli.Plural(stats.Visited, "node"))
	if _, err := stdout.Write(plcEntry(plc, f, vars)); err != nil {
		fmt.Fprintf(stderr, "tagbridge browse: %v\n", err)
		return cli.ExitRuntime
	}
	return cli.ExitOK
}

// interrupted says so when the user stopped the walk (Ctrl-C, SIGTERM),
// which err alone reads as "context canceled".
func interrupted(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return "interrupted"
	}
	return err.Error()
}

// parseBrowseFlags parses flags before and after the endpoint, which Go's
// flag package alone would stop at.
func parseBrowseFlags(fs *flag.FlagSet, args []string, f *browseFlags, stdout io.Writer) (code int, done bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return cli.ExitOK, true
		}
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return cli.ExitConfig, true
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch len(positional) {
	case 0:
		fmt.Fprintf(fs.Output(), "tagbridge browse: ENDPOINT required, e.g. opc.tcp://192.168.0.10:4840\n")
		return cli.ExitConfig, true
	case 1:
		f.endpoint = positional[0]
		return cli.ExitOK, false
	}
	fmt.Fprintf(fs.Output(), "tagbridge browse: unexpected argument %q\n", positional[1])
	return cli.ExitConfig, true
}

// browsePLC builds the PLC entry the flags describe and loads it through
// the configuration's own defaults and validation, so the allowed-directory
// guard, key file checks and password lookup are those of run.
func browsePLC(f browseFlags) (config.PLC, error) {
	type agent struct {
		ID              string    `yaml:"id"`
		AllowedCertDirs *[]string `yaml:"allowed_cert_dirs,omitempty"` // nil: the default; []: none
		PKIDir          string    `yaml:"pki_dir,omitempty"`
	}
	var file struct {
		Agent agent `yaml:"agent"`
	}
	data, err := os.ReadFile(f.configFile)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !f.configSet:
	case err != nil:
		return config.PLC{}, fmt.Errorf("-c: read config: %w", err)
	default:
		if err := yaml.Unmarshal(data, &file); err != nil {
			return config.PLC{}, fmt.Errorf("-c %s: %w", f.configFile, err)
		}
	}
	a := file.Agent
	a.ID = "browse" // only for validation: the agent's identity plays no part

	name := f.plc
	if name == "" {
		if u, err := url.Parse(f.endpoint); err == nil {
			name = u.Hostname()
		}
	}
	policy, mode, _ := strings.Cut(f.security, "/")
	type security struct {
		Policy          string `yaml:"policy"`
		Mode            string `yaml:"mode,omitempty"`
		CertificateFile string `yaml:"certificate_file,omitempty"`
		KeyFile         string `yaml:"key_file,omitempty"`
	}
	type auth struct {
		Username    string `yaml:"username,omitempty"`
		PasswordEnv string `yaml:"password_env,omitempty"`
	}
	type plc struct {
		Name     string              `yaml:"name"`
		Endpoint string              `yaml:"endpoint"`
		Security security            `yaml:"security"`
		Auth     auth                `yaml:"auth"`
		Tags     []map[string]string `yaml:"tags"`
	}
	p := plc{
		Name:     name,
		Endpoint: f.endpoint,
		Security: security{Policy: policy, Mode: mode, CertificateFile: f.cert, KeyFile: f.key},
		// A stand-in: a PLC entry needs a tag to be valid.
		Tags: []map[string]string{{"node": "i=2258"}},
	}
	if f.user != "" {
		p.Auth = auth{Username: f.user, PasswordEnv: PasswordEnv}
	}
	doc, err := yaml.Marshal(map[string]any{"agent": a, "plcs": []plc{p}})
	if err != nil {
		return config.PLC{}, err
	}
	cfg, err := config.Parse("", doc)
	if err != nil {
		return config.PLC{}, err
	}
	return cfg.PLCs[0], nil
}

// flagOf names the flag or setting behind a configuration path.
var flagOf = []struct{ path, flag string }{
	{"plcs[0].name", "--plc"},
	{"plcs[0].endpoint", "ENDPOINT"},
	{"plcs[0].security.policy", "--security"},
	{"plcs[0].security.mode", "--security"},
	{"plcs[0].security.certificate_file", "--cert"},
	{"plcs[0].security.key_file", "--key"},
	{"plcs[0].auth.password_env", "$" + PasswordEnv},
	{"plcs[0].auth", "--user"},
	{"agent.", "-c: agent."},
}

// printBrowseError prints configuration problems as the flags that caused them.
func printBrowseError(w io.Writer, err error) {
	var list config.Errors
	if !errors.As(err, &list) {
		fmt.Fprintf(w, "tagbridge browse: %v\n", err)
		return
	}
	for _, e := range list {
		where := e.Path
		for _, m := range flagOf {
			if rest, ok := strings.CutPrefix(e.Path, m.path); ok {
				where = m.flag + rest
				break
			}
		}
		if where == "" {
			fmt.Fprintf(w, "tagbridge browse: %s\n", e.Msg)
			continue
		}
		fmt.Fprintf(w, "tagbridge browse: %s: %s\n", where, e.Msg)
	}
}
