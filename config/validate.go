package config

import (
	"fmt"
	"math"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tagbridge/tagbridge/config/filecheck"
	"github.com/tagbridge/tagbridge/config/yamlfile"
)

var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"json", "console"}
	policies   = []string{"None", "Basic128Rsa15", "Basic256", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss", "ECC_nistP256", "ECC_nistP384", "ECC_brainpoolP256r1", "ECC_brainpoolP384r1", "ECC_curve25519", "ECC_curve448", "ECC_nistP256_AesGcm", "ECC_nistP256_ChaChaPoly", "auto"}
	modes      = []string{"None", "Sign", "SignAndEncrypt"}
	deadbands  = []string{"absolute", "percent"}
)

// Validate checks c and resolves its secrets (MQTT.Password, Auth.Password).
// It returns Errors holding every problem, in line order, or nil.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.agent(&c.Agent)
	v.mqtt(&c.MQTT)
	if len(c.PLCs) == 0 {
		v.add("plcs", "at least one PLC required")
	}
	names := map[string]int{}
	for i := range c.PLCs {
		p := &c.PLCs[i]
		path := fmt.Sprintf("plcs[%d]", i)
		if first, dup := names[p.Name]; dup && p.Name != "" {
			v.add(path+".name", "duplicate PLC name %q (first at line %d)", p.Name, v.line(fmt.Sprintf("plcs[%d].name", first)))
		} else {
			names[p.Name] = i
			v.topicLevel(path+".name", p.Name)
		}
		v.plc(path, p)
	}
	if len(v.errs) == 0 {
		return nil
	}
	v.errs.SortByLine()
	return v.errs
}

type validator struct {
	c    *Config
	errs Errors
}

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, Error{File: v.c.File, Line: v.line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) line(path string) int { return yamlfile.LineOf(v.c.root, path) }

// oneOf reports value at path unless it is one of allowed.
func (v *validator) oneOf(path, value, what string, allowed []string) bool {
	if slices.Contains(allowed, value) {
		return true
	}
	v.add(path, "%q is not a valid %s (%s)", value, what, orList(allowed))
	return false
}

