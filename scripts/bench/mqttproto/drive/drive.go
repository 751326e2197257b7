// Package drive paces one MQTT client through the per-message workload of
// scenario S1 value (issue 16) and measures the CPU the process spends per
// message: 1,000 tags' tagbridge-sized JSON values at a fixed rate, QoS 1,
// handed over in bursts as tagbridge's publish cycle does. It depends on
// the standard library only, so that the paho.golang command (a module of
// its own) shares it.
package drive

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"
)

// Publisher is the client under measurement.
type Publisher interface {
	// Publish hands over one QoS 1 message; it may wait for room in the
	// client's window.
	Publish(topic string, payload []byte) error
	// Flush returns once every message published so far is acknowledged.
	Flush(timeout time.Duration) error
}

// Config is the workload.
type Config struct {
	Broker   string // host:port
	Rate     int    // messages per second
	Tick     time.Duration
	Warmup   time.Duration
	Duration time.Duration
	Tags     int
	// CPUProfile, if set, is a file for a CPU profile of the measured window.
	CPUProfile string
}

// Flags registers the workload's flags on fs.
func Flags(fs *flag.FlagSet) *Config {
	c := &Config{}
	fs.StringVar(&c.Broker, "broker", "", "broker address host:port")
	fs.IntVar(&c.Rate, "rate", 10000, "messages per second")
	fs.DurationVar(&c.Tick, "tick", 20*time.Millisecond, "publish cycle: rate×tick messages are handed over at once (tagbridge: publishing_interval)")
	fs.DurationVar(&c.Warmup, "warmup", time.Second, "paced publishing before the measured window")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured window")
	fs.IntVar(&c.Tags, "tags", 1000, "distinct topics (tags), in turn")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of the measured window to this file")
	return c
}

// Result is one measured window.
type Result struct {
	Client      string  `json:"client"`
	Messages    int     `json:"messages"`
	CPUSeconds  float64 `json:"cpu_s"`
	WallSeconds float64 `json:"wall_s"`
	MicrosPer   float64 `json:"cpu_us_per_msg"`
	GCs         uint32  `json:"gcs"`
	Allocs      float64 `json:"allocs_per_msg"`
	Behind      int     `json:"behind"` // messages still due when the window closed
}

// Messages returns the topics and payloads of tags tags: a tagbridge JSON
// value of an Int32 counter, about 190 bytes, as payload.AppendJSON writes it.
func Messages(tags int) (topics []string, payloads [][]byte) {
	at := time.Date(2026, 12, 3, 21, 11, 0, 123456789, time.UTC)
	for i := range tags {
		topics = append(topics, fmt.Sprintf("tagbridge/plc1/Counter%04d", i))
		payloads = append(payloads, fmt.Appendf(nil,
			`{"plc":"plc1","tag":"Counter%04d","node":"ns=2;s=Counter%04d","value":%d,"type":"Int32","status":"Good","status_code":0,"time":%q,"source_time":%q}`,
			i, i, 1_000_000+i, at.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano)))
	}
	return topics, payloads
}

// Run publishes at c.Rate for c.Warmup, waits for every acknowledgement,
// then measures the process's CPU time over c.Duration of publishing and
// the acknowledgement of its last message.
func Run(name string, p Publisher, c Config) (Result, error) {
	topics, payloads := Messages(c.Tags)
	next := 0
	pace := func(d time.Duration) (sent, behind int, err error) {
		start := time.Now()
		perTick := max(1, int(float64(c.Rate)*c.Tick.Seconds()))
		total := int(float64(c.Rate) * d.Seconds())
		for tick := 1; sent < total; tick++ {
			time.Sleep(time.Until(start.Add(time.Duration(tick) * c.Tick)))
			due := min(total, tick*perTick)
			for ; sent < due; sent++ {
				i := next % len(topics)
				next++
				if err := p.Publish(topics[i], payloads[i]); err != nil {
					return sent, 0, err
				}
			}
			if time.Since(start) > d+time.Second {
				return sent, total - sent, nil
			}
		}
		return sent, 0, nil
	}
	if _, _, err := pace(c.Warmup); err != nil {
		return Result{}, fmt.Errorf("warm-up: %w", err)
	}
	if err := p.Flush(30 * time.Second); err != nil {
		return Result{}, fmt.Errorf("warm-up: %w", err)
	}
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return Result{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return Result{}, err
		}
		defer pprof.StopCPUProfile()
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0, wall0 := cpu(), time.Now()
	sent, behind, err := pace(c.Duration)
	if err != nil {
		return Result{}, fmt.Errorf("window: %w", err)
	}
	if err := p.Flush(30 * time.Second); err != nil {
		return Result{}, fmt.Errorf("window: %w", err)
	}
	cpu1, wall1 := cpu(), time.Now()
	runtime.ReadMemStats(&ms1)
	used := (cpu1 - cpu0).Seconds()
	return Result{
		Client:      name,
		Messages:    sent,
		CPUSeconds:  used,
		WallSeconds: wall1.Sub(wall0).Seconds(),
		MicrosPer:   used * 1e6 / float64(sent),
		GCs:         ms1.NumGC - ms0.NumGC,
		Allocs:      float64(ms1.Mallocs-ms0.Mallocs) / float64(sent),
		Behind:      behind,
	}, nil
}

// cpu is the process's user and system time.
func cpu() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err) // cannot fail for RUSAGE_SELF
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Print writes r as one JSON line, which the driver reads.
func Print(w io.Writer, r Result) error {
	return json.NewEncoder(w).Encode(r)
}
