package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/tagbridge/tagbridge/internal/cli/helpgen"
)

// commands lists every subcommand, in usage order: each answers --help with
// its synopsis, description and flags, and gets a man page tagbridge-NAME(1)
// (spaces become dashes) and completion.
var commands = []string{"run", "validate", "status", "reconnect", "version", "certs create", "certs renew", "browse", "completion", "schema", "man"}

// program is this program as helpgen reads it: its pages and completion
// are made from the commands' own --help.
func program() helpgen.Program {
	return helpgen.Program{Commands: commands, Usage: usage, Version: version, Run: run}
}

const manUsage = `man DIR

Writes the man pages tagbridge(1) and tagbridge-COMMAND(1), made from the
commands' --help, into DIR (the package build uses it).`

func cmdMan(args []string, stdout, stderr io.Writer) int {
	if askedForHelp("man", manUsage, args, stdout) {
		return exitOK
	}
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, "Usage: tagbridge %s\n", manUsage)
		return exitConfig
	}
	if err := program().WriteManPages(args[0]); err != nil {
		fmt.Fprintf(stderr, "tagbridge man: %v\n", err)
		return exitRuntime
	}
	return exitOK
}

// askedForHelp prints the usage of a command that takes arguments and no
// flags when -h or --help is among them.
func askedForHelp(name, synopsis string, args []string, stdout io.Writer) bool {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			newFlagSet(name, synopsis, stdout).Usage()
			return true
		}
	}
	return false
}

const completionUsage = `completion bash|zsh

Prints the shell completion script for bash or zsh. The package installs
both; to use one by hand: source <(tagbridge completion bash).`

func cmdCompletion(args []string, stdout, stderr io.Writer) int {
	if askedForHelp("completion", completionUsage, args, stdout) {
		return exitOK
	}
	if len(args) != 1 || (args[0] != "bash" && args[0] != "zsh") {
		fmt.Fprintf(stderr, "Usage: tagbridge %s\n", completionUsage)
		return exitConfig
	}
	if err := program().Completion(stdout, args[0]); err != nil {
		fmt.Fprintf(stderr, "tagbridge completion: %v\n", err)
		return exitRuntime
	}
	return exitOK
}
