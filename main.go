// Command tagbridge forwards OPC UA tag values from PLCs to an MQTT broker.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/agent"
	"github.com/tagbridge/tagbridge/config"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=... -X main.date=...".
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// Exit codes, documented in the README.
const (
	exitOK      = 0
	exitRuntime = 1
	exitConfig  = 2 // bad configuration or usage
)

const defaultConfig = "/etc/tagbridge/config.yaml"

const usage = `tagbridge forwards OPC UA tag values from PLCs to an MQTT broker.

Usage:
  tagbridge run      [-c FILE]   run until SIGINT/SIGTERM
  tagbridge validate [-c FILE]   check the configuration and start nothing
  tagbridge version              print version information

Run "tagbridge COMMAND -h" for a command's options.
Exit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage.
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
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tagbridge %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", "run [-c FILE]\n\nRuns the agent until SIGINT or SIGTERM, then stops in order within 10 s.", stderr)
	file := fs.String("c", defaultConfig, "configuration `file`")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	cfg, err := config.Load(*file)
	if err != nil {
		printConfigError(stderr, err)
		return exitConfig
	}
	log := newLogger(cfg.Agent, stderr)
	bridgeLibraryLoggers(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, cfg, log); err != nil {
		log.Error().Err(err).Msg("agent failed")
		return exitRuntime
	}
	return exitOK
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", "validate [-c FILE]\n\nLoads the configuration exactly as run does and starts nothing.", stderr)
	file := fs.String("c", defaultConfig, "configuration `file`")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	cfg, err := config.Load(*file)
	if err != nil {
		printConfigError(stderr, err)
		return exitConfig
	}
	fmt.Fprintf(stdout, "config OK: %s, %s\n", plural(len(cfg.PLCs), "PLC"), plural(cfg.TagCount(), "tag"))
	return exitOK
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "version", stderr)
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

func newLogger(a config.Agent, w io.Writer) zerolog.Logger {
	if a.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	level, err := zerolog.ParseLevel(a.LogLevel)
	if err != nil {
		level = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// bridgeLibraryLoggers sends gopcua's (standard log) and paho's package-level
// output through our logger.
func bridgeLibraryLoggers(log zerolog.Logger) {
	stdlog.SetFlags(0)
	stdlog.SetOutput(lineWriter{log.With().Str("component", "opcua-lib").Logger()})
	mqtt.ERROR = pahoLogger{log, zerolog.ErrorLevel}
	mqtt.CRITICAL = pahoLogger{log, zerolog.ErrorLevel}
	mqtt.WARN = pahoLogger{log, zerolog.WarnLevel}
}

type lineWriter struct{ log zerolog.Logger }

func (w lineWriter) Write(p []byte) (int, error) {
	w.log.Warn().Msg(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type pahoLogger struct {
	log   zerolog.Logger
	level zerolog.Level
}

func (l pahoLogger) Println(v ...any) {
	l.log.WithLevel(l.level).Str("component", "mqtt-lib").Msg(strings.TrimSpace(fmt.Sprintln(v...)))
}

func (l pahoLogger) Printf(format string, v ...any) {
	l.log.WithLevel(l.level).Str("component", "mqtt-lib").Msgf(format, v...)
}

func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
