// Command benchrun is the benchmark harness behind scripts/bench/run: it
// starts a private Mosquitto, N simulated PLCs (scripts/plcsim) and
// tagbridge on free loopback ports, subscribes to every value tagbridge
// publishes, checks the Int32 counters for gaps and duplicates, and prints a
// table of medians over several runs: values/s delivered, values lost,
// duplicates, tagbridge CPU time per value, its peak RSS, latency from the
// value's source timestamp to its arrival, and the time from tagbridge's
// start until every tag has delivered its first value.
//
// It expects the binaries tagbridge and plcsim in -bin (scripts/bench/run
// builds them). Every child runs in a process group of its own and is
// stopped when a run ends, on SIGINT or SIGTERM, and killed by the kernel
// should benchrun die (Pdeathsig).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// scenario is one workload: PLCs × tags, every tag changing once per interval.
type scenario struct {
	name     string
	plcs     int
	tags     int
	interval time.Duration
	// startup: measure only the start, until every tag has delivered its
	// first value; no warm-up, no measured window.
	startup bool
}

// offered is the number of value changes per second the PLCs produce.
func (sc scenario) offered() float64 {
	return float64(sc.plcs*sc.tags) / sc.interval.Seconds()
}

var scenarios = map[string]scenario{
	"S1": {name: "S1", plcs: 1, tags: 1000, interval: 100 * time.Millisecond},
	"S2": {name: "S2", plcs: 10, tags: 1000, interval: 100 * time.Millisecond},
	"S3": {name: "S3", plcs: 10, tags: 10000, interval: time.Second},
	"S4": {name: "S4", plcs: 10, tags: 10000, interval: time.Second, startup: true},
}

// Publish modes: one message per value, or mqtt.batch (one JSON array per
// PLC and publish cycle).
const (
	modeValue = "value"
	modeBatch = "batch"
)

// Builds: the tagbridge under test, and the optional baseline (-baseline),
// measured in the same invocation so that both see the same machine load.
const (
	buildCurrent  = "current"
	buildBaseline = "baseline"
)

type options struct {
	bin          string // directory holding tagbridge and plcsim
	workdir      string // parent of each run's temporary directory
	mosquitto    string
	scenarios    []scenario
	modes        []string
	baseline     string        // directory holding a baseline tagbridge binary; "" for none
	publishing   time.Duration // tagbridge publishing_interval; 0: interval/5
	duration     time.Duration // measured window per run
	warmup       time.Duration // after every tag's first value, before measuring
	firstTimeout time.Duration // limit for every tag's first value
	runs         int
	clkTck       int
	keep         bool
	profile      string   // directory for tagbridge CPU profiles; "" for none
	logLevel     string   // tagbridge's agent.log_level
	env          []string // added to tagbridge's environment (-env)
}

// result is what one run measured.
type result struct {
	valuesPerSec float64
	lost, dups   int64
	cpuPerValue  float64 // µs of tagbridge CPU time per delivered value
	rssMB        float64 // tagbridge VmHWM
	rssEndMB     float64 // tagbridge VmRSS at the end of the window: the steady state
	p50, p99     float64 // ms from source_time to arrival
	firstAll     time.Duration
	seen, want   int // tags that delivered at least one value, tags configured
	// CPU use in the window, in % of one core: tagbridge, the broker, all
	// simulated PLCs, and this harness (the subscriber); the busiest PLC.
	cpuTB, cpuBroker, cpuPLCs, cpuSelf, cpuPLCMax float64
	// plcsimLate counts the simulated PLCs that logged a late change: then
	// the PLCs, not tagbridge, were the bottleneck.
	plcsimLate int
	// startCPU is tagbridge's CPU time in seconds from its start until
	// every tag's first value (S4).
	startCPU float64
}

func main() { os.Exit(run()) }

