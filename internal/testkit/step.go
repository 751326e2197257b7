package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// StepContext is the test's context bounded by d, for one step against a
// server; it is canceled when the test ends.
func StepContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestLogger is an info-level logger writing to the test's own output.
func TestLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(t.Output()).Level(zerolog.InfoLevel).With().Timestamp().Logger()
}
