package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.err from the current output")

// unsetEnv removes name for the test, restoring it afterwards.
func unsetEnv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "")
	os.Unsetenv(name)
}

// TestLoadErrors loads each testdata/<case>.yaml that has a <case>.err and
// compares the whole error output, line numbers included.
func TestLoadErrors(t *testing.T) {
	errFiles, err := filepath.Glob("testdata/*.err")
	if err != nil {
		t.Fatal(err)
	}
	if len(errFiles) < 20 {
		t.Fatalf("found %d error cases, want at least 20", len(errFiles))
	}
	for _, errFile := range errFiles {
		name := strings.TrimSuffix(filepath.Base(errFile), ".err")
		t.Run(name, func(t *testing.T) {
			unsetEnv(t, "MQTT_PASS")
			unsetEnv(t, "PRESS1_PASS")
			path := "testdata/" + name + ".yaml"
			_, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%q) succeeded, want errors", path)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load(%q) error is %T, want Errors: %v", path, err, err)
			}
			got := err.Error() + "\n"
			if *update {
				if err := os.WriteFile(errFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(errFile)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("Load(%q) errors:\n%s\nwant:\n%s", path, got, want)
			}
			for _, e := range errs {
				if e.File != path || e.Line < 1 {
					t.Errorf("error %q has File %q Line %d, want %q and a line", e.Msg, e.File, e.Line, path)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v, want a wrapped os.ErrNotExist", err)
	}
	if errors.As(err, new(Errors)) {
		t.Fatalf("Load of a missing file returned Errors, want a plain error")
	}
}

func TestLoadDefaults(t *testing.T) {
	c, err := Load("testdata/valid-minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, m := c.Agent, c.MQTT
	checks := []struct {
		name      string
		got, want any
	}{
		{"agent.log_level", a.LogLevel, "info"},
		{"agent.log_format", a.LogFormat, "json"},
		{"agent.allowed_cert_dirs", strings.Join(a.AllowedCertDirs, ","), "/etc/tagbridge/certs"},
		{"agent.pki_dir", a.PKIDir, "/var/lib/tagbridge/pki"},
		{"agent.spool_dir", a.SpoolDir, "/var/lib/tagbridge/spool"},
		{"mqtt.url", m.URL, "tcp://127.0.0.1:1883"},
		{"mqtt.client_id", m.ClientID, "tagbridge-ipc01"},
		{"mqtt.qos", m.QoS, 1},
		{"mqtt.retain", m.Retain, false},
		{"mqtt.keepalive", m.Keepalive.Duration(), 30 * time.Second},
		{"mqtt.topic", m.Topic, "tagbridge/{agent}/{plc}/{tag}"},
		{"mqtt.password", m.Password.Reveal(), ""},
		{"mqtt.spool.max_bytes", m.Spool.MaxBytes, Size(256 << 20)},
		{"mqtt.spool.sync_interval", m.Spool.SyncInterval.Duration(), 100 * time.Millisecond},
	}
	p := c.PLCs[0]
	checks = append(checks, []struct {
		name      string
		got, want any
	}{
		{"security.policy", p.Security.Policy, "None"},
		{"security.mode", p.Security.Mode, "None"},
		{"security.certificate_file", p.Security.CertificateFile, "/etc/tagbridge/certs/client-cert.pem"},
		{"security.key_file", p.Security.KeyFile, "/etc/tagbridge/certs/client-key.pem"},
		{"security.pki_dir", p.Security.PKIDir, "/var/lib/tagbridge/pki"},
		{"security.trust", p.Security.Trust, "full"},
		{"security.auto_accept", p.Security.AutoAccept, AutoAccept("false")},
		{"security.verify_hostname", p.Security.VerifyHostname, true},
		{"security.allow_unknown_revocation", p.Security.AllowUnknownRevocation, false},
		{"security.allow_sha1", p.Security.AllowSHA1, false},
		{"security.allow_deprecated", p.Security.AllowDeprecated, false},
		{"security.allow_none", p.Security.AllowNone, false},
		{"reconnect", p.Reconnect, Reconnect{Min: Duration(time.Second), Max: Duration(time.Minute)}},
		{"publishing_interval", p.PublishingInterval.Duration(), time.Second},
		{"sampling_interval", p.SamplingInterval.Duration(), 100 * time.Millisecond},
		{"queue_size", p.QueueSize, uint32(10)},
		{"tag", p.Tags[0], Tag{
			Name:               "Line1.Temp",
			Node:               NodeID{Raw: "ns=2;s=Line1.Temp"},
			SamplingInterval:   Duration(100 * time.Millisecond),
			QueueSize:          10,
			PublishingInterval: Duration(time.Second),
			Mode:               "subscribe",
			PollInterval:       Duration(time.Second),
		}},
		{"mode", p.Mode, "subscribe"},
		{"poll_interval", p.PollInterval.Duration(), time.Second},
		{"history.fill_gaps", p.History.Enabled(), true},
		{"history.max_window", p.History.MaxWindow.Duration(), time.Hour},
		{"reverse", p.Reverse == nil, true},
	}...)
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadOverrides(t *testing.T) {
	t.Setenv("TAGBRIDGE_TEST_OPC_PASS", "opc-secret")
	c, err := Load("testdata/valid-overrides.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.MQTT.QoS != 0 {
		t.Errorf("explicit qos 0 became %d", c.MQTT.QoS)
	}
	if got := c.MQTT.Password.Reveal(); got != "RECOGNISABLE-SECRET-7f3a" {
		t.Errorf("mqtt password from file = %q", got)
	}
	if got := c.PLCs[0].Auth.Password.Reveal(); got != "opc-secret" {
		t.Errorf("auth password from env = %q", got)
	}
	if c.MQTT.ClientID != "edge-7" {
		t.Errorf("client_id = %q, want edge-7", c.MQTT.ClientID)
	}
	if c.TagCount() != 5 {
		t.Errorf("TagCount() = %d, want 5", c.TagCount())
	}
	ms := func(n int) Duration { return Duration(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name     string
		tag      Tag
		sampling Duration
		queue    uint32
		publish  Duration
		topic    string
	}{
		{"temp", c.PLCs[0].Tags[0], ms(250), 10, ms(2000), ""},
		{"speed", c.PLCs[0].Tags[1], ms(50), 3, ms(500), "plant/{plc}/{tag}"},
		{"2258", c.PLCs[0].Tags[2], ms(250), 10, ms(2000), ""},
		{"Zone_1_Temp", c.PLCs[0].Tags[3], ms(250), 10, ms(2000), ""},
		{"M_RbKBsRVkePCePcx24oRA==", c.PLCs[0].Tags[4], ms(250), 10, ms(2000), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := tt.tag
			if tg.Name != tt.name {
				t.Errorf("name = %q, want %q", tg.Name, tt.name)
			}
			if tg.SamplingInterval != tt.sampling || tg.QueueSize != tt.queue || tg.PublishingInterval != tt.publish {
				t.Errorf("sampling, queue, publishing = %s, %d, %s; want %s, %d, %s",
					tg.SamplingInterval, tg.QueueSize, tg.PublishingInterval, tt.sampling, tt.queue, tt.publish)
			}
			if tg.Topic != tt.topic {
				t.Errorf("topic = %q, want %q", tg.Topic, tt.topic)
			}
		})
	}
	if d := c.PLCs[0].Tags[0].Deadband; d == nil || *d != (Deadband{Type: "absolute", Value: 0.5}) {
		t.Errorf("deadband = %+v", d)
	}
	if uri := c.PLCs[0].Tags[3].Node.NamespaceURI(); uri != "urn:plant:oven" {
		t.Errorf("NamespaceURI() = %q", uri)
	}
}

// TestSecretsNeverPrinted loads broken configs that hold secrets and checks
// that no error, and no formatting of a loaded config, shows them.
func TestSecretsNeverPrinted(t *testing.T) {
	const fromFile, fromEnv = "RECOGNISABLE-SECRET-7f3a", "ENV-SECRET-91c2"
	t.Setenv("MQTT_PASS", fromEnv)
	t.Setenv("TAGBRIDGE_TEST_OPC_PASS", fromEnv)
	for _, path := range []string{"testdata/password-env-and-file.yaml", "testdata/url-credentials.yaml", "testdata/secrets-with-errors.yaml"} {
		_, err := Load(path)
		if err == nil {
			t.Fatalf("Load(%q) succeeded, want errors", path)
		}
		for _, s := range []string{fromFile, fromEnv, "hunter2"} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("Load(%q) error shows a secret:\n%v", path, err)
			}
		}
	}

	c, err := Load("testdata/valid-overrides.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.MQTT.Password.Reveal() != fromFile || c.PLCs[0].Auth.Password.Reveal() != fromEnv {
		t.Fatal("secrets not resolved")
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(format, *c); strings.Contains(s, fromFile) || strings.Contains(s, fromEnv) {
			t.Errorf("fmt %s of the config shows a secret", format)
		}
	}
	if b, _ := c.MQTT.Password.MarshalText(); strings.Contains(string(b), fromFile) {
		t.Error("MarshalText shows the secret")
	}
}
