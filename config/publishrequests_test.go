package config

import (
	"os"
	"path/filepath"
	"testing"
)

// publish_requests is read as written; left out, it is 0 (the engine
// chooses by subscriptions). The refused values are in
// testdata/publish-requests.yaml (TestLoadErrors).
func TestLoadPublishRequests(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	yaml := `agent: {id: line1}
plcs:
  - name: rockwell
    endpoint: opc.tcp://127.0.0.1:4840
    publish_requests: 1
    tags: [{node: ns=2;s=Temp}]
  - name: s7
    endpoint: opc.tcp://127.0.0.1:4841
    tags: [{node: ns=2;s=Temp}]
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.PLCs[0].StartPublishRequests(); got != 1 {
		t.Errorf("rockwell: publish requests %d, want 1", got)
	}
	if got := cfg.PLCs[1].StartPublishRequests(); got != 0 || cfg.PLCs[1].PublishRequests != nil {
		t.Errorf("s7: publish requests %d (%v), want 0 and nil", got, cfg.PLCs[1].PublishRequests)
	}
}
