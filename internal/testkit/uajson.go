package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// UASchemas are the ua-data and ua-status schemas, written from the Part
// 14 and Part 6 text, independently of the encoder; the tests decode with
// encoding/json.
func UASchemas(t testing.TB) (data, status *jsonschema.Schema) {
	t.Helper()
	c := jsonschema.NewCompiler()
	var err error
	if data, err = c.Compile(Testdata("opcua-json-data.schema.json")); err != nil {
		t.Fatal(err)
	}
	if status, err = c.Compile(Testdata("opcua-json-status.schema.json")); err != nil {
		t.Fatal(err)
	}
	return data, status
}

// SchemaCheck fails unless payload matches sch.
func SchemaCheck(t testing.TB, sch *jsonschema.Schema, payload []byte) {
	t.Helper()
	if err := SchemaErr(sch, payload); err != nil {
		t.Fatalf("%s\ndoes not match %s: %v", payload, sch.Location, err)
	}
}

// SchemaErr says how payload does not match sch, nil if it does.
func SchemaErr(sch *jsonschema.Schema, payload []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return err
	}
	return sch.Validate(v)
}

// UANetworkMessage is a ua-data NetworkMessage as a consumer decodes it.
type UANetworkMessage struct {
	MessageID       string `json:"MessageId"`
	MessageType     string
	PublisherID     string `json:"PublisherId"`
	WriterGroupName string
	Messages        []struct {
		DataSetWriterID   int `json:"DataSetWriterId"`
		DataSetWriterName string
		SequenceNumber    uint32
		Timestamp         time.Time
		Status            *struct {
			Code   uint32
			Symbol string
		}
		MessageType string
		Payload     map[string]json.RawMessage
	}
}

// DecodeUA decodes a JSON message into T, refusing unknown fields.
func DecodeUA[T any](t testing.TB, payload []byte) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", payload, err)
	}
	return v
}

// NodeDecoded is one result of internal/testkit/testdata/decode.js.
type NodeDecoded struct {
	Name   string
	Error  string
	Type   int
	DVType int
	Status uint32
	Source *string
	Value  json.RawMessage
}

// DecodeWithNode decodes DataValue JSON objects with node-opcua-json, from
// the node-opcua install of scripts/opcua-peer (node-opcua 2.182.2 pulls in
// node-opcua-json 2.182.2), as a consumer would.
func DecodeWithNode(t testing.TB, fields map[string][]byte, order []string) map[string]NodeDecoded {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH (%v): run scripts/test, which installs Node.js and node-opcua", err)
	}
	mods := filepath.Join(filepath.Join(RepoDir(), "scripts", "opcua-peer"), "node_modules")
	pkg, err := os.ReadFile(filepath.Join(mods, "node-opcua-json", "package.json"))
	if err != nil {
		t.Fatalf("node-opcua-json is not installed in %s (%v): run scripts/test (or npm ci in scripts/opcua-peer)", mods, err)
	}
	var meta struct{ Version string }
	if err := json.Unmarshal(pkg, &meta); err != nil || meta.Version != "2.182.2" {
		t.Fatalf("node-opcua-json in %s is %q (%v), want 2.182.2", mods, meta.Version, err)
	}
	var in bytes.Buffer
	in.WriteByte('[')
	for i, name := range order {
		if i > 0 {
			in.WriteByte(',')
		}
		fmt.Fprintf(&in, `{"name":%q,"field":%s}`, name, fields[name])
	}
	in.WriteByte(']')
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, Testdata("decode.js"))
	cmd.Env = append(os.Environ(), "NODE_PATH="+mods)
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("decode.js: %v: %s", err, stderr.Bytes())
	}
	var res []NodeDecoded
	if err := json.Unmarshal(stdout, &res); err != nil {
		t.Fatalf("decode.js output: %v: %s", err, stdout)
	}
	byName := map[string]NodeDecoded{}
	for _, r := range res {
		byName[r.Name] = r
	}
	return byName
}

// UAMetaSchema is the ua-metadata schema.
func UAMetaSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	sch, err := jsonschema.NewCompiler().Compile(Testdata("opcua-json-metadata.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	return sch
}
