package agent

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// The JSON log of a run in which a PLC goes down for a dozen retries and
// comes back: every line about a PLC names it and its endpoint, and the
// outage costs one warning per state change, not one per retry.
func TestLogPLCDownAndUp(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	broker := testkit.StartBroker(t)
	sim := simproc.Start(t, "-tags", "4", "-interval", "100ms")
	got := collect(t, broker.URL())
	cfg := writeReloadConfig(t, filepath.Join(t.TempDir(), "config.yaml"), t.TempDir(),
		fmt.Sprintf("{url: %s, qos: 1}", broker.URL()), simEntry{"plc", sim.Endpoint, 4})
	r := startReloadAgent(t, cfg, zerolog.DebugLevel)
	r.waitStreaming(t, "plc")
	testkit.WaitUntil(t, "values", 10*time.Second, func() bool { return got.count("plc") >= 4 })

	sim.Kill()
	// reconnect is 100 ms to 300 ms: a dozen retries within a few seconds.
	testkit.WaitUntil(t, "12 retries", 20*time.Second, func() bool { return len(retries(parseLog(t, r.logs.String()), "plc")) >= 12 })
	sim.Restart("-tags", "4", "-interval", "100ms")
	r.waitStreaming(t, "plc")
	r.stop()

	lines := parseLog(t, r.logs.String())
	if len(lines) == 0 {
		t.Fatal("no log lines")
	}
	for _, l := range lines {
		plc, _ := l["plc"].(string)
		endpoint, _ := l["endpoint"].(string)
		if (plc != "" || l["component"] == "opcua") && (plc == "" || endpoint == "") {
			t.Errorf("a line about a PLC without plc or endpoint: %v", l)
		}
	}
	n := len(retries(lines, "plc"))
	type failure struct{ msg, err string }
	seen := map[failure]bool{}
	warnings := 0
	for _, l := range lines {
		if l["plc"] != "plc" || (l["level"] != "warn" && l["level"] != "error") {
			continue
		}
		warnings++
		f := failure{fmt.Sprint(l["message"]), fmt.Sprint(l["error"])}
		if seen[f] {
			t.Errorf("the same failure logged again at %s: %s: %s", l["level"], f.msg, f.err)
		}
		seen[f] = true
	}
	if warnings == 0 || warnings > 3 {
		t.Errorf("%d warnings for %d retries, want one per state change (1 to 3)", warnings, n)
	}
	t.Logf("%d retries, %d warnings", n, warnings)
}

// parseLog decodes JSON log lines.
func parseLog(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, s := range strings.Split(strings.TrimSpace(log), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", s, err)
		}
		out = append(out, m)
	}
	return out
}

// retries returns plc's lines that count a connection attempt.
func retries(lines []map[string]any, plc string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if _, ok := l["attempt"]; ok && l["plc"] == plc {
			out = append(out, l)
		}
	}
	return out
}
