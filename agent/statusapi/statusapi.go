// Package statusapi serves the agent's health, status and metrics over
// HTTP, on a TCP address or a unix socket, behind a bearer token:
//
//	GET /healthz  200 "ok", or 503 with one reason per line (text/plain)
//	GET /status   the Status document as JSON
//	GET /metrics  the same as Prometheus metrics (prefix tagbridge_)
//
// Every answer is built from a snapshot taken when it is asked for; the
// collectors and the publisher keep no extra counters for it.
package statusapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promcollectors "github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/command"
	"github.com/tagbridge/tagbridge/config"
)

// Source gives the live status of every PLC entry and of the broker link.
type Source interface {
	PLCs() []collectors.PLCState
	Broker() Broker
}

// CommandSource is a Source that also reports the commands taken from
// MQTT: the latest, and the count of each result.
type CommandSource interface {
	Commands() (recent []command.Record, results map[string]uint64)
}

// Commands is the write-back part of the status.
type Commands struct {
	Results map[string]uint64 `json:"results"` // by result status name
	Recent  []command.Record  `json:"recent"`  // the latest, oldest first
}

// Broker is the MQTT side of the status.
type Broker struct {
	Connected   bool   `json:"connected"`
	InFlight    int    `json:"in_flight"`    // published, not yet acknowledged
	SpoolBytes  int64  `json:"spool_bytes"`  // what the values not yet acknowledged take in the spool
	SpoolValues uint64 `json:"spool_values"` // values in the spool not yet acknowledged
	Dropped     uint64 `json:"dropped"`      // values deleted from the spool unsent, since start
	Published   uint64 `json:"published"`
	Failed      uint64 `json:"failed"`
	Resent      uint64 `json:"resent"`
	// ByPLC counts published, failed and dropped by PLC entry (metrics.go).
	ByPLC map[string]PublishCounts `json:"by_plc,omitempty"`

	// SpoolMaxBytes is the spool's bound: older values are dropped
	// beyond it.
	SpoolMaxBytes int64 `json:"spool_max_bytes"`
	// ConnectAttempts counts connections to the broker tried; Reconnects
	// those established after the first.
	ConnectAttempts uint64 `json:"connect_attempts"`
	Reconnects      uint64 `json:"reconnects"`
	// PublishLatency is how long values took from the intake to the
	// broker's acknowledgement; /metrics only.
	PublishLatency Histogram `json:"-"`

	// OldestUnsentSeconds is how long the oldest value not yet
	// acknowledged has waited (backlog.go).
	OldestUnsentSeconds float64 `json:"oldest_unsent_seconds"`
}

// Histogram is a distribution of durations in seconds: cumulative
// counts by upper bound, with their count and sum.
type Histogram struct {
	Buckets map[float64]uint64
	Count   uint64
	Sum     float64
}

// Status is the document served at /status.
type Status struct {
	Agent    string                `json:"agent"`
	Time     time.Time             `json:"time"`
	Healthy  bool                  `json:"healthy"`
	Problems []string              `json:"problems,omitempty"` // the reasons /healthz gives
	PLCs     []collectors.PLCState `json:"plcs"`
	Broker   Broker                `json:"broker"`
	Commands *Commands             `json:"commands,omitempty"` // none taken: omitted

	Certificates []Certificate `json:"certificates,omitempty"`
}

// dropWindow is how long values dropped from the spool keep the agent
// unhealthy after they were last seen dropped.
const dropWindow = time.Minute

// shutdownTimeout bounds how long Run waits for requests under way.
const shutdownTimeout = 2 * time.Second

// Bounds on what a client may hold: a few operators and a Prometheus
// server need a handful of connections, each sending a small request
// promptly. A client that sends no complete request within
// headerTimeout, or sits idle for idleTimeout, is disconnected.
const (
	maxConns       = 64
	maxHeaderBytes = 8 << 10
	headerTimeout  = 2 * time.Second
	idleTimeout    = 10 * time.Second
)

// Server answers status requests on one listener.
type Server struct {
	addr  string
	sock  bool
	ln    *limitListener
	srv   *http.Server
	agent string
	token [sha256.Size]byte // the token's hash: compared at a fixed length, it does not leak its length
	src   Source
	log   zerolog.Logger
	mux   *http.ServeMux // the handlers without the bearer token check
	// webConfig is the exporter-toolkit web config file, if any (webconfig.go).
	webConfig string

	// version and started, for build_info and the reload metrics.
	version string
	started time.Time

	backlog       backlog       // the oldest waiting value's age (backlog.go)
	maxBacklogAge time.Duration // health fails beyond it; 0: never
	allTags       bool          // health fails while a tag is refused

	mu          sync.Mutex
	seenDropped uint64    // Broker.Dropped at the latest look
	droppedAt   time.Time // when it was last seen growing
}

// New listens on addr (host:port, or an absolute unix socket path, see
// config.StatusSocket) so that a busy port fails at start; Run serves.
func New(addr string, token config.Secret, agentID string, src Source, log zerolog.Logger) (*Server, error) {
	if token.Reveal() == "" {
		return nil, errors.New("no token: refusing to serve status unprotected")
	}
	s := &Server{
		addr:  addr,
		sock:  config.StatusSocket(addr),
		agent: agentID,
		token: sha256.Sum256([]byte(token.Reveal())),
		src:   src,
		log:   log,
	}
	s.started = time.Now()
	var ln net.Listener
	var err error
	if s.sock {
		ln, err = listenUnix(addr)
	} else {
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	s.ln = newLimitListener(ln, maxConns, func() {
		log.Warn().Int("limit", maxConns).Msg("status connections at their limit: refusing more until half are closed")
	})

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		metrics{s},
		promcollectors.NewGoCollector(),
		promcollectors.NewProcessCollector(promcollectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /status", s.status)
	mux.HandleFunc("POST /reconnect/{plc}", s.reconnect)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: promLog{log}}))
	s.mux = mux
	s.srv = &http.Server{
		Handler:           s.auth(mux),
		ReadHeaderTimeout: headerTimeout,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// Without it net/http writes to the standard logger, which main
		// bridges as the OPC UA library's.
		ErrorLog: stdlog.New(httpLog{log}, "", 0),
	}
	return s, nil
}

