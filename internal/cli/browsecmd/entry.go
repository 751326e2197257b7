package browsecmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors/opcua/browse"
	"github.com/tagbridge/tagbridge/collectors/opcua/secpolicy"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
	"github.com/tagbridge/tagbridge/collectors/opcua/uatcp"
	"github.com/tagbridge/tagbridge/config"
)

// progress prints nodes visited per second to w, once a second, from the
// second second on: short walks stay quiet. The returned func stops it.
func progress(w io.Writer, visited *atomic.Int64) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				if el := now.Sub(start); el >= 2*time.Second {
					n := visited.Load()
					fmt.Fprintf(w, "browse: %d nodes visited, %.0f/s\n", n, float64(n)/el.Seconds())
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// plcEntry renders the plcs: entry: the connection settings given and one
// tag per variable, with its data type and access level as a comment.
func plcEntry(plc config.PLC, f browseFlags, vars []browse.Variable) []byte {
	var b bytes.Buffer
	if !f.tagsOnly {
		plcHeader(&b, plc, f)
	}
	b.WriteString("    tags:\n")
	for _, v := range vars {
		fmt.Fprintf(&b, "      - name: %s\n        node: %s", quote(v.Name), quote(v.Node))
		var notes []string
		if v.DataType != "" {
			notes = append(notes, v.DataType)
		}
		if a := v.Access(); a != "" {
			notes = append(notes, a)
		}
		if len(notes) > 0 {
			// Data type names come from the server: keep them on one line.
			fmt.Fprintf(&b, "  # %s", strings.Map(func(r rune) rune {
				if r < ' ' || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 {
					return ' '
				}
				return r
			}, strings.Join(notes, ", ")))
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}

// plcHeader writes the entry's connection settings, all but its tags.
func plcHeader(b *bytes.Buffer, plc config.PLC, f browseFlags) {
	fmt.Fprintf(b, "plcs:\n  - name: %s\n    endpoint: %s\n", quote(plc.Name), quote(plc.Endpoint))
	if sec := plc.Security; sec.Policy != "None" {
		fmt.Fprintf(b, "    security:\n      policy: %s\n", quote(sec.Policy))
		if sec.Mode != "" {
			fmt.Fprintf(b, "      mode: %s\n", quote(sec.Mode))
		}
		if f.cert != "" {
			fmt.Fprintf(b, "      certificate_file: %s\n", quote(f.cert))
		}
		if f.key != "" {
			fmt.Fprintf(b, "      key_file: %s\n", quote(f.key))
		}
	}
	if plc.Auth.Username != "" {
		fmt.Fprintf(b, "    auth:\n      username: %s\n      password_env: %s\n", quote(plc.Auth.Username), PasswordEnvFor(plc.Name))
	}
}

// suggestEndpoints lists the server's endpoints with the browse flags that
// select each, after the connection asked for was refused. A server that
// does not answer GetEndpoints either adds nothing.
func suggestEndpoints(ctx context.Context, endpoint string, timeout time.Duration, log zerolog.Logger, w io.Writer) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	eps, err := uaclient.GetEndpoints(ctx, endpoint, uatcp.DefaultLimits(), log)
	if err != nil || len(eps) == 0 {
		return
	}
	seen := map[string]bool{}
	var lines []string
	for _, ep := range eps {
		if ep == nil {
			continue
		}
		policy, err := secpolicy.ByURI(ep.SecurityPolicyURI)
		if err != nil {
			continue // a policy tagbridge does not speak
		}
		line := "--security " + policy.Name()
		if ep.SecurityMode != ua.MessageSecurityModeNone {
			line += "/" + strings.TrimPrefix(ep.SecurityMode.String(), "MessageSecurityMode")
		}
		var anonymous, user, cert bool
		for _, t := range ep.UserIdentityTokens {
			if t == nil {
				continue
			}
			switch t.TokenType {
			case ua.UserTokenTypeAnonymous:
				anonymous = true
			case ua.UserTokenTypeUserName:
				user = true
			case ua.UserTokenTypeCertificate:
				cert = true
			}
		}
		var logins []string
		if anonymous {
			logins = append(logins, line)
		}
		if user {
			logins = append(logins, line+" --user NAME")
		}
		if cert && !anonymous && !user {
			logins = append(logins, line+"  (user certificate only: auth.certificate_file in the configuration)")
		}
		for _, l := range logins {
			if !seen[l] {
				seen[l] = true
				lines = append(lines, l)
			}
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "tagbridge browse: the server offers:\n")
	for _, l := range lines {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

// quote writes s as a YAML double-quoted scalar (JSON's escapes are YAML's).
func quote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}
