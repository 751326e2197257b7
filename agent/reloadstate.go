package agent

import (
	"sync"
	"time"
)

// reloadState is how the latest configuration load went, for
// tagbridge_config_last_reload_successful and its timestamp.
type reloadState struct {
	mu        sync.Mutex
	failed    bool      // the latest reload was refused
	successAt time.Time // the latest successful load after start; zero: the one at start
}

// NoteReload records a reload's outcome: ok when the configuration was
// loaded and applied, false when it was refused (the agent runs on).
func (a *Agent) NoteReload(ok bool) {
	a.reload.mu.Lock()
	defer a.reload.mu.Unlock()
	a.reload.failed = !ok
	if ok {
		a.reload.successAt = time.Now()
	}
}

// LastReload tells the status server how the latest reload went.
func (s statusSource) LastReload() (failed bool, successAt time.Time) {
	s.a.reload.mu.Lock()
	defer s.a.reload.mu.Unlock()
	return s.a.reload.failed, s.a.reload.successAt
}
