package main

import (
	"strings"

	"github.com/rs/zerolog"
)

// gopcuaLogger adapts zerolog to gopcua's printf-style server.Logger.
type gopcuaLogger struct{ log zerolog.Logger }

// quietPrefixes start gopcua messages that are expected and harmless, logged
// at debug level whatever level gopcua chose.
var quietPrefixes = []string{
	"Duplicate reference type", // importing its own namespace 0 nodeset
	"sessionBroker.Session:",   // looking up closed sessions in reapOrphans
	"socket closed:",           // the listener closing at shutdown
}

func (l gopcuaLogger) event(level zerolog.Level, msg string) *zerolog.Event {
	for _, p := range quietPrefixes {
		if strings.HasPrefix(msg, p) {
			return l.log.Debug()
		}
	}
	return l.log.WithLevel(level)
}

func (l gopcuaLogger) Debug(msg string, args ...any) {
	l.log.Debug().Msgf(strings.TrimSpace(msg), args...)
}

func (l gopcuaLogger) Info(msg string, args ...any) {
	l.event(zerolog.InfoLevel, msg).Msgf(strings.TrimSpace(msg), args...)
}

func (l gopcuaLogger) Warn(msg string, args ...any) {
	l.event(zerolog.WarnLevel, msg).Msgf(strings.TrimSpace(msg), args...)
}

func (l gopcuaLogger) Error(msg string, args ...any) {
	l.event(zerolog.ErrorLevel, msg).Msgf(strings.TrimSpace(msg), args...)
}

// debugWriter turns the standard library logger's lines, which gopcua's
// server also writes to, into debug messages.
type debugWriter struct{ log zerolog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
