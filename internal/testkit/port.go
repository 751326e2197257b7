package testkit

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Ports come from below Linux's ephemeral range (32768-60999), which
// outgoing connections take theirs from: only a listener can hold one.
const (
	portMin = 20000
	portMax = 32767
)

// Port reserves a loopback TCP port until the test ends: nothing listened
// on it when it was reserved, and no other test, in this process or
// another, reserves it meanwhile (each reservation holds an flock on a
// file named after the port), so a server started on it, or restarted,
// finds it free. Listening on port 0 and closing cannot promise that.
func Port(t testing.TB) int {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "tagbridge-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatalf("port reservations: %v", err)
	}
	for range 500 {
		port := portMin + rand.IntN(portMax-portMin+1)
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(port)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close() // another test holds it
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			f.Close() // something else listens on it
			continue
		}
		l.Close()
		t.Cleanup(func() { f.Close() })
		return port
	}
	t.Fatal("no free loopback port in 500 tries")
	return 0
}

// Addr is a reserved loopback address (see Port).
func Addr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", Port(t))
}
