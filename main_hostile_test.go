package main

// Issue 20, findings 1 and 2, at the level of the agent: the real binary
// runs two PLCs, a plcsim streaming counters and a hostile server of our own
// (scripts/hostileua), one attack per subtest. For each: the agent stays up,
// the good PLC's counters reach Mosquitto with no gap, the hostile PLC shows
// disconnected with an error naming the problem, the peak RSS stays small,
// and SIGTERM stops the agent within the systemd unit's TimeoutStopSec.
//
// Each fails against the gopcua-based agent the issue was filed on:
//   - variant -2: gopcua's decoder panicked in its uasc reader goroutine,
//     which has no recover: the process died at the first GetEndpoints reply
//     (with ua.DecodeService swapped into uasc's codec the panic is recovered
//     there: the test still fails, on the panic in the log);
//   - nested variants: a stack overflow, fatal whoever recovers (seen with
//     ua.DecodeService in uasc's codec: exit 2 at the first attack);
//   - dimensions wrapping to 0 and a dimension of 2³¹−1: gopcua reshapes the
//     empty array into nested slices of those sizes: out of memory, fatal
//     (seen with ua.DecodeService in uasc's codec, under the cap below);
//   - endless chunks: gopcua kept a buffer per request id: 3.6 s to OOM
//     (our channel before it refused chunks for ids never sent: 4 GB read
//     and dropped in 30 s until the request timed out, a gap in the good
//     PLC's counters);
//   - silent and slowloris-ACK (finding 2): gopcua's handshake heeded no
//     cancellation: the session hung for good and SIGTERM did not stop the
//     agent within 15 s (systemd killed it);
//   - a chunk header claiming 4 GiB: ours refuses it before allocating; a
//     reader that trusts it allocates 4 GiB (fatal under the cap below).
// The sequence number jumping far ahead (finding 3) has its own test,
// TestHostileSequenceJump: the gap logic walked the 4 × 10⁹ numbers one by
// one, a minute of a pegged core and 22 GB of log in 15 s at Debug.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/agent/statusapi"
	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/hostileua"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"

	"github.com/tagbridge/tagbridge/internal/testutil"
)

const (
	// hostileRSSLimit bounds the agent's peak resident memory under attack.
	hostileRSSLimit = 200 << 20
	// hostileAddressSpace caps the agent's virtual memory (ulimit -v), so
	// that an agent without bounds dies of the allocation at once rather
	// than taking the machine's memory with it.
	hostileAddressSpace = 4 << 30
	// hostileWindow is how long, at least, the agent runs under attack.
	hostileWindow = 8 * time.Second
	hostileToken  = "hostile-status-token-5e4f3a2b1c"
)

