package transport

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// A relay of small messages makes each Tether process wake up for every
// message, and Go's runtime wakes its monitor thread (sysmon) at the
// first system call after the process was idle: the monitor watches
// blocking calls, to hand their P to other goroutines. That cost each
// process about five of its ten context switches per stream opened
// through the edge (measured with perf's sched_switch). A socket of the
// net package is non-blocking, so its reads and writes never block: one
// that would, waits in the netpoller instead. So rawSocket makes those of
// a session's socket and of a spliced TCP connection as raw system calls,
// which skip that bookkeeping and leave the monitor asleep. Race builds
// make them through package syscall (rawsys_race_linux.go).

// rawSocket does the reads and writes of a session's TCP socket, and of
// a spliced TCP connection (Splice).
type rawSocket struct {
	c  net.Conn
	rc syscall.RawConn
}

// rawSocketOf returns c's rawSocket, or nil when c is not a TCP socket.
func rawSocketOf(c net.Conn) *rawSocket {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return &rawSocket{c: c, rc: rc}
}

// Read is net.Conn's Read: it waits for data within the read deadline,
// and returns io.EOF at the peer's end.
func (s *rawSocket) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var (
		n     int
		errno syscall.Errno
	)
	err := s.rc.Read(func(fd uintptr) bool {
		for {
			r, e := sysRead(fd, p)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			}
			n, errno = r, e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, s.opError("read", err)
	case errno != 0:
		return 0, s.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write is net.Conn's Write: it writes all of p within the write
// deadline, or fails.
func (s *rawSocket) Write(p []byte) (int, error) {
	var (
		n     int
		errno syscall.Errno
	)
	err := s.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			r, e := sysWrite(fd, p[n:])
			switch e {
			case 0:
				n += r
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return n, s.opError("write", err)
	case errno != 0:
		return n, s.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// opError wraps err as the net package does, so that it reads and
// matches (net.ErrClosed, os.ErrDeadlineExceeded, syscall errors) the
// same. syscall.RawConn's own errors name its "raw-read" or "raw-write":
// what they wrap takes their place.
func (s *rawSocket) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.c.LocalAddr(), Addr: s.c.RemoteAddr(), Err: err}
}
