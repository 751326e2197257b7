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
