package config

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// Read modes of a PLC or tag.
const (
	ModeSubscribe = "subscribe"
	ModePoll      = "poll"
)

// Defaults of the settings in this file.
const (
	DefaultPollInterval     = time.Second
	DefaultHistoryMaxWindow = time.Hour
)

// Reverse is a PLC that connects to the agent (OPC UA reverse connect,
// Part 6 7.1.3): the agent listens on Listen and takes the connection whose
// ReverseHello names ServerURI. Endpoint stays the URL the session asks
// for (and checks the server certificate's host against).
type Reverse struct {
	Listen    string `yaml:"listen"`
	ServerURI string `yaml:"server_uri"`
}

// History is the gap fill from the PLC's history: after a reconnect that
// lost values, tags the server historizes are read back for the gap, up to
// MaxWindow before the reconnect.
type History struct {
	FillGaps  *bool    `yaml:"fill_gaps"` // default true
	MaxWindow Duration `yaml:"max_window"`

	// StateDir keeps the time of each tag's last value handed on, so that
	// a gap across a restart of the agent is filled too: agent.spool_dir.
	StateDir string `yaml:"-"`
}

// Enabled reports whether gaps are filled.
func (h History) Enabled() bool { return h.FillGaps == nil || *h.FillGaps }

// Polled reports whether the tag is read cyclically rather than subscribed.
func (t Tag) Polled() bool { return t.Mode == ModePoll }

func (p *PLC) applyModeDefaults() {
	orString(&p.Mode, ModeSubscribe)
	orDuration(&p.PollInterval, DefaultPollInterval)
	orDuration(&p.History.MaxWindow, DefaultHistoryMaxWindow)
	for j := range p.Tags {
		t := &p.Tags[j]
		orString(&t.Mode, p.Mode)
		orDuration(&t.PollInterval, p.PollInterval.Duration())
	}
}

func (v *validator) plcModes(path string, p *PLC) {
	modes := []string{ModeSubscribe, ModePoll}
	v.oneOf(path+".mode", p.Mode, "read mode", modes)
	if p.PollInterval <= 0 {
		v.add(path+".poll_interval", "must be greater than 0")
	}
	for j, t := range p.Tags {
		tp := fmt.Sprintf("%s.tags[%d]", path, j)
		v.oneOf(tp+".mode", t.Mode, "read mode", modes)
		if t.PollInterval <= 0 {
			v.add(tp+".poll_interval", "must be greater than 0")
		}
	}
	if p.History.MaxWindow <= 0 {
		v.add(path+".history.max_window", "must be greater than 0")
	}
	for i, h := range p.Security.AcceptedHostnames {
		if h == "" {
			v.add(fmt.Sprintf("%s.security.accepted_hostnames[%d]", path, i), "must not be empty")
		}
	}
	if r := p.Reverse; r != nil {
		host, port, err := net.SplitHostPort(r.Listen)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 {
			v.add(path+".reverse.listen", "%q is not a host:port to listen on (e.g. 0.0.0.0:4841)", r.Listen)
		} else if host != "" && net.ParseIP(host) == nil {
			v.add(path+".reverse.listen", "%q: listen on an IP address, not a host name", r.Listen)
		}
		if r.ServerURI == "" {
			v.add(path+".reverse.server_uri", "required: the PLC's ApplicationUri, which its ReverseHello carries")
		}
	}
}
