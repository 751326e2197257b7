// Command faultproxy runs the fault-injection proxy by hand or from soak
// scripts:
//
//	go run ./scripts/faultproxy/cmd -target 127.0.0.1:4840
//
// It prints "READY host:port" once it listens, then reads one command per
// line on stdin: freeze, thaw, cut, refuse, accept (stop refusing), stats.
// Each command is answered with "OK <command>" on stdout. It stops at the end
// of stdin, or on SIGINT or SIGTERM.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/tagbridge/tagbridge/scripts/faultproxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	target := flag.String("target", "", "host:port to forward to (required)")
	flag.Parse()
	if *target == "" {
		fmt.Fprintln(os.Stderr, "faultproxy: -target is required")
		os.Exit(2)
	}
	p, err := faultproxy.Listen(*listen, *target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultproxy:", err)
		os.Exit(1)
	}
	defer p.Close()
	fmt.Println("READY", p.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- strings.TrimSpace(sc.Text())
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case cmd, ok := <-lines:
			if !ok {
				return
			}
			switch cmd {
			case "freeze":
				p.Freeze()
			case "thaw":
				p.Thaw()
			case "cut":
				p.Cut()
			case "refuse":
				p.Refuse(true)
			case "accept":
				p.Refuse(false)
			case "stats":
				fmt.Printf("accepted=%d open=%d\n", p.Accepted(), p.Open())
			case "":
				continue
			default:
				fmt.Fprintf(os.Stderr, "faultproxy: unknown command %q (freeze, thaw, cut, refuse, accept, stats)\n", cmd)
				continue
			}
			fmt.Println("OK", cmd)
		}
	}
}
