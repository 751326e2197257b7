// Package config holds tagbridge's configuration: plain structs, loading,
// defaults and validation. No network, no goroutines.
package config

import (
	"go.yaml.in/yaml/v3"

	"github.com/tagbridge/tagbridge/certs"
)

// Config is the whole YAML file.
type Config struct {
	Agent Agent `yaml:"agent"`
	MQTT  MQTT  `yaml:"mqtt"`
	PLCs  []PLC `yaml:"plcs"`

	// File is the path the configuration was loaded from.
	File string `yaml:"-"`

	root *yaml.Node // the file's node tree, for line numbers in errors
}

// TagCount returns the number of tags over all PLCs.
func (c *Config) TagCount() int {
	n := 0
	for _, p := range c.PLCs {
		n += len(p.Tags)
	}
	return n
}

// Agent is the agent's identity and local settings.
type Agent struct {
	ID              string   `yaml:"id"`
	LogLevel        string   `yaml:"log_level"`
	LogFormat       string   `yaml:"log_format"`
	AllowedCertDirs []string `yaml:"allowed_cert_dirs"`
	PKIDir          string   `yaml:"pki_dir"`
	SpoolDir        string   `yaml:"spool_dir"`

	// StatusListen is where /healthz, /status and /metrics are served: a
	// host:port or an absolute unix socket path; "" serves nothing.
	StatusListen      string `yaml:"status_listen"`
	StatusAllowRemote bool   `yaml:"status_allow_remote"`
	StatusTokenFile   string `yaml:"status_token_file"`
	// StatusWebConfig is a web configuration file in the Prometheus
	// exporter convention (tls_server_config, basic_auth_users): TLS and
	// basic authentication on a TCP status_listen.
	StatusWebConfig string `yaml:"status_web_config"`
	// StatusMaxBacklogAge: health fails while the oldest value not yet
	// acknowledged by the broker is older (0: never on that ground).
	StatusMaxBacklogAge Duration `yaml:"status_max_backlog_age"`
	// StatusRequireAllTags: health fails while the PLC refuses any tag.
	StatusRequireAllTags bool `yaml:"status_require_all_tags"`
	// MemoryLimit is the Go runtime's soft memory limit: auto (from the
	// tag count, in batch mode only), off, or a size (memory.go).
	MemoryLimit string `yaml:"memory_limit"`
	// StatusToken is read from StatusTokenFile at load time.
	StatusToken Secret `yaml:"-"`

	// Version is the running binary's version, set by main for the status
	// messages; it is not read from the file.
	Version string `yaml:"-"`
}

// MQTT is the broker connection and publishing settings.
type MQTT struct {
	URL          string   `yaml:"url"`
	ClientID     string   `yaml:"client_id"`
	Username     string   `yaml:"username"`
	PasswordEnv  string   `yaml:"password_env"`
	PasswordFile string   `yaml:"password_file"`
	TLS          TLS      `yaml:"tls"`
	QoS          int      `yaml:"qos"`
	Retain       bool     `yaml:"retain"`
	Keepalive    Duration `yaml:"keepalive"`
	Topic        string   `yaml:"topic"`
	Spool        Spool    `yaml:"spool"`
	// MaxPacketSize bounds every MQTT packet sent (batches are split to
	// fit; a larger value is set aside) and received (a larger one drops
	// the connection).
	MaxPacketSize Size `yaml:"max_packet_size"`

	// Payload is the message format: json (one object per value, or per
	// publish cycle with Batch), sparkplug_b or opcua_json.
	Payload    string    `yaml:"payload"`
	Batch      bool      `yaml:"batch"`       // json: one array per PLC and publish cycle
	BatchTopic string    `yaml:"batch_topic"` // topic template of batches: {agent}, {plc}
	Sparkplug  Sparkplug `yaml:"sparkplug"`
	UAJSON     UAJSON    `yaml:"opcua_json"`

	// Password is resolved from PasswordEnv or PasswordFile at load time.
	Password Secret `yaml:"-"`
}

// Payload formats (mqtt.payload).
const (
	PayloadJSON       = "json"
	PayloadSparkplugB = "sparkplug_b"
	PayloadOPCUAJSON  = "opcua_json"
)

// UAJSON holds the opcua_json (OPC UA Part 14) settings.
type UAJSON struct {
	// KeyFrameCount makes every KeyFrameCount-th DataSetMessage of a PLC
	// entry a key frame with every tag's last value (0: delta frames only).
	KeyFrameCount int `yaml:"keyframe_count"`
}

// Sparkplug holds the Sparkplug B settings; the edge node id is agent.id.
type Sparkplug struct {
	GroupID string `yaml:"group_id"`
	// PrimaryHostID, if set, is the host application whose STATE the edge
	// node waits for before its NBIRTH (Sparkplug 3.0 Primary Host).
	PrimaryHostID string `yaml:"primary_host_id"`
}

// Spool bounds and syncs the disk spool under agent.spool_dir, through
// which every value passes on its way to the broker.
type Spool struct {
	MaxBytes     Size     `yaml:"max_bytes"`
	SyncInterval Duration `yaml:"sync_interval"`
}

// TLS is the client side of an ssl:// or wss:// broker connection.
type TLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// MaxPublishRequests bounds plcs[].publish_requests: each answer carries
// one subscription's data, and the engine keeps at most this many.
const MaxPublishRequests = 10

// StartPublishRequests is publish_requests, 0 when left out.
func (p *PLC) StartPublishRequests() int {
	if p.PublishRequests == nil {
		return 0
	}
	return *p.PublishRequests
}

