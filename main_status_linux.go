package main

import (
	"bufio"
	byteorder "encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// listenerUID returns the user id of the process listening at the other
// end of c: from the kernel's peer credentials for a unix socket, from
// /proc/net/tcp{,6} for a TCP connection to this machine.
func listenerUID(c net.Conn) (uint32, error) {
	switch c := c.(type) {
	case *net.UnixConn:
		raw, err := c.SyscallConn()
		if err != nil {
			return 0, err
		}
		var cred *syscall.Ucred
		var credErr error
		if err := raw.Control(func(fd uintptr) {
			cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
		}); err != nil {
			return 0, err
		}
		if credErr != nil {
			return 0, fmt.Errorf("peer credentials: %w", credErr)
		}
		return cred.Uid, nil
	case *net.TCPConn:
		remote, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err != nil {
			return 0, err
		}
		return tcpListenerUID(remote)
	}
	return 0, fmt.Errorf("%T connection", c)
}

// tcpListenerUID finds the listening socket that accepts connections to
// remote in /proc/net/tcp and tcp6: one bound to that address, or else to
// the unspecified address, on that port.
func tcpListenerUID(remote netip.AddrPort) (uint32, error) {
	want := remote.Addr().Unmap()
	var wildcard *uint32
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return 0, err
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
			fields := strings.Fields(sc.Text())
			if len(fields) < 8 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			local, err := parseProcAddr(fields[1])
			if err != nil || local.Port() != remote.Port() {
				continue
			}
			uid, err := strconv.ParseUint(fields[7], 10, 32)
			if err != nil {
				continue
			}
			u := uint32(uid)
			switch addr := local.Addr().Unmap(); {
			case addr == want:
				f.Close()
				return u, nil
			case addr.IsUnspecified() && wildcard == nil:
				wildcard = &u
			}
		}
		f.Close()
	}
	if wildcard != nil {
		return *wildcard, nil
	}
	return 0, fmt.Errorf("no listening socket for %s in /proc/net/tcp", remote)
}

// parseProcAddr parses /proc/net/tcp's "0100007F:1F90": the address as
// 32-bit words in the host's byte order, the port in big-endian hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(ipHex)
	if err != nil || len(raw) != 4 && len(raw) != 16 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		byteorder.BigEndian.PutUint32(raw[i:], byteorder.NativeEndian.Uint32(raw[i:]))
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr, uint16(port)), nil
}
