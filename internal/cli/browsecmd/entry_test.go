package browsecmd

import (
	"bytes"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Progress lines come once a second, from the second second of a walk on.
func TestBrowseProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		var visited atomic.Int64
		stop := progress(&buf, &visited)
		visited.Store(500)
		time.Sleep(1500 * time.Millisecond)
		visited.Store(4000)
		time.Sleep(2 * time.Second) // to 3.5 s: ticks at 2 s and 3 s
		stop()
		if got, want := buf.String(), "browse: 4000 nodes visited, 2000/s\nbrowse: 4000 nodes visited, 1333/s\n"; got != want {
			t.Errorf("progress output %q, want %q", got, want)
		}
	})
}
