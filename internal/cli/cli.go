// Package cli holds what tagbridge's subcommands share, so that the ones
// in packages of their own (browsecmd, helpgen) behave as those in main:
// the exit codes, the flag sets and their usage text, counts in messages.
package cli

import (
	"flag"
	"fmt"
	"io"
)

// Exit codes, documented in the README. ExitConfig is EX_CONFIG of
// sysexits.h, not 2: Go exits 2 on a panic or a fatal runtime error, and
// the unit's RestartPreventExitStatus must not keep a crashed agent down.
const (
	ExitOK      = 0
	ExitRuntime = 1
	ExitConfig  = 78 // bad configuration or usage
)

// DefaultConfig is the configuration file read when -c is not given.
const DefaultConfig = "/etc/tagbridge/config.yaml"

// NewFlagSet is a subcommand's flag set: errors and usage go to stderr,
// the usage starts with "Usage: tagbridge " and the synopsis.
func NewFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tagbridge %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// Plural is "1 node" or "n nodes".
func Plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