func orList(s []string) string {
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

func (v *validator) agent(a *Agent) {
	v.topicLevel("agent.id", a.ID)
	v.oneOf("agent.log_level", a.LogLevel, "log level", logLevels)
	v.oneOf("agent.log_format", a.LogFormat, "log format", logFormats)
	for i, d := range a.AllowedCertDirs {
		if d == "" {
			v.add(fmt.Sprintf("agent.allowed_cert_dirs[%d]", i), "must not be empty")
		}
	}
	v.status(a)
	v.memoryLimit(a.MemoryLimit)
}

func (v *validator) mqtt(m *MQTT) {
	v.keyFrames(m)
	if msg := brokerURLError(m.URL); msg != "" {
		v.add("mqtt.url", "%s", msg)
	}
	if m.QoS < 0 || m.QoS > 2 {
		v.add("mqtt.qos", "%d is not a valid QoS (0, 1 or 2)", m.QoS)
	}
	// MQTT counts keepalive in whole seconds; less would turn it off.
	if m.Keepalive.Duration() < time.Second {
		v.add("mqtt.keepalive", "must be at least 1s, got %s", m.Keepalive)
	}
	if m.PasswordEnv != "" && m.PasswordFile != "" {
		v.add("mqtt.password_file", "password_env and password_file are mutually exclusive")
	} else if m.PasswordEnv != "" {
		m.Password = v.fromEnv("mqtt.password_env", m.PasswordEnv)
	} else if m.PasswordFile != "" {
		m.Password = v.fromFile("mqtt.password_file", m.PasswordFile)
	}
	for _, f := range []struct{ key, name string }{{"ca_file", m.TLS.CAFile}, {"cert_file", m.TLS.CertFile}, {"key_file", m.TLS.KeyFile}} {
		if f.name != "" {
			v.certFile("mqtt.tls."+f.key, f.name, f.key == "key_file")
		}
	}
	if m.TLS.CertFile != "" && m.TLS.KeyFile == "" {
		v.add("mqtt.tls.key_file", "required with cert_file")
	}
	if m.TLS.KeyFile != "" && m.TLS.CertFile == "" {
		v.add("mqtt.tls.cert_file", "required with key_file")
	}
	if msg := topicError(m.Topic); msg != "" {
		v.add("mqtt.topic", "%s", msg)
	}
	switch m.Payload {
	case PayloadJSON:
	case PayloadSparkplugB:
		switch {
		case m.Sparkplug.GroupID == "":
			v.add("mqtt.sparkplug.group_id", "required with payload sparkplug_b")
		case strings.ContainsFunc(m.Sparkplug.GroupID, BreaksTopicLevel):
			v.add("mqtt.sparkplug.group_id", "%q: must be one topic level, without / + #", m.Sparkplug.GroupID)
		}
		if id := m.Sparkplug.PrimaryHostID; strings.ContainsFunc(id, BreaksTopicLevel) {
			v.add("mqtt.sparkplug.primary_host_id", "%q: must be one topic level, without / + #", id)
		}
	case PayloadOPCUAJSON:
	default:
		v.add("mqtt.payload", "%q is not a payload format (json, sparkplug_b or opcua_json)", m.Payload)
	}
	if m.Batch && m.Payload != PayloadJSON {
		v.add("mqtt.batch", "applies to payload json only; %s batches by itself", m.Payload)
	}
	if msg := topicError(m.BatchTopic); msg != "" {
		v.add("mqtt.batch_topic", "%s", msg)
	} else if strings.Contains(m.BatchTopic, "{tag}") {
		v.add("mqtt.batch_topic", "a batch holds many tags: {tag} is not allowed, only {agent} and {plc}")
	}
	if m.Spool.MaxBytes < MinSpoolMaxBytes {
		v.add("mqtt.spool.max_bytes", "must be at least 1MiB, got %s", m.Spool.MaxBytes)
	}
	if d := m.Spool.SyncInterval.Duration(); d < time.Millisecond || d > time.Minute {
		v.add("mqtt.spool.sync_interval", "must be between 1ms and 1m, got %s", m.Spool.SyncInterval)
	}
	if m.MaxPacketSize < MinMaxPacketSize || m.MaxPacketSize > MaxMaxPacketSize {
		v.add("mqtt.max_packet_size", "must be between 4KiB and 256MiB (MQTT's limit), got %s", m.MaxPacketSize)
	}
}

// Bounds of mqtt.max_packet_size: room for one value with its topic, and
// MQTT 3.1.1's largest packet.
const (
	MinMaxPacketSize = 4 << 10
	MaxMaxPacketSize = 256 << 20
)

// MinSpoolMaxBytes is the smallest mqtt.spool.max_bytes: room for a few segments.
const MinSpoolMaxBytes = 1 << 20

func (v *validator) plc(path string, p *PLC) {
	if msg := endpointError(p.Endpoint); msg != "" {
		v.add(path+".endpoint", "%s", msg)
	}
	v.security(path+".security", p.Security)
	v.auth(path+".auth", &p.Auth, p.Security.Policy)
	r := p.Reconnect
	if r.Min <= 0 {
		v.add(path+".reconnect.min", "must be greater than 0")
	} else if r.Max < r.Min {
		v.add(path+".reconnect.max", "max (%s) must not be less than min (%s)", r.Max, r.Min)
	}
	if p.PublishingInterval <= 0 {
		v.add(path+".publishing_interval", "must be greater than 0")
	}
	if p.SamplingInterval < 0 {
		v.add(path+".sampling_interval", "must not be negative")
	}
	if p.QueueSize < 1 {
		v.add(path+".queue_size", "must be at least 1")
	}
	if n := p.PublishRequests; n != nil && (*n < 1 || *n > MaxPublishRequests) {
		v.add(path+".publish_requests", "must be between 1 and %d (leave it out for the default)", MaxPublishRequests)
	}
	if p.WatchdogIntervals < 2 {
		v.add(path+".watchdog_intervals", "must be at least 2")
	}
	if p.TokenLifetime.Duration() < time.Second {
		v.add(path+".token_lifetime", "must be at least 1s")
	}
	if p.ClockSkewWarning <= 0 {
		v.add(path+".clock_skew_warning", "must be greater than 0")
	}

	if len(p.Tags) == 0 {
		v.add(path+".tags", "at least one tag required")
	}
	names := map[string]int{}
	for j := range p.Tags {
		v.tag(path, j, &p.Tags[j], names)
	}
	v.plcModes(path, p)
	v.heartbeat(path, p)
	v.commands(path, p)
}

// tag checks tag j of the PLC at plcPath; names maps the tag names seen so far to their index.
func (v *validator) tag(plcPath string, j int, t *Tag, names map[string]int) {
	path := fmt.Sprintf("%s.tags[%d]", plcPath, j)
	if t.Node.Raw == "" {
		v.add(path+".node", "required")
	}
	// An empty name comes from an empty node id, already reported.
	if t.Name != "" {
		if first, dup := names[t.Name]; dup {
			v.add(path+".name", "duplicate tag name %q (first at line %d)", t.Name, v.line(fmt.Sprintf("%s.tags[%d].name", plcPath, first)))
		} else {
			names[t.Name] = j
			v.topicLevel(path+".name", t.Name)
		}
	}
	if t.Topic != "" {
		if msg := topicError(t.Topic); msg != "" {
			v.add(path+".topic", "%s", msg)
		}
	}
	if d := t.Deadband; d != nil {
		if d.Type == "" {
			v.add(path+".deadband.type", "required (absolute or percent)")
		} else {
			v.oneOf(path+".deadband.type", d.Type, "deadband type", deadbands)
		}
		switch {
		case math.IsNaN(d.Value) || math.IsInf(d.Value, 0):
			v.add(path+".deadband.value", "must be a finite number")
		case d.Value < 0:
			v.add(path+".deadband.value", "must not be negative, got %g", d.Value)
		case d.Type == "percent" && d.Value > 100:
			v.add(path+".deadband.value", "a percent deadband must be at most 100, got %g", d.Value)
		}
	}
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// fromEnv reads a secret from an environment variable.
func (v *validator) fromEnv(path, name string) Secret {
	if !envName.MatchString(name) {
		// Not echoed: this is where a password pasted by mistake would sit.
		v.add(path, "must be the name of an environment variable")
		return ""
	}
	val, ok := os.LookupEnv(name)
	switch {
	case !ok:
		v.add(path, "environment variable %q is not set", name)
	case val == "":
		v.add(path, "environment variable %q is empty", name)
	}
	return Secret(val)
}

// fromFile reads a secret from a file, without its trailing newline.
func (v *validator) fromFile(path, name string) Secret {
	val, err := filecheck.ReadSecret(name)
	if err != nil {
		v.add(path, "cannot read password file %q: %s", name, filecheck.Reason(err))
		return ""
	}
	if val == "" {
		v.add(path, "password file %q is empty", name)
	}
	return Secret(val)
}

// brokerURLError returns what is wrong with an MQTT broker URL, or "".
func brokerURLError(raw string) string {
	u, msg := parseURL(raw, "username and password_env or password_file")
	if msg != "" {
		return msg
	}
	switch u.Scheme {
	case "tcp", "ssl", "ws", "wss":
	default:
		return fmt.Sprintf("%q has an unsupported scheme %q (want tcp, ssl, ws or wss)", raw, u.Scheme)
	}
	if u.Hostname() == "" {
		return fmt.Sprintf("%q has no host", raw)
	}
	// paho dials tcp and ssl as host:port; websockets have default ports.
	if u.Port() == "" && (u.Scheme == "tcp" || u.Scheme == "ssl") {
		port := map[string]string{"tcp": "1883", "ssl": "8883"}[u.Scheme]
		return fmt.Sprintf("%q has no port (e.g. %s://%s:%s)", raw, u.Scheme, u.Hostname(), port)
	}
	return ""
}

// endpointError returns what is wrong with an OPC UA endpoint URL, or "".
// A missing port is fine: gopcua dials 4840.
func endpointError(raw string) string {
	if raw == "" {
		return "required"
	}
	u, msg := parseURL(raw, "auth")
	if msg != "" {
		return msg
	}
	if u.Scheme != "opc.tcp" {
		return fmt.Sprintf("%q has an unsupported scheme %q (want opc.tcp)", raw, u.Scheme)
	}
	if u.Hostname() == "" {
		return fmt.Sprintf("%q has no host", raw)
	}
	return ""
}

// parseURL parses raw, refusing credentials in it: they belong in a secret.
func parseURL(raw, instead string) (*url.URL, string) {
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") { // may hold a password: do not echo
			return nil, "not a valid URL"
		}
		return nil, fmt.Sprintf("%q is not a valid URL", raw)
	}
	if u.User != nil {
		return nil, "credentials in the URL are not allowed (use " + instead + ")"
	}
	return u, ""
}
