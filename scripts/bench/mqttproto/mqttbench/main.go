// Command mqttbench measures the CPU one QoS 1 message costs the publishing
// client in scenario S1 value's workload (10,000 messages/s of tagbridge's
// JSON values, issue 16), for paho.mqtt.golang as tagbridge configures it,
// for the prototype in scripts/bench/mqttproto, and for paho.golang (MQTT 5;
// a separate module in ../pahov5, built by the caller), plain and through
// tagbridge's coalescing connection (pahov5c).
//
//	go build -o /tmp/mqttbench ./scripts/bench/mqttproto/mqttbench
//	(cd scripts/bench/mqttproto/pahov5 && go build -o /tmp/pahov5 .)
//	/tmp/mqttbench -runs 3 -pahov5 /tmp/pahov5
//
// Without -client it is the driver: it starts a private Mosquitto on a
// loopback port and runs every client in turn, each round in the same
// order, each run in a fresh process (itself with -client, or -pahov5),
// and prints every run and the medians. With -client it is one run: it
// measures its own CPU time (getrusage) over the window and prints a JSON line.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tagbridge/tagbridge/scripts/bench/mqttproto/drive"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mqttbench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mqttbench", flag.ContinueOnError)
	cfg := drive.Flags(fs)
	client := fs.String("client", "", "one run of this client against -broker: paho or proto")
	clients := fs.String("clients", "paho,proto,pahov5,pahov5c", "driver: the clients to run in turn (pahov5c: paho.golang through tagbridge's coalescing connection)")
	pahov5 := fs.String("pahov5", "", "driver: the paho.golang command built from ../pahov5 (without it, pahov5 is left out)")
	runs := fs.Int("runs", 3, "driver: runs of each client")
	mosquitto := fs.String("mosquitto", "/usr/sbin/mosquitto", "driver: the broker binary")
	inflight := fs.Int("broker-inflight", 0, "driver: Mosquitto's max_inflight_messages, which it sends MQTT 5 clients as Receive Maximum (0: Mosquitto's default, 20)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch *client {
	case "paho":
		return one(*client, cfg, newPaho)
	case "proto":
		return one(*client, cfg, newProto)
	case "":
	default:
		return fmt.Errorf("-client %q: want paho or proto", *client)
	}
	var list []string
	for c := range strings.SplitSeq(*clients, ",") {
		if strings.HasPrefix(c, "pahov5") && *pahov5 == "" {
			fmt.Fprintf(os.Stderr, "mqttbench: no -pahov5 binary: %s left out\n", c)
			continue
		}
		list = append(list, c)
	}
	return drive3(list, *runs, *pahov5, *mosquitto, *inflight, args)
}

// one is a single run in this process.
func one(name string, cfg *drive.Config, open func(addr, id string) (drive.Publisher, func(), error)) error {
	p, closeFn, err := open(cfg.Broker, fmt.Sprintf("mqttbench-%s-%d", name, os.Getpid()))
	if err != nil {
		return fmt.Errorf("%s: connect to %s: %w", name, cfg.Broker, err)
	}
	defer closeFn()
	r, err := drive.Run(name, p, *cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return drive.Print(os.Stdout, r)
}

// drive3 starts Mosquitto and runs the clients in turn.
func drive3(clients []string, runs int, pahov5, mosquitto string, inflight int, args []string) error {
	dir, err := os.MkdirTemp("", "mqttbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	broker, addr, err := startBroker(mosquitto, dir, inflight)
	if err != nil {
		return err
	}
	defer func() {
		broker.Process.Signal(syscall.SIGTERM)
		broker.Wait()
	}()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	results := map[string][]drive.Result{}
	brokerCPU := map[string][]float64{}
	for round := 1; round <= runs; round++ {
		for _, c := range clients {
			cmd := exec.Command(self, append(slices.Clone(args), "-client", c, "-broker", addr)...)
			switch c {
			case "pahov5":
				cmd = exec.Command(pahov5, childArgs(args, addr)...)
			case "pahov5c":
				cmd = exec.Command(pahov5, append(childArgs(args, addr), "-coalesce")...)
			}
			cmd.Stderr = os.Stderr
			load := loadavg()
			b0 := procCPU(broker.Process.Pid)
			out, err := cmd.Output()
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round, c, err)
			}
			var r drive.Result
			if err := json.Unmarshal(bytes.TrimSpace(out), &r); err != nil {
				return fmt.Errorf("round %d, %s: result %q: %w", round, c, out, err)
			}
			// The broker's CPU over the whole child run (warm-up included).
			bc := (procCPU(broker.Process.Pid) - b0).Seconds()
			results[c] = append(results[c], r)
			brokerCPU[c] = append(brokerCPU[c], bc)
			fmt.Printf("round %d  %-7s %8.2f µs/msg  %7d msgs  %5.2f s CPU  %5.2f allocs/msg  %3d GCs  behind %d  broker %.2f s CPU  load %s\n",
				round, c, r.MicrosPer, r.Messages, r.CPUSeconds, r.Allocs, r.GCs, r.Behind, bc, load)
		}
	}
	fmt.Printf("\nmedians of %d runs; load at the end %s\n", runs, loadavg())
	fmt.Println("| client | CPU µs/msg (median) | runs | allocs/msg | ÷ paho |")
	fmt.Println("| --- | ---: | --- | ---: | ---: |")
	base := 0.0
	for _, c := range clients {
		var us, allocs []float64
		for _, r := range results[c] {
			us = append(us, r.MicrosPer)
			allocs = append(allocs, r.Allocs)
		}
		m := median(us)
		if c == "paho" {
			base = m
		}
		ratio := ""
		if base > 0 {
			ratio = fmt.Sprintf("%.2f", m/base)
		}
		var each []string
		for _, u := range us {
			each = append(each, strconv.FormatFloat(u, 'f', 2, 64))
		}
		fmt.Printf("| %s | %.2f | %s | %.2f | %s |\n", c, m, strings.Join(each, ", "), median(allocs), ratio)
	}
	return nil
}

// childArgs are the driver's arguments without its own flags, for the
// paho.golang command, which knows the workload's flags only.
func childArgs(args []string, addr string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		name := strings.TrimLeft(args[i], "-")
		name, _, hasValue := strings.Cut(name, "=")
		switch name {
		case "clients", "pahov5", "runs", "mosquitto", "broker-inflight":
			if !hasValue {
				i++
			}
			continue
		}
		out = append(out, args[i])
	}
	return append(out, "-broker", addr)
}

func startBroker(mosquitto, dir string, inflight int) (*exec.Cmd, string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nlog_dest stderr\nlog_type error\n", port)
	if os.Geteuid() == 0 {
		conf += "user root\n"
	}
	if inflight > 0 {
		conf += fmt.Sprintf("max_inflight_messages %d\n", inflight)
	}
	file := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(mosquitto, "-c", file)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("mosquitto: %w", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return cmd, addr, nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, "", fmt.Errorf("mosquitto not accepting on %s within 10 s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// procCPU is a process's user and system time from /proc/PID/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

var errTimeout = errors.New("not acknowledged in time")

// waitUntil polls done until it holds or timeout passes.
func waitUntil(timeout time.Duration, done func() bool) error {
	deadline := time.Now().Add(timeout)
	for !done() {
		if time.Now().After(deadline) {
			return errTimeout
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}