func run() int {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	builds := []string{buildCurrent}
	if opts.baseline != "" {
		builds = append(builds, buildBaseline)
	}
	var rows []*row
	failed := false
	for _, sc := range opts.scenarios {
		for _, mode := range opts.modes {
			byBuild := map[string]*row{}
			for _, b := range builds {
				byBuild[b] = &row{sc: sc, mode: mode, build: b}
				rows = append(rows, byBuild[b])
			}
			// Runs of the two builds alternate, so that both see the same
			// load from whatever else runs on the machine.
			for i := range opts.runs {
				for _, b := range builds {
					if ctx.Err() != nil {
						break
					}
					what := fmt.Sprintf("%s %s %s run %d/%d", sc.name, mode, b, i+1, opts.runs)
					logf("%s: %d PLC(s) × %d tags every %s", what, sc.plcs, sc.tags, sc.interval)
					res, err := runOnce(ctx, opts, sc, mode, b, i)
					if err != nil {
						logf("%s: %v", what, err)
						failed = true
						continue
					}
					if sc.startup {
						logf("%s: all tags after %s (%d/%d), tagbridge %.2f s CPU, %.1f MB peak RSS",
							what, fmtFirst(res), res.seen, res.want, res.startCPU, res.rssMB)
					} else {
						logf("%s: %.0f values/s, %d lost, %d duplicates, %.2f µs CPU/value, %.1f MB peak RSS, %.1f MB RSS at the end, p50 %.1f ms, p99 %.1f ms, all tags after %s (%d/%d); CPU %% of one core: tagbridge %.0f, mosquitto %.0f, plcsim %.0f (busiest %.0f), subscriber %.0f",
							what, res.valuesPerSec, res.lost, res.dups, res.cpuPerValue, res.rssMB, res.rssEndMB, res.p50, res.p99, fmtFirst(res), res.seen, res.want,
							res.cpuTB, res.cpuBroker, res.cpuPLCs, res.cpuPLCMax, res.cpuSelf)
					}
					if res.plcsimLate > 0 {
						logf("%s: %d simulated PLC(s) were late with their changes or dropped notifications: the PLCs, starved of CPU, limited this run", what, res.plcsimLate)
					}
					byBuild[b].results = append(byBuild[b].results, res)
				}
			}
		}
	}

	fmt.Printf("tagbridge benchmark: medians of %d runs, %s measured after warm-up; publishing_interval %s\n", opts.runs, opts.duration, pubLabel(opts))
	printTable(os.Stdout, rows, opts.baseline != "")
	if ctx.Err() != nil {
		logf("interrupted: the table holds only the runs that finished")
		return 130
	}
	if failed {
		return 1
	}
	return 0
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("benchrun", flag.ContinueOnError)
	var o options
	var list, modes string
	var plcs, tags int
	var interval time.Duration
	fs.StringVar(&o.bin, "bin", "", "directory with the tagbridge and plcsim binaries (required)")
	fs.StringVar(&o.workdir, "workdir", os.TempDir(), "directory for each run's files")
	fs.StringVar(&o.mosquitto, "mosquitto", "/usr/sbin/mosquitto", "the mosquitto broker binary")
	fs.StringVar(&list, "scenario", "S1", "scenarios to run, comma separated: S1 (1 PLC × 1000 tags / 100ms), S2 (10 PLCs × 1000 tags / 100ms), S3 (10 PLCs × 10000 tags / 1s), S4 (start-up of 10 PLCs × 10000 tags)")
	fs.StringVar(&modes, "mode", modeValue, "publish modes, comma separated: value (one message per value), batch (mqtt.batch: one JSON array per PLC and publish cycle)")
	fs.StringVar(&o.baseline, "baseline", "", "directory with a baseline tagbridge binary, run alternately with -bin's in the same conditions; the table adds ratios")
	fs.IntVar(&plcs, "plcs", 0, "number of simulated PLCs (overrides the scenario's)")
	fs.IntVar(&tags, "tags", 0, "tags per PLC (overrides the scenario's)")
	fs.DurationVar(&interval, "interval", 0, "change interval of every tag (overrides the scenario's)")
	fs.DurationVar(&o.publishing, "publishing", 0, "tagbridge publishing_interval (default: interval/5, at least 10ms)")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "measured time per run, after warm-up")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "time after every tag's first value before measuring")
	fs.DurationVar(&o.firstTimeout, "first-timeout", 60*time.Second, "how long to wait for every tag's first value")
	fs.IntVar(&o.runs, "runs", 3, "runs per scenario; the table shows medians")
	fs.IntVar(&o.clkTck, "clk-tck", 100, "kernel clock ticks per second (getconf CLK_TCK)")
	fs.BoolVar(&o.keep, "keep", false, "keep each run's directory (config, logs)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "tagbridge's agent.log_level (debug to trace a run kept with -keep; debug logs nothing per value)")
	fs.Func("env", "`NAME=VALUE` added to tagbridge's environment, e.g. GOMEMLIMIT=64MiB (may repeat)", func(v string) error {
		if !strings.Contains(v, "=") {
			return errors.New("want NAME=VALUE")
		}
		o.env = append(o.env, v)
		return nil
	})
	fs.StringVar(&o.profile, "cpuprofile-dir", "", "write CPU and heap profiles of tagbridge for every run into this directory (TAGBRIDGE_CPUPROFILE, TAGBRIDGE_MEMPROFILE)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: benchrun -bin DIR [flags]\n\nRuns tagbridge benchmark scenarios and prints a table of medians.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.bin == "" {
		return o, errors.New("-bin is required")
	}
	if o.runs < 1 || o.duration <= 0 || o.clkTck <= 0 || plcs < 0 || tags < 0 || interval < 0 {
		return o, errors.New("-runs, -duration, -clk-tck must be positive; -plcs, -tags, -interval not negative")
	}
	for name := range strings.SplitSeq(list, ",") {
		sc, ok := scenarios[strings.ToUpper(strings.TrimSpace(name))]
		if !ok {
			return o, fmt.Errorf("-scenario: unknown scenario %q (S1, S2, S3, S4)", name)
		}
		if plcs > 0 {
			sc.plcs = plcs
		}
		if tags > 0 {
			sc.tags = tags
		}
		if interval > 0 {
			sc.interval = interval
		}
		if plcs > 0 || tags > 0 || interval > 0 {
			sc.name += "*" // modified by flags
		}
		o.scenarios = append(o.scenarios, sc)
	}
	for m := range strings.SplitSeq(modes, ",") {
		m = strings.ToLower(strings.TrimSpace(m))
		if m != modeValue && m != modeBatch {
			return o, fmt.Errorf("-mode: unknown publish mode %q (value, batch)", m)
		}
		if !slices.Contains(o.modes, m) {
			o.modes = append(o.modes, m)
		}
	}
	return o, nil
}

