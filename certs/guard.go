package certs

import (
	"os"
	"path/filepath"
	"strings"
)

// Guard confines certificate, key, CA and CRL paths to a set of allowed
// directories.
type Guard struct {
	Dirs []string
}

// Check makes path absolute, resolves "..", and symlinks (of the path and of
// the allowed directories), and returns the resolved path if it lies inside
// an allowed directory. A symlink inside an allowed directory that points
// outside all of them is refused. The error wraps ErrNotAllowed, or the
// fs error when the path does not exist.
func (g Guard) Check(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	// Lexically outside every allowed directory: refused whether or not it exists.
	lexicalOK := false
	for _, d := range g.Dirs {
		if da, err := filepath.Abs(d); err == nil && within(abs, da) {
			lexicalOK = true
		}
		if dr, err := filepath.EvalSymlinks(d); err == nil && within(abs, absOr(dr)) {
			lexicalOK = true
		}
	}
	if !lexicalOK {
		return "", fail(ErrNotAllowed, "%s is not in an allowed directory (%s)", path, g.list())
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", err
	}
	resolved = absOr(resolved)
	for _, d := range g.Dirs {
		dr, err := filepath.EvalSymlinks(d)
		if err != nil {
			continue
		}
		if within(resolved, absOr(dr)) {
			return resolved, nil
		}
	}
	return "", fail(ErrNotAllowed, "%s resolves to %s, which is not in an allowed directory (%s)", path, resolved, g.list())
}

func (g Guard) list() string {
	if len(g.Dirs) == 0 {
		return "none configured"
	}
	return strings.Join(g.Dirs, ", ")
}

func absOr(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// within reports whether the clean absolute path p is dir or lies below it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	if err != nil {
		return false
	}
	return rel != ".." && !strings.HasPrefix(rel, ".."+string(os.PathSeparator)) && !filepath.IsAbs(rel)
}
