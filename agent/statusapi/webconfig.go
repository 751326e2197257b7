package statusapi

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v3"
)

// SetWebConfig serves TLS and basic authentication as the web
// configuration file at path says, in the Prometheus exporter convention
// (exporter-toolkit: tls_server_config, basic_auth_users with bcrypt
// hashes, http_server_config). When it names users, their passwords
// replace the bearer token: a client sends one Authorization header.
// An empty path changes nothing.
func (s *Server) SetWebConfig(path string) error {
	if path == "" {
		return nil
	}
	if s.sock {
		return fmt.Errorf("web config %s: not for a unix socket (agent.status_listen)", path)
	}
	if err := web.Validate(path); err != nil {
		return fmt.Errorf("web config %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("web config: %w", err)
	}
	var users struct {
		Users map[string]any `yaml:"basic_auth_users"`
	}
	if err := yaml.Unmarshal(data, &users); err != nil {
		return fmt.Errorf("web config %s: %w", path, err)
	}
	s.webConfig = path
	if len(users.Users) > 0 {
		s.srv.Handler = s.mux
	}
	return nil
}

// serve serves on the listener, through exporter-toolkit when a web
// config is set.
func (s *Server) serve() error {
	if s.webConfig == "" {
		return s.srv.Serve(s.ln)
	}
	noSystemd := false
	flags := &web.FlagConfig{WebConfigFile: &s.webConfig, WebSystemdSocket: &noSystemd, WebListenAddresses: &[]string{}}
	// The toolkit's own lines (listening, TLS enabled) repeat ours.
	return web.Serve(s.ln, s.srv, flags, slog.New(slog.DiscardHandler))
}

// Close releases the listener of a Server that will not Run.
func (s *Server) Close() {
	s.ln.Close()
	if s.sock {
		os.Remove(s.addr)
	}
}
