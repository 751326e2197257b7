package main

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tagbridge/tagbridge/config"
)

// TestLoggerJournal: with stderr connected to the journal (JOURNAL_STREAM
// naming its device and inode), each line carries its priority, console
// lines no colour; timestamps have milliseconds.
func TestLoggerJournal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	st := fi.Sys().(*syscall.Stat_t)
	for _, format := range []string{"json", "console"} {
		t.Setenv("JOURNAL_STREAM", strconv.FormatUint(uint64(st.Dev), 10)+":"+strconv.FormatUint(st.Ino, 10))
		f.Truncate(0)
		f.Seek(0, 0)
		log := newLogger(config.Agent{LogFormat: format, LogLevel: "debug"}, f)
		log.Debug().Msg("d")
		log.Info().Msg("i")
		log.Warn().Msg("w")
		log.Error().Msg("e")
		b, _ := os.ReadFile(f.Name())
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 4 {
			t.Fatalf("%s: %d lines, want 4:\n%s", format, len(lines), b)
		}
		for i, prio := range []string{"<7>", "<6>", "<4>", "<3>"} {
			if !strings.HasPrefix(lines[i], prio) {
				t.Errorf("%s line %d: %q, want the prefix %s", format, i, lines[i], prio)
			}
		}
		if strings.Contains(string(b), "\x1b[") {
			t.Errorf("%s: colour codes in the journal:\n%q", format, b)
		}
		if format == "json" && !regexp.MustCompile(`"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}`).Match(b) {
			t.Errorf("json: no millisecond timestamp:\n%s", b)
		}
	}

	// Not the journal's stream: no prefix, and no colour in a file.
	t.Setenv("JOURNAL_STREAM", "1:2")
	f.Truncate(0)
	f.Seek(0, 0)
	plain := newLogger(config.Agent{LogFormat: "console", LogLevel: "info"}, f)
	plain.Warn().Msg("w")
	b, _ := os.ReadFile(f.Name())
	if strings.HasPrefix(string(b), "<") || strings.Contains(string(b), "\x1b[") || !regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} WRN w`).Match(b) {
		t.Errorf("console to a file: %q, want plain text with milliseconds", b)
	}
}
