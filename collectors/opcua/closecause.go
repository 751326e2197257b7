package opcua

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gopcua/opcua/ua"
)

// serverSideTexts reword the status codes a server ends a session with.
// The standard's own texts read as if the agent did it: BadSessionClosed
// is "The session was closed by the client.", BadShutdown "... the
// application is shutting down." (the server's, not the agent).
var serverSideTexts = map[ua.StatusCode]string{
	ua.StatusBadSessionClosed: "the server closed the session",
	ua.StatusBadShutdown:      "the server is shutting down",
	ua.StatusBadServerHalted:  "the server has stopped",
}

// serverSide words err, when a server's status code ended the session, as
// the server's doing; the error chain is kept.
func serverSide(err error) error {
	if err == nil {
		return nil
	}
	for code, text := range serverSideTexts {
		if errors.Is(err, code) {
			return &reworded{err: err, code: code, text: text}
		}
	}
	return err
}

type reworded struct {
	err  error
	code ua.StatusCode
	text string
}

// Error replaces the standard text where the message holds it, and
// otherwise puts the server's doing first.
func (r *reworded) Error() string {
	msg := r.err.Error()
	if strings.Contains(msg, r.code.Error()) {
		name := statusName(r.code)
		return strings.Replace(msg, r.code.Error(), fmt.Sprintf("%s (%s, 0x%08X)", r.text, name, uint32(r.code)), 1)
	}
	return r.text + ": " + msg
}

func (r *reworded) Unwrap() error { return r.err }
