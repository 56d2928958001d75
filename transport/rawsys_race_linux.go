//go:build race

package transport

import (
	"errors"
	"syscall"
)

// Under the race detector, sysRead and sysWrite are the package syscall's
// calls, which tell the detector what the kernel guarantees: a write to a
// socket happens before the read of its bytes, in this process's other
// end too. Raw calls would hide that, and a test that hands data to
// itself through a socket would see races that are not there.

func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return n, errnoOf(err)
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return n, errnoOf(err)
}

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if err != nil && !errors.As(err, &e) {
		return syscall.EIO
	}
	return e
}
