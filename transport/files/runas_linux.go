package files

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// asUser runs fn on an OS thread of its own whose file-system identity is
// c: its file-system user and group IDs and its supplementary groups are
// c's (setfsuid, setfsgid and setgroups act on one thread on Linux), so
// every open fn makes is checked as c's, and every file it creates is
// c's. The thread is never unlocked: it ends with fn's goroutine, and the
// identity with it, so no other goroutine ever runs with it.
//
// fn must do its file work on the calling goroutine.
func asUser(c *Credential, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := become(c); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// become gives the calling thread c's file-system identity.
func become(c *Credential) error {
	groups := []int{int(c.GID)}
	if len(c.Groups) > 0 {
		groups = groups[:0]
		for _, g := range c.Groups {
			groups = append(groups, int(g))
		}
	}
	if err := unix.Setgroups(groups); err != nil {
		return fmt.Errorf("files: cannot take the groups of uid %d: %w; the agent must run as root to act as another user", c.UID, err)
	}
	// setfsgid and setfsuid report no error: they return the previous ID.
	// Calling each twice reads back what was set.
	unix.SetfsgidRetGid(int(c.GID))
	unix.SetfsuidRetUid(int(c.UID))
	gid, _ := unix.SetfsgidRetGid(-1)
	uid, _ := unix.SetfsuidRetUid(-1)
	if uint32(uid) != c.UID || uint32(gid) != c.GID {
		return fmt.Errorf("files: cannot act as uid %d gid %d (the thread has uid %d gid %d); the agent must run as root to act as another user", c.UID, c.GID, uid, gid)
	}
	return nil
}
