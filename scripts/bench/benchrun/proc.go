package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process in a process group of its own.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// startProc starts a child with stderr (and stdout, unless ready is given) to
// logPath; with ready, the child's first stdout line is sent on it.
func startProc(name, logPath string, ready chan<- string, bin string, args ...string) (*proc, error) {
	return startProcEnv(name, logPath, ready, nil, bin, args...)
}

// startProcEnv is startProc with env added to the environment.
func startProcEnv(name, logPath string, ready chan<- string, env []string, bin string, args ...string) (*proc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logFile
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stdout io.ReadCloser
	if ready != nil {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			logFile.Close()
			return nil, err
		}
	} else {
		cmd.Stdout = logFile
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	if ready != nil {
		go func() {
			r := bufio.NewReader(stdout)
			line, _ := r.ReadString('\n')
			ready <- strings.TrimSpace(line)
			io.Copy(io.Discard, r)
		}()
	}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM to the child's process group and SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// sleep waits for d, failing early on cancellation or when p exits.
func sleep(ctx context.Context, d time.Duration, p *proc) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-p.done:
		return fmt.Errorf("%s exited early: %v (log %s)", p.name, p.err, p.logPath)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitForPort(ctx context.Context, addr string, limit time.Duration, p *proc) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no connection to %s within %s (log %s)", addr, limit, p.logPath)
		}
		if err := sleep(ctx, 50*time.Millisecond, p); err != nil {
			return err
		}
	}
}

// cpuTicks returns utime+stime of a process, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return utime + stime, nil
}

type ticks struct {
	broker, plcs, self int64
	plc                []int64 // each simulated PLC
}

// otherTicks returns the CPU ticks of the broker (procs[0]), the simulated
// PLCs and this process; errors count as 0, as this is only informative.
func otherTicks(procs []*proc) ticks {
	var t ticks
	for _, p := range procs {
		n, _ := cpuTicks(p.cmd.Process.Pid)
		switch {
		case p.name == "mosquitto":
			t.broker += n
		case strings.HasPrefix(p.name, "plcsim"):
			t.plcs += n
			t.plc = append(t.plc, n)
		}
	}
	t.self, _ = cpuTicks(os.Getpid())
	return t
}

// procStatus returns a field of /proc/PID/status in KiB: VmHWM (peak
// RSS), VmRSS.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}
