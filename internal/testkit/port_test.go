package testkit

import (
	"fmt"
	"net"
	"testing"
)

// TestPortReserved: a reserved port is free, and reserved for one test at
// a time however many ask.
func TestPortReserved(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := Port(t)
		if seen[p] {
			t.Fatalf("port %d reserved twice", p)
		}
		seen[p] = true
	}
	p := Port(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatalf("reserved port %d: %v", p, err)
	}
	l.Close()
}