// PLC is one OPC UA server and the tags read from it.
type PLC struct {
	Name               string    `yaml:"name"`
	Endpoint           string    `yaml:"endpoint"`
	Security           Security  `yaml:"security"`
	Auth               Auth      `yaml:"auth"`
	Reconnect          Reconnect `yaml:"reconnect"`
	PublishingInterval Duration  `yaml:"publishing_interval"`
	SamplingInterval   Duration  `yaml:"sampling_interval"`
	QueueSize          uint32    `yaml:"queue_size"`
	// WatchdogIntervals is how many publishing intervals (at least 5 s) a
	// session may stay silent, heartbeat included, before it is rebuilt.
	WatchdogIntervals int `yaml:"watchdog_intervals"`
	// PublishRequests is how many PublishRequests are kept in flight at
	// start, fewer after BadTooManyPublishRequests (Rockwell, Beckhoff);
	// nil: one per subscription plus one, 3 to 10 (StartPublishRequests).
	PublishRequests *int `yaml:"publish_requests"`
	// TokenLifetime is the secure channel token lifetime requested; the
	// token is renewed at 75 % of what the server grants.
	TokenLifetime Duration `yaml:"token_lifetime"`
	// ClockSkewWarning is the PLC clock offset that is worth a warning.
	ClockSkewWarning Duration `yaml:"clock_skew_warning"`
	// Mode is how the tags are read: subscribe (default) or poll, every
	// PollInterval; a tag may say otherwise (plcmodes.go).
	Mode         string   `yaml:"mode"`
	PollInterval Duration `yaml:"poll_interval"`
	// Reverse makes the PLC dial the agent (reverse connect).
	Reverse *Reverse `yaml:"reverse"`
	// History fills gaps from the PLC's history after a reconnect.
	History History `yaml:"history"`
	// Commands are the writes and method calls taken from MQTT (commands.go).
	Commands Commands `yaml:"commands"`
	// Heartbeat republishes a tag's value unchanged for this long (0: off);
	// a tag may set its own. HeartbeatValue is last or last_good.
	Heartbeat      Duration `yaml:"heartbeat"`
	HeartbeatValue string   `yaml:"heartbeat_value"`
	// Events are event subscriptions (alarms and conditions among them).
	Events []EventStream `yaml:"events"`
	Tags   []Tag         `yaml:"tags"`

	// CertGuard confines the certificate and key files of this PLC to
	// agent.allowed_cert_dirs when they are opened: load them with
	// CertGuard.LoadKeyPair, which checks the file actually opened.
	CertGuard certs.Guard `yaml:"-"`
}

// Security selects the secure channel's policy and mode, the agent's
// certificate, and how the server's certificate is trusted.
type Security struct {
	Policy                 string     `yaml:"policy"`
	Mode                   string     `yaml:"mode"`
	CertificateFile        string     `yaml:"certificate_file"`
	KeyFile                string     `yaml:"key_file"`
	PKIDir                 string     `yaml:"pki_dir"`
	Trust                  string     `yaml:"trust"`
	TrustedFingerprints    []string   `yaml:"trusted_fingerprints"`
	AutoAccept             AutoAccept `yaml:"auto_accept"`
	VerifyHostname         bool       `yaml:"verify_hostname"`
	AllowUnknownRevocation bool       `yaml:"allow_unknown_revocation"`
	AllowSHA1              bool       `yaml:"allow_sha1"`
	AllowDeprecated        bool       `yaml:"allow_deprecated"`
	AllowNone              bool       `yaml:"allow_none"`
	// AcceptedHostnames are names the server certificate may carry instead
	// of the endpoint's host, for the host-name check.
	AcceptedHostnames []string `yaml:"accepted_hostnames"`
}

// Auth is the user identity presented when activating the session.
type Auth struct {
	Username        string `yaml:"username"`
	PasswordEnv     string `yaml:"password_env"`
	PasswordFile    string `yaml:"password_file"`
	CertificateFile string `yaml:"certificate_file"`
	KeyFile         string `yaml:"key_file"`
	// AllowPlaintextPassword lets the password go out unencrypted when the
	// endpoint's user token policy asks for none; only with security policy None.
	AllowPlaintextPassword bool `yaml:"allow_plaintext_password"`

	// Password is resolved from PasswordEnv or PasswordFile at load time.
	Password Secret `yaml:"-"`
}

// Reconnect bounds the exponential backoff between connection attempts.
type Reconnect struct {
	Min Duration `yaml:"min"`
	Max Duration `yaml:"max"`
}

// Tag is one node subscribed on a PLC. Zero-valued overrides inherit the PLC's setting.
type Tag struct {
	Name               string    `yaml:"name"`
	Node               NodeID    `yaml:"node"`
	SamplingInterval   Duration  `yaml:"sampling_interval"`
	QueueSize          uint32    `yaml:"queue_size"`
	PublishingInterval Duration  `yaml:"publishing_interval"`
	Deadband           *Deadband `yaml:"deadband"`
	Topic              string    `yaml:"topic"`
	Mode               string    `yaml:"mode"`
	PollInterval       Duration  `yaml:"poll_interval"`
	// Writable lets commands from MQTT write the tag, within Write.
	Writable bool         `yaml:"writable"`
	Write    *WriteLimits `yaml:"write"`
	// Heartbeat republishes the value when unchanged this long (default the PLC's).
	Heartbeat Duration `yaml:"heartbeat"`
}

// Deadband filters data changes smaller than Value (absolute, or percent of the EU range).
type Deadband struct {
	Type  string  `yaml:"type"`
	Value float64 `yaml:"value"`
}

// Secret is a password or token; it never prints its value.
type Secret string

func (Secret) String() string   { return "[redacted]" }
func (Secret) GoString() string { return "[redacted]" }

// MarshalText keeps the value out of JSON and YAML dumps and structured logs.
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// Reveal returns the secret's value, for handing to a client library only.
func (s Secret) Reveal() string { return string(s) }