func pubLabel(o options) string {
	if o.publishing > 0 {
		return o.publishing.String()
	}
	return "interval/5"
}

func publishingFor(o options, sc scenario) time.Duration {
	if o.publishing > 0 {
		return o.publishing
	}
	return max(sc.interval/5, 10*time.Millisecond)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...)
}

func fmtFirst(r result) string {
	if r.seen < r.want {
		return "never"
	}
	return r.firstAll.Round(time.Millisecond).String()
}

// runOnce starts everything for one run of a scenario, measures and stops it all.
func runOnce(ctx context.Context, o options, sc scenario, mode, build string, idx int) (res result, err error) {
	dir, err := os.MkdirTemp(o.workdir, fmt.Sprintf("%s-%s-%s-run%d-", strings.TrimSuffix(sc.name, "*"), mode, build, idx+1))
	if err != nil {
		return res, err
	}
	if o.keep {
		logf("files of this run in %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	var procs []*proc
	defer func() {
		// tagbridge first (it was started last), then the PLCs, then the broker.
		for _, p := range slices.Backward(procs) {
			p.stop(15 * time.Second)
		}
	}()

	// The broker.
	port, err := freePort()
	if err != nil {
		return res, err
	}
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n", port)
	if os.Getuid() == 0 {
		conf += "user root\n" // else it would switch to the user mosquitto, who cannot read dir
	}
	if err := os.WriteFile(filepath.Join(dir, "mosquitto.conf"), []byte(conf), 0o600); err != nil {
		return res, err
	}
	broker, err := startProc("mosquitto", filepath.Join(dir, "mosquitto.log"), nil, o.mosquitto, "-c", filepath.Join(dir, "mosquitto.conf"))
	if err != nil {
		return res, err
	}
	procs = append(procs, broker)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitForPort(ctx, addr, 10*time.Second, broker); err != nil {
		return res, fmt.Errorf("mosquitto: %w", err)
	}

	// The PLCs.
	plcsim := filepath.Join(o.bin, "plcsim")
	endpoints := make([]string, sc.plcs)
	for i := range sc.plcs {
		ready := make(chan string, 1)
		p, err := startProc(fmt.Sprintf("plcsim%d", i), filepath.Join(dir, fmt.Sprintf("plcsim%d.log", i)), ready,
			plcsim, "-tags", strconv.Itoa(sc.tags), "-interval", sc.interval.String(), "-port", "0")
		if err != nil {
			return res, err
		}
		procs = append(procs, p)
		select {
		case line := <-ready:
			ep, ok := strings.CutPrefix(line, "READY ")
			if !ok {
				return res, fmt.Errorf("plcsim%d: unexpected first line %q", i, line)
			}
			endpoints[i] = ep
		case <-p.done:
			return res, fmt.Errorf("plcsim%d exited before READY: %v (log %s)", i, p.err, p.logPath)
		case <-time.After(30 * time.Second):
			return res, fmt.Errorf("plcsim%d: no READY within 30 s", i)
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}

	// The configuration.
	tagList, err := exec.CommandContext(ctx, plcsim, "-tags", strconv.Itoa(sc.tags), "-print-tags").Output()
	if err != nil {
		return res, fmt.Errorf("plcsim -print-tags: %w", err)
	}
	cfg := writeConfig(dir, port, endpoints, string(tagList), publishingFor(o, sc), sc.interval, mode == modeBatch, o.logLevel)
	cfgPath := filepath.Join(dir, "tagbridge.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return res, err
	}

	// Our subscriber, connected before tagbridge starts.
	st := newStats(sc.plcs * sc.tags)
	sub, err := subscribe(addr, fmt.Sprintf("bench-sub-%d-%d", os.Getpid(), idx), st)
	if err != nil {
		return res, err
	}
	defer sub.Disconnect(250)

	// tagbridge.
	t0 := time.Now()
	bin := o.bin
	if build == buildBaseline {
		bin = o.baseline
	}
	env := slices.Clone(o.env)
	if o.profile != "" {
		// A CPU profile of the whole run and heap profiles while it runs (profile.go).
		base := filepath.Join(o.profile, fmt.Sprintf("%s-%s-%s-run%d", strings.TrimSuffix(sc.name, "*"), mode, build, idx+1))
		env = append(env, "TAGBRIDGE_CPUPROFILE="+base+".pprof", "TAGBRIDGE_MEMPROFILE="+base+".heap")
	}
	tb, err := startProcEnv("tagbridge", filepath.Join(dir, "tagbridge.log"), nil, env, filepath.Join(bin, "tagbridge"), "run", "-c", cfgPath)
	if err != nil {
		return res, err
	}
	procs = append(procs, tb)

	// Every tag's first value, then the warm-up.
	deadline := time.Now().Add(o.firstTimeout)
	for st.seenCount() < st.want && time.Now().Before(deadline) {
		if err := sleep(ctx, 50*time.Millisecond, tb); err != nil {
			return res, err
		}
	}
	if sc.startup {
		return startupResult(o, st, tb, procs, t0)
	}
	if err := sleep(ctx, o.warmup, tb); err != nil {
		return res, err
	}

	// The measured window.
	cpu0, err := cpuTicks(tb.cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	others0 := otherTicks(procs)
	w0 := time.Now()
	st.window(true)
	if err := sleep(ctx, o.duration, tb); err != nil {
		return res, err
	}
	st.window(false)
	elapsed := time.Since(w0)
	cpu1, err := cpuTicks(tb.cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	others1 := otherTicks(procs)
	pct := func(ticks int64) float64 {
		return float64(ticks) / float64(o.clkTck) / elapsed.Seconds() * 100
	}
	res.cpuTB = pct(cpu1 - cpu0)
	res.cpuBroker = pct(others1.broker - others0.broker)
	res.cpuPLCs = pct(others1.plcs - others0.plcs)
	res.cpuSelf = pct(others1.self - others0.self)
	res.cpuPLCMax = pct(maxDelta(others0.plc, others1.plc))
	res.plcsimLate = plcsimLate(procs)
	hwm, err := procStatus(tb.cmd.Process.Pid, "VmHWM")
	if err != nil {
		return res, err
	}
	rss, err := procStatus(tb.cmd.Process.Pid, "VmRSS")
	if err != nil {
		return res, err
	}
	res.rssEndMB = float64(rss) / 1024

	st.mu.Lock()
	defer st.mu.Unlock()
	res.want = st.want
	res.seen = len(st.first)
	res.firstAll = st.lastFirst.Sub(t0)
	res.valuesPerSec = float64(st.windowCount) / elapsed.Seconds()
	res.lost, res.dups = st.gaps, st.dups
	if st.windowCount > 0 {
		res.cpuPerValue = float64(cpu1-cpu0) * 1e6 / float64(o.clkTck) / float64(st.windowCount)
	}
	res.rssMB = float64(hwm) / 1024
	slices.Sort(st.latencies)
	res.p50 = percentile(st.latencies, 0.50)
	res.p99 = percentile(st.latencies, 0.99)
	if st.parseErrs > 0 {
		logf("%d messages could not be parsed, first: %s", st.parseErrs, st.firstParseErr)
	}
	logDups(st, t0)
	if n := brokerReconnects(broker.logPath); n > 0 {
		logf("tagbridge connected to the broker %d more time(s): what a reconnect resends counts as duplicates", n)
	}
	return res, nil
}

// brokerReconnects counts tagbridge's connections to the broker after its
// first, from Mosquitto's log.
func brokerReconnects(logPath string) int {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return 0
	}
	n := 0
	for line := range bytes.Lines(b) {
		if bytes.Contains(line, []byte("New client connected")) && bytes.Contains(line, []byte(" as tagbridge-")) {
			n++
		}
	}
	return max(0, n-1)
}

// logDups names the first duplicates: tag, values, arrival after
// tagbridge's start, and whether before every tag's first value.
func logDups(st *stats, t0 time.Time) {
	for _, d := range st.firstDups {
		logf("duplicate: %s %d after %d, %.3f s after start (all first values at %.3f s), in window %t; in message %d of %d values, the value before in message %d",
			strings.Replace(d.key, `","tag":"`, "/", 1), d.value, d.prev, d.arrived.Sub(t0).Seconds(), st.lastFirst.Sub(t0).Seconds(), d.inWindow, d.msg, d.msgValues, d.prevMsg)
	}
}

// startupResult is the result of a start-up run (S4): time until every
// tag's first value, tagbridge's CPU time and peak RSS until then.
func startupResult(o options, st *stats, tb *proc, procs []*proc, t0 time.Time) (res result, err error) {
	cpu, err := cpuTicks(tb.cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	hwm, err := procStatus(tb.cmd.Process.Pid, "VmHWM")
	if err != nil {
		return res, err
	}
	res.startCPU = float64(cpu) / float64(o.clkTck)
	res.rssMB = float64(hwm) / 1024
	res.plcsimLate = plcsimLate(procs)
	st.mu.Lock()
	defer st.mu.Unlock()
	res.want = st.want
	res.seen = len(st.first)
	res.firstAll = st.lastFirst.Sub(t0)
	res.lost, res.dups = st.gaps, st.dups
	logDups(st, t0)
	return res, nil
}

// plcsimLate counts the simulated PLCs whose log says a change came late
// or notifications were dropped (a subscription took none for 250 ms):
// values lost then may be lost by the simulator, under CPU starvation.
func plcsimLate(procs []*proc) int {
	n := 0
	for _, p := range procs {
		if !strings.HasPrefix(p.name, "plcsim") {
			continue
		}
		b, err := os.ReadFile(p.logPath)
		if err == nil && (bytes.Contains(b, []byte("changes come late")) || bytes.Contains(b, []byte("dropping them"))) {
			n++
		}
	}
	return n
}

func maxDelta(a, b []int64) int64 {
	var m int64
	for i := range min(len(a), len(b)) {
		m = max(m, b[i]-a[i])
	}
	return m
}

func writeConfig(dir string, port int, endpoints []string, tagList string, publishing, interval time.Duration, batch bool, logLevel string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by scripts/bench.
agent:
  id: bench
  log_level: %s
  pki_dir: %s
  spool_dir: %s
  allowed_cert_dirs: [%s]
mqtt:
  url: tcp://127.0.0.1:%d
  qos: 1
  batch: %t
plcs:
`, logLevel, filepath.Join(dir, "pki"), filepath.Join(dir, "spool"), filepath.Join(dir, "certs"), port, batch)
	indented := "    " + strings.ReplaceAll(strings.TrimRight(tagList, "\n"), "\n", "\n    ") + "\n"
	for i, ep := range endpoints {
		fmt.Fprintf(&b, "  - name: plc%02d\n    endpoint: %s\n    publishing_interval: %s\n    sampling_interval: %s\n", i, ep, publishing, interval)
		b.WriteString(indented)
	}
	return b.String()
}