func TestHostilePLC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	stopWithin := unitStopTimeout(t)
	broker := testkit.StartBroker(t)
	// Two Int32 counters changing every 100 ms.
	good := simproc.Start(t, "-tags", "8", "-interval", "250ms") // plcsim keeps one value per item per publish: 250 ms leaves room on a loaded machine
	goodTags := testutil.Indent(simproc.Tags(t, 8), "    ")

	cases := []struct {
		mode hostileua.Mode
		// want matches the hostile PLC's last error in /status.
		want string
	}{
		{hostileua.Silent, `get endpoints: open secure channel: hello opc\.tcp://\S+: context deadline exceeded`},
		{hostileua.SlowACK, `get endpoints: open secure channel: hello opc\.tcp://\S+: context deadline exceeded`},
		{hostileua.VariantLengthMinus2, `get endpoints: GetEndpoints request: decode response: .*Variant array at byte \d+: negative length -2: .*BadDecodingError`},
		{hostileua.NestedVariants, `get endpoints: GetEndpoints request: decode response: .*Variant at byte \d+: nested deeper than \d+: .*BadEncodingLimitsExceeded`},
		{hostileua.DimensionsWrapToZero, `get endpoints: GetEndpoints request: decode response: .*Variant array dimensions at byte \d+: dimension 0 of 65536 takes the product past the array length 0: .*BadDecodingError`},
		{hostileua.DimensionMaxInt32, `get endpoints: GetEndpoints request: decode response: .*Variant array dimensions at byte \d+: dimension 0 of 2147483647 takes the product past the array length 0: .*BadDecodingError`},
		{hostileua.EndlessChunks, `get endpoints: GetEndpoints request: secure channel closed: MSG chunk for request \d+, which we never sent`},
		{hostileua.EndlessChunksAnsweredID, `get endpoints: GetEndpoints request: secure channel closed: MSG chunk: \d+ chunks in a row that no request awaits`},
		{hostileua.HugeChunk, `get endpoints: GetEndpoints request: secure channel closed: read MSG chunk: size 4294967295 exceeds our receive buffer`},
	}
	for _, c := range cases {
		t.Run(c.mode.String(), func(t *testing.T) {
			evil := hostileua.Start(t, c.mode)
			id := "hostile" + strconv.Itoa(int(c.mode))
			dir := t.TempDir()
			sock := filepath.Join(dir, "status.sock")
			tokenFile := filepath.Join(dir, "token")
			if err := os.WriteFile(tokenFile, []byte(hostileToken+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := writeConfig(t, fmt.Sprintf(`agent: {id: %s, spool_dir: %q, status_listen: %q, status_token_file: %q}
mqtt: {url: %s, qos: 1}
plcs:
  - name: good
    endpoint: %s
    publishing_interval: 20ms
    sampling_interval: 0s
%s
  - name: evil
    endpoint: %s
    reconnect: {min: 200ms, max: 1s}
    tags:
      - node: ns=1;s=Int32.0001
`, id, filepath.Join(dir, "spool"), sock, tokenFile, broker.URL(), good.Endpoint, goodTags, evil.Endpoint))
			seen := newCounterRun()
			go func() {
				for m := range testkit.Subscribe(t, broker.URL(), "tagbridge/"+id+"/good/#", 1) {
					seen.add(m)
				}
			}()

			a := runCappedAgent(t, bin, cfg, hostileAddressSpace)
			waitFor(t, a, "the good PLC streaming and the attack delivered", 30*time.Second, func() bool {
				return seen.count() >= 10 && evil.Attacks() >= 1
			})
			started := time.Now()
			base := seen.snapshot()

			// Under attack: at least the window, until the attack was made
			// again (the agent reconnected and survived it twice) and the
			// hostile PLC shows its error.
			var evilStatus collectors.PLCState
			waitFor(t, a, "the hostile PLC disconnected with its error, attacked twice", 45*time.Second, func() bool {
				st, ok := agentStatus(sock, "evil")
				if ok {
					evilStatus = st
				}
				return ok && st.State == collectors.StateDisconnected && evil.Attacks() >= 2
			})
			if el := time.Since(started); el < hostileWindow {
				waitFor(t, a, "the rest of the window", hostileWindow-el+time.Second, func() bool { return time.Since(started) >= hostileWindow })
			}
			if !regexp.MustCompile(c.want).MatchString(evilStatus.LastError) {
				t.Errorf("hostile PLC's last error %q, want a match for %q", evilStatus.LastError, c.want)
			}
			if strings.Contains(a.logs.String(), "panic") {
				t.Errorf("the log mentions a panic")
			}
			peak := a.peakRSS(t)
			if peak > hostileRSSLimit {
				t.Errorf("peak RSS %d MiB, want under %d MiB", peak>>20, hostileRSSLimit>>20)
			}
			underAttack := time.Since(started)
			gaps, values := seen.since(base)
			for _, g := range gaps {
				t.Errorf("good PLC: %s", g)
			}
			// 4 values a second per counter; allow for a slow start.
			if min := int(underAttack.Seconds() * 4 * 0.7); values < min {
				t.Errorf("good PLC: %d values per counter in %v under attack, want at least %d", values, underAttack.Round(time.Second), min)
			}

			// Stop while an attack is under way, where attacks last.
			attacks := evil.Attacks()
			waitFor(t, a, "an attack under way", 15*time.Second, func() bool { return evil.Active() > 0 || evil.Attacks() > attacks })
			took := a.terminate(t, stopWithin)
			t.Logf("%v: %d attacks (%d KiB sent), agent peak RSS %d MiB, good PLC %d values per counter in %v without a gap, stopped %v after SIGTERM; evil: %s: %s",
				c.mode, evil.Attacks(), evil.AttackBytes()>>10, peak>>20, values, underAttack.Round(100*time.Millisecond),
				took.Round(time.Millisecond), evilStatus.State, evilStatus.LastError)
			if err := evil.Err(); err != nil {
				t.Errorf("hostile server: %v", err)
			}
		})
	}
}

// Finding 3 at the level of the agent, at log level debug: a PLC whose
// notification sequence numbers jump from 20 to 4 × 10⁹. The loss is logged
// once as a range, the log and the CPU time stay small, the PLC's values
// keep coming without a gap (the numbers skipped never held any), and so do
// the good PLC's.
func TestHostileSequenceJump(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	stopWithin := unitStopTimeout(t)
	broker := testkit.StartBroker(t)
	good := simproc.Start(t, "-tags", "8", "-interval", "250ms") // plcsim keeps one value per item per publish: 250 ms leaves room on a loaded machine
	evil := hostileua.Start(t, hostileua.SequenceJump)
	cfg := writeConfig(t, fmt.Sprintf(`agent: {id: jump, log_level: debug, spool_dir: %q}
mqtt: {url: %s, qos: 1}
plcs:
  - name: good
    endpoint: %s
    publishing_interval: 20ms
    sampling_interval: 0s
%s
  - name: evil
    endpoint: %s
    publishing_interval: 100ms
    tags:
      - {node: ns=1;s=Int32.0001, name: int32_0001}
      - {node: ns=1;s=Int32.0002, name: int32_0002}
`, t.TempDir(), broker.URL(), good.Endpoint, testutil.Indent(simproc.Tags(t, 8), "    "), evil.Endpoint))
	seen := newCounterRun()
	go func() {
		for m := range testkit.Subscribe(t, broker.URL(), "tagbridge/jump/#", 1) {
			seen.add(m)
		}
	}()
	a := runCappedAgent(t, bin, cfg, hostileAddressSpace)
	waitFor(t, a, "both PLCs streaming", 30*time.Second, func() bool { return seen.count() >= 5 })
	base := seen.snapshot()
	cpu0, log0, started := a.cpuTime(t), len(a.logs.String()), time.Now()
	waitFor(t, a, "the jump", 30*time.Second, func() bool { return evil.Attacks() >= 1 })
	// 30 notifications after the jump, 3 s.
	evilTopic := "tagbridge/jump/evil/int32_0001"
	waitFor(t, a, "the hostile PLC's values after the jump", 30*time.Second, func() bool {
		return seen.last(evilTopic) >= hostileua.JumpAfter+30
	})
	if el := time.Since(started); el < hostileWindow {
		waitFor(t, a, "the rest of the window", hostileWindow-el+time.Second, func() bool { return time.Since(started) >= hostileWindow })
	}
	window := time.Since(started)
	cpu := a.cpuTime(t) - cpu0
	logged := len(a.logs.String()) - log0
	gaps, values := seen.since(base)
	for _, g := range gaps {
		t.Errorf("%s", g)
	}
	if min := int(window.Seconds() * 4 * 0.7); values < min {
		t.Errorf("%d values per counter in %v, want at least %d", values, window.Round(time.Second), min)
	}
	var lossLines []string
	for l := range strings.Lines(a.logs.String()) {
		if strings.Contains(l, "notifications lost") {
			lossLines = append(lossLines, l)
		}
	}
	wantRange := fmt.Sprintf(`"first":%d,"last":%d,"notifications":%d`, hostileua.JumpAfter+1, hostileua.JumpTo-1, hostileua.JumpTo-hostileua.JumpAfter-1)
	if len(lossLines) != 1 || !strings.Contains(lossLines[0], wantRange) || !strings.Contains(lossLines[0], `"level":"error"`) {
		t.Errorf("loss logged as %q, want one error line with %s", lossLines, wantRange)
	}
	if logged > 4<<20 {
		t.Errorf("%d KiB of log in %v", logged>>10, window.Round(time.Second))
	}
	if cpu > window/2 {
		t.Errorf("%v of CPU in %v", cpu, window.Round(time.Second))
	}
	peak := a.peakRSS(t)
	if peak > hostileRSSLimit {
		t.Errorf("peak RSS %d MiB, want under %d MiB", peak>>20, hostileRSSLimit>>20)
	}
	took := a.terminate(t, stopWithin)
	if err := evil.Err(); err != nil {
		t.Errorf("hostile server: %v", err)
	}
	t.Logf("sequence jump %d -> %d: %d values per counter in %v without a gap (hostile PLC up to %d), %v CPU, %d KiB of log at debug, peak RSS %d MiB, stopped %v after SIGTERM; loss logged as: %s",
		hostileua.JumpAfter, uint32(hostileua.JumpTo), values, window.Round(100*time.Millisecond), seen.last(evilTopic), cpu.Round(time.Millisecond),
		logged>>10, peak>>20, took.Round(time.Millisecond), strings.TrimSpace(strings.Join(lossLines, "")))
}

// Finding 2: reloads that touch a PLC stuck in a silent handshake finish
// promptly, and so does a later one; SIGTERM then stops the agent in time.
// (browse against a silent server and Ctrl-C: TestBrowseSilentServer.)
func TestHostileReloadSilentPLC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	stopWithin := unitStopTimeout(t)
	broker := testkit.StartBroker(t)
	good := simproc.Start(t, "-tags", "8", "-interval", "250ms") // plcsim keeps one value per item per publish: 250 ms leaves room on a loaded machine
	silent := hostileua.Start(t, hostileua.Silent)
	spool := t.TempDir()
	configWith := func(evilTag string, goodTags int) string {
		evil := ""
		if evilTag != "" {
			evil = fmt.Sprintf("  - name: evil\n    endpoint: %s\n    tags:\n      - node: %s\n", silent.Endpoint, evilTag)
		}
		return fmt.Sprintf("agent: {id: reload, spool_dir: %q}\nmqtt: {url: %s, qos: 1}\nplcs:\n  - name: good\n    endpoint: %s\n    publishing_interval: 20ms\n%s\n%s",
			spool, broker.URL(), good.Endpoint, testutil.Indent(simproc.Tags(t, goodTags), "    "), evil)
	}
	cfg := writeConfig(t, configWith("ns=1;s=Int32.0001", 4))
	seen := newCounterRun()
	go func() {
		for m := range testkit.Subscribe(t, broker.URL(), "tagbridge/reload/good/#", 1) {
			seen.add(m)
		}
	}()
	a := runCappedAgent(t, bin, cfg, hostileAddressSpace)
	waitFor(t, a, "the good PLC streaming and the silent PLC connected", 30*time.Second, func() bool {
		return seen.count() >= 10 && silent.Accepted() >= 1
	})

	reload := func(what, body string, n int) time.Duration {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		a.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, a, what+": configuration reloaded", 5*time.Second, func() bool {
			return strings.Count(a.logs.String(), `"configuration reloaded"`) >= n
		})
		return time.Since(start)
	}
	// Touch the silent PLC (its tags) while its session hangs in the
	// handshake, then remove it, adding tags to the good PLC.
	accepted := silent.Accepted()
	first := reload("change", configWith("ns=1;s=Int32.0005", 4), 1)
	waitFor(t, a, "the restarted session's handshake", 15*time.Second, func() bool { return silent.Accepted() > accepted })
	second := reload("remove", configWith("", 8), 2)
	waitFor(t, a, "a value of a tag added by the second reload", 15*time.Second, func() bool { return seen.has("int32_0005") })
	took := a.terminate(t, stopWithin)
	t.Logf("reload touching the silent PLC: %v; the next reload: %v; SIGTERM: %v", first.Round(time.Millisecond), second.Round(time.Millisecond), took.Round(time.Millisecond))
}

