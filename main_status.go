package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tagbridge/tagbridge/agent/statusapi"
	"github.com/tagbridge/tagbridge/collectors/opcua"
	"github.com/tagbridge/tagbridge/config"
)

// exitUnhealthy is tagbridge status's answer for an agent that runs but
// is not healthy (what /healthz answers with 503).
const exitUnhealthy = 3

const statusTimeout = 10 * time.Second

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", `status [-c FILE] [--wide | --json]

Asks the running agent for its status, at agent.status_listen with the
token from agent.status_token_file, and prints it as a table. Exit status:
0 healthy, 1 the agent cannot be reached, 78 bad configuration, 3 unhealthy.
The table fits 80 columns; --wide adds the endpoint, security, channel and
token renewals.`, stderr)
	file := fs.String("c", defaultConfig, "configuration `file` naming the listener and the token file")
	asJSON := fs.Bool("json", false, "print the agent's JSON status document as it is")
	wide := fs.Bool("wide", false, "print every column, wider than 80 columns")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	st, err := config.ReadStatus(*file)
	if err != nil {
		printConfigError(stderr, err)
		return exitConfig
	}
	if st.Listen == "" {
		fmt.Fprintf(stderr, "tagbridge status: agent.status_listen is not set in %s: the agent serves no status\n", *file)
		return exitConfig
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	body, err := fetchStatus(ctx, st)
	if err != nil {
		fmt.Fprintf(stderr, "tagbridge status: %v\n", err)
		return exitRuntime
	}
	var s statusapi.Status
	if err := json.Unmarshal(body, &s); err != nil {
		fmt.Fprintf(stderr, "tagbridge status: %s answered with something that is not a status document: %v\n", st.Listen, err)
		return exitRuntime
	}
	if *asJSON {
		stdout.Write(body)
	} else {
		printStatus(stdout, s, *wide)
	}
	if !s.Healthy {
		return exitUnhealthy
	}
	return exitOK
}

// fetchStatus GETs /status from the agent over TCP or its unix socket.
func fetchStatus(ctx context.Context, st config.Status) ([]byte, error) {
	code, status, body, err := askAgent(ctx, st, http.MethodGet, "/status")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("the agent at %s answered %s: %s", st.Listen, status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// askAgent sends method path to the agent over TCP or its unix socket
// with the token, and returns the answer's code, status line and body; a
// refused token is an error.
func askAgent(ctx context.Context, st config.Status, method, path string) (code int, status string, body []byte, err error) {
	network, addr, url := "tcp", st.Listen, "http://"+st.Listen+path
	if config.StatusSocket(st.Listen) {
		network, addr, url = "unix", st.Listen, "http://tagbridge"+path
	}
	var d net.Dialer
	trusted := newTrustedListeners(st.TokenFile)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if err := trusted.verifyListener(c, st.Listen); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
		Proxy: nil, // a loopback agent is never behind the user's proxy
	}}
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Authorization", "Bearer "+st.Token.Reveal())
	resp, err := client.Do(req)
	if err != nil {
		if le, ok := errors.AsType[*untrustedListener](err); ok {
			return 0, "", nil, le
		}
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, fs.ErrNotExist) {
			return 0, "", nil, fmt.Errorf("no agent answers at %s (agent.status_listen): is tagbridge running? (%v)", st.Listen, unwrapURLError(err))
		}
		return 0, "", nil, fmt.Errorf("ask the agent at %s: %v", st.Listen, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, "", nil, fmt.Errorf("read the answer from %s: %w", st.Listen, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return 0, "", nil, fmt.Errorf("the agent at %s refused the token from agent.status_token_file (changed since the agent started? it reads it at start)", st.Listen)
	}
	return resp.StatusCode, resp.Status, body, nil
}

// unwrapURLError drops the "Get URL:" prefix, which names a made-up host
// for a unix socket.
func unwrapURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

func printStatus(w io.Writer, s statusapi.Status, wide bool) {
	health := "healthy"
	if !s.Healthy {
		health = "UNHEALTHY"
	}
	fmt.Fprintf(w, "agent %s: %s (at %s)\n", s.Agent, health, s.Time.Local().Format("2006-01-02 15:04:05"))
	for _, p := range s.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
	fmt.Fprintln(w)

	if wide {
		printPLCsWide(w, s)
	} else {
		printPLCsNarrow(w, s)
	}

	var details []string
	for _, p := range s.PLCs {
		link := opcua.LinkOf(p)
		if !wide {
			details = append(details, fmt.Sprintf("%s: %s, %s", p.PLC, p.Endpoint, dash(link.Security())))
		}
		if link.ServerFingerprint != "" {
			details = append(details, fmt.Sprintf("%s: server certificate %s", p.PLC, link.ServerFingerprint))
		}
		if l := nextAttempt(s.Time, p); l != "" {
			details = append(details, l)
		}
		for _, f := range p.FailedTags {
			details = append(details, fmt.Sprintf("%s: tag %s (%s) refused by the PLC: %s", p.PLC, f.Tag, f.Node, f.Status))
		}
		if p.LastError != "" {
			details = append(details, fmt.Sprintf("%s: last error %s ago: %s", p.PLC, ago(s.Time, p.LastErrorAt), p.LastError))
		}
	}
	if len(details) > 0 {
		fmt.Fprintln(w)
		for _, d := range details {
			fmt.Fprintln(w, d)
		}
	}

	b := s.Broker
	conn := "connected"
	if !b.Connected {
		conn = "NOT CONNECTED"
	}
	fmt.Fprintf(w, "\nbroker: %s; in flight %d; spool %d values, %s; dropped %d; published %d, failed %d, resent %d\n",
		conn, b.InFlight, b.SpoolValues, bytesIEC(b.SpoolBytes), b.Dropped, b.Published, b.Failed, b.Resent)
	printCertificates(w, s)
	printCommands(w, s)
}

// printCommands lists the latest commands taken from MQTT, newest first.
func printCommands(w io.Writer, s statusapi.Status) {
	if s.Commands == nil {
		return
	}
	fmt.Fprintf(w, "\ncommands (latest first):\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\tPLC\tKIND\tTARGET\tID\tRESULT\tLATENCY")
	for i := len(s.Commands.Recent) - 1; i >= 0; i-- {
		c := s.Commands.Recent[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ago(s.Time, c.Time), c.PLC, c.Kind, c.Target, c.ID, c.Status, c.Latency.Round(time.Millisecond))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ago is how long before now t was, rounded for reading; "-" for never.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		d = 0
	case d < time.Minute:
		d = d.Round(time.Second)
	default:
		d = d.Round(time.Minute)
	}
	return d.String()
}

func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
