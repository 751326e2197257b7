package publish

// Eclipse Tahu's JavaScript decoder (npm sparkplug-payload, in
// scripts/sparkplug-decoder, installed by scripts/test) reads every message
// the Sparkplug tests receive, as a host would: datatypes from the births,
// DDATA metrics by alias.

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

const tahuDir = "../scripts/sparkplug-decoder"

// tahuDecoder is one running decode.js; it keeps the aliases of the births
// it has read.
type tahuDecoder struct {
	t     *testing.T
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// tahuPayload is a payload as sparkplug-payload decodes it; 64-bit
// integers are decimal strings.
type tahuPayload struct {
	Timestamp string       `json:"timestamp"`
	Seq       *string      `json:"seq"`
	Metrics   []tahuMetric `json:"metrics"`
}

type tahuMetric struct {
	Name         string          `json:"name"`
	Alias        string          `json:"alias"`
	Type         string          `json:"type"`
	Value        json.RawMessage `json:"value"`
	Timestamp    string          `json:"timestamp"`
	IsHistorical bool            `json:"isHistorical"`
}

func startTahu(t *testing.T) *tahuDecoder {
	t.Helper()
	if _, err := os.Stat(filepath.Join(tahuDir, "node_modules", "sparkplug-payload", "package.json")); err != nil {
		t.Fatalf("Tahu's sparkplug-payload is not installed in %s (scripts/test installs it; or run npm ci there): %v", tahuDir, err)
	}
	cmd := exec.Command("node", "decode.js")
	cmd.Dir = tahuDir
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("Tahu decoder (node %s/decode.js): %v", tahuDir, err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	out := bufio.NewScanner(stdout)
	out.Buffer(nil, 64<<20)
	return &tahuDecoder{t: t, stdin: stdin, out: out}
}

// decode has Tahu decode one message; it fails the test if Tahu cannot.
func (d *tahuDecoder) decode(topic string, payload []byte) tahuPayload {
	d.t.Helper()
	line, err := json.Marshal(map[string]string{"topic": topic, "payload": base64.StdEncoding.EncodeToString(payload)})
	if err != nil {
		d.t.Fatal(err)
	}
	if _, err := d.stdin.Write(append(line, '\n')); err != nil {
		d.t.Fatalf("Tahu decoder: %v", err)
	}
	if !d.out.Scan() {
		d.t.Fatalf("Tahu decoder ended: %v", d.out.Err())
	}
	var res struct {
		Payload tahuPayload `json:"payload"`
		Error   string      `json:"error"`
	}
	if err := json.Unmarshal(d.out.Bytes(), &res); err != nil {
		d.t.Fatalf("Tahu decoder output %q: %v", d.out.Bytes(), err)
	}
	if res.Error != "" {
		d.t.Errorf("Tahu's sparkplug-payload cannot read %s: %s", topic, res.Error)
	}
	return res.Payload
}
