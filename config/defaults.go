package config

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/config/yamlfile"
)

// Defaults; config.example.yaml shows each of them.
const (
	DefaultLogLevel           = "info"
	DefaultLogFormat          = "json"
	DefaultCertDir            = "/etc/tagbridge/certs"
	DefaultPKIDir             = "/var/lib/tagbridge/pki"
	DefaultSpoolDir           = "/var/lib/tagbridge/spool"
	DefaultMQTTURL            = "tcp://127.0.0.1:1883"
	DefaultQoS                = 1
	DefaultKeepalive          = 30 * time.Second
	DefaultTopic              = "tagbridge/{agent}/{plc}/{tag}"
	DefaultBatchTopic         = "tagbridge/{agent}/{plc}"
	DefaultSpoolMaxBytes      = 256 << 20
	DefaultSpoolSyncInterval  = 100 * time.Millisecond
	DefaultMaxPacketSize      = 1 << 20
	DefaultSecurityPolicy     = "None"
	DefaultSecurityMode       = "None"
	DefaultCertificateFile    = DefaultCertDir + "/client-cert.pem" // as written by tagbridge certs create
	DefaultKeyFile            = DefaultCertDir + "/client-key.pem"
	DefaultTrust              = "full"
	DefaultReconnectMin       = time.Second
	DefaultReconnectMax       = 60 * time.Second
	DefaultPublishingInterval = time.Second
	DefaultSamplingInterval   = 100 * time.Millisecond
	DefaultQueueSize          = 10
	DefaultWatchdogIntervals  = 10
	DefaultClockSkewWarning   = 5 * time.Second
	DefaultTokenLifetime      = time.Hour
)

// DefaultStatusMaxBacklogAge is agent.status_max_backlog_age's default.
const DefaultStatusMaxBacklogAge = time.Minute

// applyDefaults fills every unset field, and gives each tag the effective
// values it inherits from its PLC. Tag.Topic stays "" (publish then uses mqtt.topic).
func (c *Config) applyDefaults() {
	a := &c.Agent
	orString(&a.LogLevel, DefaultLogLevel)
	orString(&a.LogFormat, DefaultLogFormat)
	if a.AllowedCertDirs == nil { // an explicit [] allows none
		a.AllowedCertDirs = []string{DefaultCertDir}
	}
	orString(&a.PKIDir, DefaultPKIDir)
	orString(&a.SpoolDir, DefaultSpoolDir)
	orString(&a.MemoryLimit, MemoryLimitAuto)
	if a.StatusMaxBacklogAge == 0 && !c.isSet("agent.status_max_backlog_age") { // 0s turns it off
		a.StatusMaxBacklogAge = Duration(DefaultStatusMaxBacklogAge)
	}

	m := &c.MQTT
	orString(&m.URL, DefaultMQTTURL)
	orString(&m.ClientID, "tagbridge-"+a.ID)
	// 0 is a valid QoS, so only a key absent from the file takes the default.
	if m.QoS == 0 && !c.isSet("mqtt.qos") {
		m.QoS = DefaultQoS
	}
	orDuration(&m.Keepalive, DefaultKeepalive)
	orString(&m.Topic, DefaultTopic)
	orString(&m.Payload, PayloadJSON)
	orString(&m.BatchTopic, DefaultBatchTopic)
	if m.Spool.MaxBytes == 0 {
		m.Spool.MaxBytes = DefaultSpoolMaxBytes
	}
	orDuration(&m.Spool.SyncInterval, DefaultSpoolSyncInterval)
	if m.MaxPacketSize == 0 {
		m.MaxPacketSize = DefaultMaxPacketSize
	}

	for i := range c.PLCs {
		p := &c.PLCs[i]
		sec := &p.Security
		orString(&sec.Policy, DefaultSecurityPolicy)
		switch sec.Policy {
		case "None":
			orString(&sec.Mode, DefaultSecurityMode)
		case "auto": // "" lets auto pick the mode too
		default:
			orString(&sec.Mode, "SignAndEncrypt")
		}
		orString(&sec.CertificateFile, DefaultCertificateFile)
		orString(&sec.KeyFile, DefaultKeyFile)
		orString(&sec.PKIDir, a.PKIDir)
		orString(&sec.Trust, DefaultTrust)
		if sec.AutoAccept == "" {
			sec.AutoAccept = "false"
		}
		if !c.isSet(fmt.Sprintf("plcs[%d].security.verify_hostname", i)) {
			sec.VerifyHostname = true
		}
		orDuration(&p.Reconnect.Min, DefaultReconnectMin)
		orDuration(&p.Reconnect.Max, DefaultReconnectMax)
		orDuration(&p.PublishingInterval, DefaultPublishingInterval)
		orDuration(&p.SamplingInterval, DefaultSamplingInterval)
		if p.QueueSize == 0 {
			p.QueueSize = DefaultQueueSize
		}
		if p.WatchdogIntervals == 0 {
			p.WatchdogIntervals = DefaultWatchdogIntervals
		}
		orDuration(&p.ClockSkewWarning, DefaultClockSkewWarning)
		orDuration(&p.TokenLifetime, DefaultTokenLifetime)
		p.CertGuard = certs.Guard{Dirs: a.AllowedCertDirs}
		p.applyModeDefaults()
		p.History.StateDir = a.SpoolDir
		p.applyHeartbeatDefaults()
		p.Commands.applyDefaults()
		for j := range p.Tags {
			t := &p.Tags[j]
			orDuration(&t.SamplingInterval, p.SamplingInterval.Duration())
			orDuration(&t.PublishingInterval, p.PublishingInterval.Duration())
			if t.QueueSize == 0 {
				t.QueueSize = p.QueueSize
			}
			orString(&t.Name, defaultTagName(t.Node))
		}
	}
}

// defaultTagName is a node id's identifier without its type prefix, made
// safe for one MQTT topic level: ns=2;s=Line1.Temp -> Line1.Temp. Siemens
// TIA Portal quotes each part of its string ids ("DB_Press"."Temp"): the
// quotes go, DB_Press.Temp.
func defaultTagName(n NodeID) string {
	id := n.Identifier()
	if len(id) < 2 || id[1] != '=' {
		return ""
	}
	if id[0] == 's' {
		id = strings.ReplaceAll(id, `"`, "")
	}
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '+' || r == '#' || r == 0 || unicode.IsSpace(r) {
			return '_'
		}
		return r
	}, id[2:])
}

// isSet reports whether path is written in the file with a non-null value.
func (c *Config) isSet(path string) bool { return yamlfile.IsSet(c.root, path) }

func orString(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

func orDuration(d *Duration, def time.Duration) {
	if *d == 0 {
		*d = Duration(def)
	}
}
