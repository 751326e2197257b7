package statusapi

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/config"
)

const docs = "../../docs"

// TestPrometheusDocs: the shipped alert rules and example configuration
// pass promtool (Debian package prometheus), the rules' unit tests pass,
// and every tagbridge_ metric the rules and the Grafana dashboard use is
// one the agent exports.
func TestPrometheusDocs(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found; scripts/test installs it (Debian package prometheus)")
	}
	rules := filepath.Join(docs, "prometheus", "alerts.yml")
	promtoolRun := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	promtoolRun(".", "check", "rules", rules)
	promtoolRun(filepath.Join(docs, "prometheus"), "test", "rules", "alerts_test.yml")

	// The example configuration, with its token file and rules where it
	// expects them.
	dir := t.TempDir()
	example, err := os.ReadFile(filepath.Join(docs, "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "tagbridge-token")
	if err := os.WriteFile(token, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(example), "/etc/prometheus/tagbridge-token", token, 1)
	if cfg == string(example) {
		t.Fatal("prometheus.yml no longer names /etc/prometheus/tagbridge-token; update this test")
	}
	ruleText, _ := os.ReadFile(rules)
	for name, data := range map[string][]byte{"prometheus.yml": []byte(cfg), "alerts.yml": ruleText} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	promtoolRun(dir, "check", "config", "prometheus.yml")

	exported := exportedNames(t)
	dashboard, err := os.ReadFile(filepath.Join(docs, "grafana", "tagbridge.json"))
	if err != nil {
		t.Fatal(err)
	}
	for file, text := range map[string]string{"alerts.yml": string(ruleText), "tagbridge.json": string(dashboard)} {
		used := metricName.FindAllString(text, -1)
		if len(used) == 0 {
			t.Errorf("%s uses no tagbridge_ metric", file)
		}
		for _, name := range used {
			if !exported[name] {
				t.Errorf("%s uses %s, which the agent does not export", file, name)
			}
		}
	}
}

var metricName = regexp.MustCompile(`\btagbridge_[a-z_]+[a-z]\b`)

// exportedNames are the metric names the status server describes.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	s, err := New("127.0.0.1:0", config.Secret(token), "ipc01", healthySource(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	ch := make(chan *prometheus.Desc, 256)
	go func() { metrics{s}.Describe(ch); close(ch) }()
	names := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		if m := fq.FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = true
		}
	}
	// Collected only when present: no certificates, commands or counts
	// by PLC entry in healthySource.
	for _, d := range []*prometheus.Desc{descCertExpiry, descCommands, descPublished, descFailed, descDropped} {
		names[fq.FindStringSubmatch(d.String())[1]] = true
	}
	return names
}
