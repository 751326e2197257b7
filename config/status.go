package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/tagbridge/tagbridge/config/filecheck"
	"github.com/tagbridge/tagbridge/config/yamlfile"
)

// MinStatusToken is the shortest status token accepted, so a guessable
// word cannot protect the status endpoint.
const MinStatusToken = 16

// StatusSocket reports whether agent.status_listen names a unix socket
// (an absolute path) rather than a TCP host:port.
func StatusSocket(listen string) bool { return strings.HasPrefix(listen, "/") }

// status checks agent.status_listen and, when it is set, reads the token
// from agent.status_token_file into a.StatusToken.
func (v *validator) status(a *Agent) {
	if a.StatusListen == "" {
		return
	}
	if !StatusSocket(a.StatusListen) {
		if msg := statusAddrError(a.StatusListen, a.StatusAllowRemote); msg != "" {
			v.add("agent.status_listen", "%s", msg)
		}
	} else if filepath.Clean(a.StatusListen) != a.StatusListen {
		v.add("agent.status_listen", "socket path %q is not clean (want %q)", a.StatusListen, filepath.Clean(a.StatusListen))
	}
	if a.StatusTokenFile == "" {
		v.add("agent.status_token_file", "required with status_listen (a file holding the bearer token, mode 0600)")
		return
	}
	a.StatusToken = v.tokenFile("agent.status_token_file", a.StatusTokenFile)
}

// statusAddrError returns what is wrong with a TCP status address, or "".
// Without allowRemote only loopback hosts are accepted: the endpoint shows
// the plant's structure and should not face the network by accident.
func statusAddrError(addr string, allowRemote bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not host:port or an absolute socket path (e.g. 127.0.0.1:9480 or /run/tagbridge/status.sock)", addr)
	}
	if port == "" {
		return fmt.Sprintf("%q has no port", addr)
	}
	if n, err := net.LookupPort("tcp", port); err != nil || n == 0 {
		return fmt.Sprintf("%q has an invalid port %q", addr, port)
	}
	if allowRemote {
		return ""
	}
	ip, err := netip.ParseAddr(host)
	if host == "localhost" || err == nil && ip.IsLoopback() {
		return ""
	}
	if host == "" {
		host = "every interface"
	}
	return fmt.Sprintf("%q listens on %s, which is not loopback; set status_allow_remote: true to allow that", addr, host)
}

// tokenFile reads a bearer token (filecheck.Token).
func (v *validator) tokenFile(path, name string) Secret {
	token, msg := filecheck.Token(name, MinStatusToken)
	if msg != "" {
		v.add(path, "%s", msg)
		return ""
	}
	return Secret(token)
}

// Status is what `tagbridge status` needs from a configuration.
type Status struct {
	Listen    string // agent.status_listen; "" when the agent serves no status
	Token     Secret // from agent.status_token_file
	TokenFile string // agent.status_token_file: its owner may hold the listener
}

// ReadStatus reads agent.status_listen and the token from the file at path,
// checked as Load checks them, without loading the rest: a client should
// not need the agent's environment (password_env) or certificates.
func ReadStatus(path string) (Status, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Status{}, fmt.Errorf("read config: %w", err)
	}
	var part struct {
		Agent Agent `yaml:"agent"`
	}
	_, root, perrs := yamlfile.Parse(path, data)
	if perrs != nil {
		return Status{}, perrs
	}
	if root.Kind != 0 {
		root.Decode(&part) // type errors leave the field unset; its check says so
	}
	c := &Config{File: path, Agent: part.Agent, root: root}
	v := &validator{c: c}
	v.status(&c.Agent)
	if len(v.errs) > 0 {
		return Status{}, v.errs
	}
	return Status{Listen: c.Agent.StatusListen, Token: c.Agent.StatusToken, TokenFile: c.Agent.StatusTokenFile}, nil
}
