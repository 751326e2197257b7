package testkit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Proc is a server a test runs as a child process (plcsim, the node-opcua
// peer, the open62541 server): in a process group of its own, so that
// signals reach whatever it started too, and announcing itself with a line
// "READY <endpoint>" on stdout once it serves.
type Proc struct {
	Cmd *exec.Cmd
	// Endpoint is the READY line's endpoint, without a trailing slash.
	Endpoint string
	exited   chan struct{}
}

// Why StartProc returned without an endpoint; its errors wrap one of them.
var (
	ErrExitedBeforeReady = errors.New("exited before READY")
	ErrNoReady           = errors.New("no READY")
)

// StartProc starts cmd and waits up to timeout for its READY line. Every
// stdout line goes through line first (nil: taken as it is), and READY is
// looked for in what line returns. A process that exits first gives
// ErrExitedBeforeReady; one still silent after timeout is killed and gives
// ErrNoReady. cmd's stdout must be unset; its stderr is the caller's.
func StartProc(cmd *exec.Cmd, timeout time.Duration, line func(string) string) (*Proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Wait returns this long after the process exited even when a
	// grandchild still holds stdout or stderr.
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Cmd: cmd, exited: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			if line != nil {
				l = line(l)
			}
			if ep, ok := strings.CutPrefix(l, "READY "); ok {
				ready <- strings.TrimRight(ep, "/")
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { cmd.Wait(); close(p.exited) }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case p.Endpoint = <-ready:
		return p, nil
	case <-p.exited:
		return p, fmt.Errorf("%w (%s)", ErrExitedBeforeReady, cmd.ProcessState)
	case <-timer.C:
		p.Kill()
		return p, fmt.Errorf("%w within %s", ErrNoReady, timeout)
	}
}

// Exited is closed once the process has exited and been waited for.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Signal signals the process group, or the process alone when the group
// cannot be.
func (p *Proc) Signal(sig syscall.Signal) {
	if err := syscall.Kill(-p.Cmd.Process.Pid, sig); err != nil {
		p.Cmd.Process.Signal(sig)
	}
}

// Stop asks the process to stop (SIGTERM) and waits for it; after grace it
// kills it, and says so.
func (p *Proc) Stop(grace time.Duration) (killed bool) {
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return false
	case <-time.After(grace):
		p.Kill()
		return true
	}
}

// Kill stops the process abruptly, as a power cut would, and waits for it.
func (p *Proc) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.exited
}
