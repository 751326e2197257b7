package statusapi

import (
	"errors"
	"fmt"
	"net/http"
)

// ReconnectSource is a Source that can make a PLC entry's session, waiting
// to reconnect, try at once.
type ReconnectSource interface {
	Reconnect(plc string) error
}

// Errors a ReconnectSource returns, answered 404 and 409.
var (
	ErrUnknownPLC = errors.New("no such plc entry")
	ErrNotWaiting = errors.New("not waiting to reconnect")
)

// reconnect answers POST /reconnect/{plc}: 202 once the session is told
// to try now, 404 for an unknown entry, 409 for one not waiting.
func (s *Server) reconnect(w http.ResponseWriter, r *http.Request) {
	plc := r.PathValue("plc")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rs, ok := s.src.(ReconnectSource)
	if !ok {
		http.Error(w, "this agent cannot reconnect on request", http.StatusNotImplemented)
		return
	}
	err := rs.Reconnect(plc)
	switch {
	case err == nil:
		s.log.Info().Str("plc", plc).Msg("reconnect asked through the status listener")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "plc %s: trying to connect now\n", plc)
	case errors.Is(err, ErrUnknownPLC):
		http.Error(w, fmt.Sprintf("plc %s: %v", plc, err), http.StatusNotFound)
	case errors.Is(err, ErrNotWaiting):
		http.Error(w, fmt.Sprintf("plc %s: %v", plc, err), http.StatusConflict)
	default:
		http.Error(w, fmt.Sprintf("plc %s: %v", plc, err), http.StatusInternalServerError)
	}
}
