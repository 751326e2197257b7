package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/tagbridge/tagbridge/config"
)

// cmdReconnect asks the running agent to retry a PLC entry now.
func cmdReconnect(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("reconnect", `reconnect [-c FILE] PLC

Asks the running agent, at agent.status_listen with the token from
agent.status_token_file, to connect to the PLC entry named PLC now instead
of waiting out its reconnect backoff (after fixing a certificate or a
password on the PLC, say). Exit status: 0 asked, 1 the agent cannot be
reached or the entry is not waiting to reconnect, 78 bad configuration or
usage.`, stderr)
	file := fs.String("c", defaultConfig, "configuration `file` naming the listener and the token file")
	// The PLC name may come before or after -c: split it off first.
	var names, flags []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-c" || a == "--c":
			flags = append(flags, a)
			if i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		case strings.HasPrefix(a, "-"):
			flags = append(flags, a)
		default:
			names = append(names, a)
		}
	}
	if code, done := parseFlags(fs, flags, stdout); done {
		return code
	}
	if len(names) != 1 {
		fmt.Fprintln(stderr, "tagbridge reconnect: name one PLC entry (plcs[].name)")
		return exitConfig
	}
	plc := names[0]
	st, err := config.ReadStatus(*file)
	if err != nil {
		printConfigError(stderr, err)
		return exitConfig
	}
	if st.Listen == "" {
		fmt.Fprintf(stderr, "tagbridge reconnect: agent.status_listen is not set in %s: the agent serves no status\n", *file)
		return exitConfig
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	code, status, body, err := askAgent(ctx, st, http.MethodPost, "/reconnect/"+url.PathEscape(plc))
	if err != nil {
		fmt.Fprintf(stderr, "tagbridge reconnect: %v\n", err)
		return exitRuntime
	}
	answer := strings.TrimSpace(string(body))
	if code != http.StatusAccepted {
		fmt.Fprintf(stderr, "tagbridge reconnect: the agent answered %s: %s\n", status, answer)
		return exitRuntime
	}
	fmt.Fprintln(stdout, answer)
	return exitOK
}
