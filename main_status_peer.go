package main

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"slices"
	"strconv"
	"syscall"
)

// Before the token is sent, tagbridge status checks who holds the status
// listener: while the agent is down, any local user may listen on its
// port or socket path and collect the token. The listener must belong to
// root, to the user running the command, or to the owner of the token
// file (the agent's user: the file is 0600 and the agent reads it).

// trustedListeners are the user ids that may hold the status listener.
type trustedListeners struct {
	uids      []uint32
	tokenFile string
	tokenUID  int // -1 when the token file's owner is unknown
}

func newTrustedListeners(tokenFile string) trustedListeners {
	t := trustedListeners{uids: []uint32{0, uint32(os.Getuid())}, tokenFile: tokenFile, tokenUID: -1}
	if fi, err := os.Stat(tokenFile); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			t.uids = append(t.uids, st.Uid)
			t.tokenUID = int(st.Uid)
		}
	}
	return t
}

// untrustedListener is why the token was not sent: reported as it is.
type untrustedListener struct{ msg string }

func (e *untrustedListener) Error() string { return e.msg }

// verifyListener returns an *untrustedListener unless the process at the other end of
// c, a fresh connection to the status listener at addr, runs as a trusted
// user. Nothing has been sent on c yet.
func (t trustedListeners) verifyListener(c net.Conn, addr string) error {
	uid, err := listenerUID(c)
	if err != nil {
		return &untrustedListener{fmt.Sprintf("cannot tell who listens at %s, so the token is not sent: %v (a unix socket for agent.status_listen avoids this)", addr, err)}
	}
	if slices.Contains(t.uids, uid) {
		return nil
	}
	owner := "unknown"
	if t.tokenUID >= 0 {
		owner = "uid " + strconv.Itoa(t.tokenUID)
	}
	return &untrustedListener{fmt.Sprintf("%s is held by a process of %s, neither root, you (uid %d) nor the owner of %s (%s): the token is not sent to it; is the agent down and another program on its address?",
		addr, describeUID(uid), os.Getuid(), t.tokenFile, owner)}
}

func describeUID(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return "user " + u.Username + " (uid " + id + ")"
	}
	return "uid " + id
}
