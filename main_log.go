package main

import (
	"fmt"
	"io"
	stdlog "log"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/config"
)

// logTimeFormat: milliseconds, as a PLC's values come faster than seconds.
const logTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// newLogger builds the root logger: JSON or console lines on w, with
// millisecond timestamps; colour only on a terminal; under systemd's
// journal, each line starts with its syslog priority (<3> error ... <7>
// debug), so that journalctl -p warning shows warnings and errors.
func newLogger(a config.Agent, w io.Writer) zerolog.Logger {
	zerolog.TimeFieldFormat = logTimeFormat
	journal, raw := toJournal(w), w
	if a.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000", NoColor: journal || !isTerminal(w)}
	}
	if journal {
		w = &priorityWriter{line: w, raw: raw}
	}
	level, err := zerolog.ParseLevel(a.LogLevel)
	if err != nil {
		level = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// toJournal tells whether w is the stream systemd connected to its journal:
// JOURNAL_STREAM holds that stream's device and inode.
func toJournal(w io.Writer) bool {
	f, ok := w.(*os.File)
	env := os.Getenv("JOURNAL_STREAM")
	if !ok || env == "" {
		return false
	}
	dev, ino, ok := strings.Cut(env, ":")
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, isUnix := fi.Sys().(*syscall.Stat_t)
	return isUnix && strconv.FormatUint(uint64(st.Dev), 10) == dev && strconv.FormatUint(st.Ino, 10) == ino
}

// isTerminal tells whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// priorityWriter prefixes each line with its sd-daemon priority: written
// to raw, then the event through line (which formats it for console
// output), one event at a time.
type priorityWriter struct {
	mu        sync.Mutex
	line, raw io.Writer
}

func (p *priorityWriter) Write(b []byte) (int, error) {
	return p.WriteLevel(zerolog.NoLevel, b)
}

func (p *priorityWriter) WriteLevel(l zerolog.Level, b []byte) (int, error) {
	prio := "<6>" // info
	switch l {
	case zerolog.TraceLevel, zerolog.DebugLevel:
		prio = "<7>"
	case zerolog.WarnLevel:
		prio = "<4>"
	case zerolog.ErrorLevel:
		prio = "<3>"
	case zerolog.FatalLevel, zerolog.PanicLevel:
		prio = "<2>"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := io.WriteString(p.raw, prio); err != nil {
		return 0, err
	}
	return p.line.Write(b)
}

// bridgeLibraryLoggers sends the standard logger's output (libraries that
// use it) and paho's package-level output through our logger. Both repeat
// themselves at every reconnect attempt, while the session and the
// publisher log each state change once: their chatter goes to Debug, paho's
// CRITICAL stays an error unless the publisher reports it (pahoReported).
func bridgeLibraryLoggers(log zerolog.Logger) {
	stdlog.SetFlags(0)
	stdlog.SetOutput(lineWriter{log.With().Str("component", "library").Logger()})
	mqtt.ERROR = pahoLogger{log, zerolog.DebugLevel}
	mqtt.CRITICAL = pahoLogger{log, zerolog.ErrorLevel}
	mqtt.WARN = pahoLogger{log, zerolog.DebugLevel}
}

type lineWriter struct{ log zerolog.Logger }

func (w lineWriter) Write(p []byte) (int, error) {
	w.log.Debug().Msg(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type pahoLogger struct {
	log   zerolog.Logger
	level zerolog.Level
}

// pahoReported are the paho CRITICAL messages that the publisher reports
// itself, as its Warn "connection to broker lost" with the same reason.
var pahoReported = []string{"pingresp not received"}

func (l pahoLogger) Println(v ...any) { l.write(strings.TrimSpace(fmt.Sprintln(v...))) }

func (l pahoLogger) Printf(format string, v ...any) { l.write(fmt.Sprintf(format, v...)) }

func (l pahoLogger) write(msg string) {
	level := l.level
	if slices.ContainsFunc(pahoReported, func(s string) bool { return strings.Contains(msg, s) }) {
		level = zerolog.DebugLevel
	}
	l.log.WithLevel(level).Str("component", "mqtt-lib").Msg(msg)
}