// Addr is the address listened on: host:port, with the port chosen when
// it was 0, or the socket path.
func (s *Server) Addr() string {
	if s.sock {
		return s.addr
	}
	return s.ln.Addr().String()
}

// Run serves until ctx ends, then lets requests under way finish briefly,
// closes the listener and removes the socket.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info().Str("listen", s.Addr()).Msg("serving /healthz, /status and /metrics")
	served := make(chan error, 1)
	go func() { served <- s.serve() }()
	sampled := make(chan struct{})
	sctx, stopSampling := context.WithCancel(ctx)
	go func() { defer close(sampled); s.sampleBacklog(sctx) }()
	defer func() { stopSampling(); <-sampled }()
	var err error
	select {
	case err = <-served:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if s.srv.Shutdown(sctx) != nil {
			s.srv.Close()
		}
		err = <-served
	}
	if s.sock {
		// Our own socket; a listener closed by Shutdown removed it already.
		if rerr := os.Remove(s.addr); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			s.log.Warn().Err(rerr).Msg("remove status socket")
		}
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve %s: %w", s.Addr(), err)
}

// listenUnix creates the socket at path with mode 0660, replacing a stale
// one left by an agent that did not stop cleanly. A live socket or a
// file that is not a socket is left alone.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by another process (another agent running?)", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("check existing socket %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// Group access lets an operator in the service's group run
	// tagbridge status; the token still guards every request.
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// auth lets a request through only with "Authorization: Bearer <token>".
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], s.token[:]) != 1 {
			s.log.Debug().Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Bool("token_given", ok).Msg("status request refused: bad or missing token")
			w.Header().Set("WWW-Authenticate", `Bearer realm="tagbridge"`)
			// A client without the token gets nothing more on this connection.
			w.Header().Set("Connection", "close")
			http.Error(w, "unauthorized: send Authorization: Bearer <token from agent.status_token_file>", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Snapshot takes the status now.
func (s *Server) Snapshot() Status {
	now := time.Now()
	st := Status{Agent: s.agent, Time: now, PLCs: s.src.PLCs(), Broker: s.src.Broker()}
	if st.PLCs == nil {
		st.PLCs = []collectors.PLCState{}
	}
	if cs, ok := s.src.(CommandSource); ok {
		if recent, results := cs.Commands(); len(results) > 0 {
			st.Commands = &Commands{Results: results, Recent: recent}
		}
	}
	if cs, ok := s.src.(CertificateSource); ok {
		st.Certificates = cs.Certificates()
	}
	if cs, ok := s.src.(CommandSource); ok {
		if recent, results := cs.Commands(); len(results) > 0 {
			st.Commands = &Commands{Results: results, Recent: recent}
		}
	}
	st.Broker.OldestUnsentSeconds = s.backlog.observe(now, st.Broker).Seconds()
	st.Problems = Problems(st.PLCs, st.Broker, s.droppingSince(st.Broker.Dropped, now))
	if p := s.backlogProblem(time.Duration(st.Broker.OldestUnsentSeconds * float64(time.Second))); p != "" {
		st.Problems = append(st.Problems, p)
	}
	st.Problems = append(st.Problems, s.tagProblems(st.PLCs)...)
	st.Healthy = len(st.Problems) == 0
	return st
}

// droppingSince returns how many values were dropped since the latest
// look, or within dropWindow before it.
func (s *Server) droppingSince(dropped uint64, now time.Time) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if dropped > s.seenDropped {
		s.seenDropped, s.droppedAt = dropped, now
	}
	if !s.droppedAt.IsZero() && now.Sub(s.droppedAt) < dropWindow {
		return s.seenDropped
	}
	return 0
}

// Problems lists why the agent is unhealthy: a PLC entry that does not
// stream, a broker that is not connected, values being dropped (recent,
// the number dropped so far when some were dropped lately, else 0).
func Problems(plcs []collectors.PLCState, b Broker, recent uint64) []string {
	var out []string
	for _, p := range plcs {
		if p.State == collectors.StateStreaming {
			continue
		}
		msg := fmt.Sprintf("plc %s: %s", p.PLC, p.State)
		if p.Reason != "" {
			msg += ": " + p.Reason
		}
		out = append(out, msg)
	}
	if !b.Connected {
		out = append(out, "broker: not connected")
	}
	if recent > 0 {
		out = append(out, fmt.Sprintf("broker: values are being dropped from the spool (%d since start)", recent))
	}
	return out
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	st := s.Snapshot()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if st.Healthy {
		fmt.Fprintln(w, "ok")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	for _, p := range st.Problems {
		fmt.Fprintln(w, p)
	}
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s.Snapshot()); err != nil {
		s.log.Debug().Err(err).Msg("write status")
	}
}

// httpLog sends net/http's server errors to our logger, one line each.
type httpLog struct{ log zerolog.Logger }

func (l httpLog) Write(p []byte) (int, error) {
	l.log.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// promLog sends promhttp's errors to our logger.
type promLog struct{ log zerolog.Logger }

func (l promLog) Println(v ...any) {
	l.log.Warn().Msg(strings.TrimSpace(fmt.Sprintln(v...)))
}
