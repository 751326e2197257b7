package testkit

import (
	"path/filepath"
	"runtime"
)

// Testdata is the path of a file in testkit's testdata directory, from
// the tests of any package.
func Testdata(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", name)
}

// RepoDir is the root of the repository, for tests that run its scripts.
func RepoDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
