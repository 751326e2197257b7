package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodToken = "0123456789abcdef0123456789abcdef"

// statusConfig writes a configuration whose agent section has the given
// status lines, and a token file with content and mode; it returns the
// configuration's path and the token file's.
func statusConfig(t *testing.T, listen string, extra string, token string, mode os.FileMode) (string, string) {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "status-token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tokenFile, mode); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`agent:
  id: ipc01
  status_listen: %q
  status_token_file: %s
%splcs:
  - name: press1
    endpoint: opc.tcp://10.0.0.5:4840
    tags:
      - node: ns=2;s=Temp
`, listen, tokenFile, extra)
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, tokenFile
}

func TestStatusConfig(t *testing.T) {
	cases := []struct {
		name   string
		listen string
		extra  string
		token  string
		mode   os.FileMode
		want   string // the error after "FILE:LINE: ", "" for none; TOKEN stands for the token file
	}{
		{name: "loopback v4", listen: "127.0.0.1:9480", token: goodToken + "\n", mode: 0o600},
		{name: "loopback v6", listen: "[::1]:9480", token: goodToken, mode: 0o400},
		{name: "localhost", listen: "localhost:9480", token: goodToken, mode: 0o600},
		{name: "socket", listen: "/run/tagbridge/status.sock", token: goodToken, mode: 0o600},
		{name: "remote allowed", listen: ":9480", extra: "  status_allow_remote: true\n", token: goodToken, mode: 0o600},
		{name: "all interfaces", listen: ":9480", token: goodToken, mode: 0o600,
			want: `agent.status_listen: ":9480" listens on every interface, which is not loopback; set status_allow_remote: true to allow that`},
		{name: "host name", listen: "ipc01.plant:9480", token: goodToken, mode: 0o600,
			want: `agent.status_listen: "ipc01.plant:9480" listens on ipc01.plant, which is not loopback; set status_allow_remote: true to allow that`},
		{name: "port 0", listen: "127.0.0.1:0", token: goodToken, mode: 0o600,
			want: `agent.status_listen: "127.0.0.1:0" has an invalid port "0"`},
		{name: "unclean socket", listen: "/run//status.sock", token: goodToken, mode: 0o600,
			want: `agent.status_listen: socket path "/run//status.sock" is not clean (want "/run/status.sock")`},
		{name: "group readable", listen: "127.0.0.1:9480", token: goodToken, mode: 0o640,
			want: `agent.status_token_file: token file "TOKEN" is readable by group or others (mode 0640); chmod 600 TOKEN`},
		{name: "empty", listen: "127.0.0.1:9480", token: "\n", mode: 0o600,
			want: `agent.status_token_file: token file "TOKEN" is empty`},
		{name: "short", listen: "127.0.0.1:9480", token: "letmein", mode: 0o600,
			want: `agent.status_token_file: token in "TOKEN" must be one word of at least 16 characters (e.g. openssl rand -hex 32)`},
		{name: "two words", listen: "127.0.0.1:9480", token: "0123456789abcdef 0123456789", mode: 0o600,
			want: `agent.status_token_file: token in "TOKEN" must be one word of at least 16 characters (e.g. openssl rand -hex 32)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file, tokenFile := statusConfig(t, c.listen, c.extra, c.token, c.mode)
			want := strings.ReplaceAll(c.want, "TOKEN", tokenFile)
			cfg, err := Load(file)
			st, rerr := ReadStatus(file)
			if want == "" {
				if err != nil || rerr != nil {
					t.Fatalf("Load: %v; ReadStatus: %v", err, rerr)
				}
				if got := cfg.Agent.StatusToken.Reveal(); got != goodToken {
					t.Errorf("Load: token %q, want %q", got, goodToken)
				}
				if st.Listen != c.listen || st.Token.Reveal() != goodToken {
					t.Errorf("ReadStatus = %q, %q; want %q and the token", st.Listen, st.Token.Reveal(), c.listen)
				}
				return
			}
			// Load and ReadStatus report the same problem, at the same place.
			for what, err := range map[string]error{"Load": err, "ReadStatus": rerr} {
				var errs Errors
				if !errors.As(err, &errs) || len(errs) != 1 {
					t.Fatalf("%s: %v, want one error: %s", what, err, want)
				}
				if got := errs[0].Path + ": " + errs[0].Msg; got != want {
					t.Errorf("%s:\n got %s\nwant %s", what, got, want)
				}
				if errs[0].File != file || errs[0].Line < 3 || errs[0].Line > 4 {
					t.Errorf("%s: error at %s:%d, want %s line 3 or 4", what, errs[0].File, errs[0].Line, file)
				}
				if strings.Contains(err.Error(), strings.TrimSpace(c.token)) && strings.TrimSpace(c.token) != "" {
					t.Errorf("%s error shows the token: %v", what, err)
				}
			}
		})
	}
}

// ReadStatus needs neither the agent's environment nor its certificates.
func TestReadStatusIgnoresTheRest(t *testing.T) {
	unsetEnv(t, "MQTT_PASS")
	file, _ := statusConfig(t, "/run/tagbridge/status.sock", "", goodToken, 0o600)
	body, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	body = append(body, "mqtt: {password_env: MQTT_PASS}\n"...)
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(file); err == nil {
		t.Fatal("Load succeeded without MQTT_PASS")
	}
	st, err := ReadStatus(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Listen != "/run/tagbridge/status.sock" || st.Token.Reveal() != goodToken {
		t.Errorf("ReadStatus = %+v", st)
	}
}

func TestStatusOffByDefault(t *testing.T) {
	c, err := Load("testdata/valid-minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Agent; a.StatusListen != "" || a.StatusAllowRemote || a.StatusTokenFile != "" || a.StatusToken != "" {
		t.Errorf("status settings by default: %q %v %q %q", a.StatusListen, a.StatusAllowRemote, a.StatusTokenFile, a.StatusToken.Reveal())
	}
	st, err := ReadStatus("testdata/valid-minimal.yaml")
	if err != nil || st.Listen != "" {
		t.Errorf("ReadStatus = %+v, %v; want no listener", st, err)
	}
}
