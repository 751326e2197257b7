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

func TestPasswordEnvFor(t *testing.T) {
	for plc, want := range map[string]string{
		"press1":        "TAGBRIDGE_PRESS1_PASSWORD",
		"Line-2.oven":   "TAGBRIDGE_LINE_2_OVEN_PASSWORD",
		"192.168.0.10":  "TAGBRIDGE_192_168_0_10_PASSWORD",
		"Öfen 3":        "TAGBRIDGE__FEN_3_PASSWORD",
		"MixedCase_ok9": "TAGBRIDGE_MIXEDCASE_OK9_PASSWORD",
	} {
		if got := PasswordEnvFor(plc); got != want {
			t.Errorf("PasswordEnvFor(%q) = %q, want %q", plc, got, want)
		}
	}
}