// unitStopTimeout is TimeoutStopSec of the systemd unit we ship.
func unitStopTimeout(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("packaging", "tagbridge.service"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\d+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("packaging/tagbridge.service has no TimeoutStopSec")
	}
	s, _ := strconv.Atoi(string(m[1]))
	return time.Duration(s) * time.Second
}

// runCappedAgent runs the agent with its address space capped at limit
// bytes; the shell execs it, so the agent keeps the shell's pid.
func runCappedAgent(t *testing.T, bin, cfg string, limit int64) *agentProc {
	t.Helper()
	return startAgentProc(t, exec.Command("/bin/sh", "-c", fmt.Sprintf(`ulimit -v %d && exec "$0" run -c "$1"`, limit>>10), bin, cfg))
}

// waitFor polls cond every 50 ms; the agent exiting fails the test at once.
func waitFor(t *testing.T, a *agentProc, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		select {
		case <-a.exited:
			t.Fatalf("tagbridge exited (%v) while waiting for %s", a.cmd.ProcessState, what)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

// peakRSS is the agent's VmHWM: the most resident memory it ever had.
func (a *agentProc) peakRSS(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// cpuTime is the CPU time the agent used so far (user and system).
func (a *agentProc) cpuTime(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name in parentheses: state is field 3,
	// utime and stime are fields 14 and 15, in clock ticks (100 a second).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/PID/stat: %q", b)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// terminate sends SIGTERM and expects a clean exit within d.
func (a *agentProc) terminate(t *testing.T, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(d):
		t.Fatalf("tagbridge still running %v after SIGTERM", d)
	}
	took := time.Since(start)
	if !a.cmd.ProcessState.Success() {
		t.Errorf("exit after SIGTERM: %v, want code 0", a.cmd.ProcessState)
	}
	return took
}

// agentStatus asks the agent's status socket for one PLC's status.
func agentStatus(sock, plc string) (collectors.PLCState, bool) {
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://agent/status", nil)
	req.Header.Set("Authorization", "Bearer "+hostileToken)
	resp, err := client.Do(req)
	if err != nil {
		return collectors.PLCState{}, false
	}
	defer resp.Body.Close()
	var st statusapi.Status
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return collectors.PLCState{}, false
	}
	for _, p := range st.PLCs {
		if p.PLC == plc {
			return p, true
		}
	}
	return collectors.PLCState{}, false
}

// counterRun follows plcsim's Int32 counters arriving, per topic, in
// arrival order, and the other tags seen.
type counterRun struct {
	mu   sync.Mutex
	vals map[string][]int64
	tags map[string]bool
}

func newCounterRun() *counterRun {
	return &counterRun{vals: map[string][]int64{}, tags: map[string]bool{}}
}

func (c *counterRun) add(m testkit.Message) {
	var p struct {
		Tag   string `json:"tag"`
		Type  string `json:"type"`
		Value int64  `json:"value"`
	}
	if json.Unmarshal(m.Payload, &p) != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tags[p.Tag] = true
	if p.Type == "Int32" {
		c.vals[m.Topic] = append(c.vals[m.Topic], p.Value)
	}
}

// last is the newest value of a counter, or -1.
func (c *counterRun) last(topic string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.vals[topic]
	if len(v) == 0 {
		return -1
	}
	return v[len(v)-1]
}

func (c *counterRun) has(tag string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tags[tag]
}

// count is the fewest values any counter has.
func (c *counterRun) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := -1
	for _, v := range c.vals {
		if n < 0 || len(v) < n {
			n = len(v)
		}
	}
	return max(n, 0)
}

// snapshot is how many values each counter has so far.
func (c *counterRun) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := map[string]int{}
	for k, v := range c.vals {
		s[k] = len(v)
	}
	return s
}

// since checks every counter's values after base: each new value is the
// previous one plus one (a repeat, as QoS 1 may deliver, is no gap). It
// returns the gaps and the fewest new values any counter got.
func (c *counterRun) since(base map[string]int) (gaps []string, fewest int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fewest = -1
	for topic, vals := range c.vals {
		from := max(base[topic]-1, 0)
		newest, n := vals[from], 0
		for _, v := range vals[from+1:] {
			switch {
			case v == newest+1:
				newest, n = v, n+1
			case v <= newest:
			default:
				gaps = append(gaps, fmt.Sprintf("%s: %d after %d", topic, v, newest))
				newest = v
			}
		}
		if fewest < 0 || n < fewest {
			fewest = n
		}
	}
	return gaps, max(fewest, 0)
}
