// Package inherit keeps what a process inherited from whoever started it
// away from the programs it starts in turn.
//
// A descriptor a process inherits without close-on-exec (a script's
// "exec 7<file", a supervisor's socket, a leaked pipe) passes to every
// program the process executes. Go opens its own files close-on-exec, so
// marking the inherited ones is all it takes for a child to get exactly
// the descriptors it is handed.
package inherit

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxScan bounds the descriptors probed one by one when /proc is not
// mounted.
const maxScan = 1 << 16

// CloseOnExec marks every open descriptor numbered from or above close-on-exec,
// so that no program the process executes inherits it; the process itself
// keeps it open. It returns how many descriptors it had to mark. Call it
// first thing in main, with from = 3 to keep stdin, stdout and stderr.
func CloseOnExec(from int) (int, error) {
	fds, err := openFDs(from)
	if err != nil {
		return 0, err
	}
	marked := 0
	for _, fd := range fds {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			continue // closed since it was listed (the listing's own descriptor)
		}
		if flags&unix.FD_CLOEXEC != 0 {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, flags|unix.FD_CLOEXEC); err != nil {
			return marked, fmt.Errorf("inherit: mark descriptor %d close-on-exec: %w", fd, err)
		}
		marked++
	}
	return marked, nil
}

// openFDs lists the open descriptors numbered from or above: from
// /proc/self/fd, or, without /proc, by probing each number up to the
// descriptor limit.
func openFDs(from int) ([]int, error) {
	names, err := readDirNames("/proc/self/fd")
	if err == nil {
		var fds []int
		for _, name := range names {
			if fd, err := strconv.Atoi(name); err == nil && fd >= from {
				fds = append(fds, fd)
			}
		}
		return fds, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("inherit: list open descriptors: %w", err)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return nil, fmt.Errorf("inherit: descriptor limit: %w", err)
	}
	top := int(min(lim.Cur, maxScan))
	var fds []int
	for fd := from; fd < top; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
			fds = append(fds, fd)
		}
	}
	return fds, nil
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
