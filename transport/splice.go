package transport

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// closeWriter is a connection that can end its write side alone
// (*Stream, *net.TCPConn, *tls.Conn, *net.UnixConn).
type closeWriter interface {
	CloseWrite() error
}

// spliceBufs holds copy buffers the size of a full smux frame, so one read
// from a socket fills one frame.
var spliceBufs = sync.Pool{New: func() any {
	b := make([]byte, DefaultMaxFrameSize)
	return &b
}}

// Splice copies a to b and b to a until both directions end, then closes
// both. When one direction reaches EOF, the other side's write half is
// closed (CloseWrite) while the reverse direction keeps flowing. A real
// error in either direction closes both ends at once. It returns the bytes
// copied each way and the first error that was not caused by the ends
// being closed or reaching EOF.
func Splice(a, b io.ReadWriteCloser) (aToB, bToA int64, err error) {
	var (
		wg         sync.WaitGroup
		once       sync.Once
		closeBoth  = func() { a.Close(); b.Close() }
		errA, errB error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		bToA, errB = spliceCopy(a, b)
		if errB != nil {
			once.Do(closeBoth)
		}
	}()
	aToB, errA = spliceCopy(b, a)
	if errA != nil {
		once.Do(closeBoth)
	}
	wg.Wait()
	once.Do(closeBoth)
	if errA != nil && !isClosedErr(errA) {
		return aToB, bToA, errA
	}
	if errB != nil && !isClosedErr(errB) {
		return aToB, bToA, errB
	}
	return aToB, bToA, nil
}

// spliceCopy copies src to dst until src's EOF, then half-closes dst. It is
// the one copy loop of the edge, the device and the CLI.
func spliceCopy(dst io.Writer, src io.Reader) (int64, error) {
	var (
		n   int64
		err error
	)
	if wt, ok := src.(*Stream); ok {
		// smux hands over its received frames without another copy.
		n, err = wt.WriteTo(dst)
	} else {
		bp := spliceBufs.Get().(*[]byte)
		n, err = io.CopyBuffer(writerOnly{dst}, readerOnly{src}, *bp)
		spliceBufs.Put(bp)
	}
	if err != nil {
		return n, err
	}
	if cw, ok := dst.(closeWriter); ok {
		if err := cw.CloseWrite(); err != nil && !isClosedErr(err) {
			return n, err
		}
	}
	return n, nil
}

// readerOnly and writerOnly hide ReadFrom/WriteTo so io.CopyBuffer uses our
// buffer.
type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }

// isClosedErr reports errors that mean "the other side or we closed", not a
// failure worth reporting.
func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.ErrClosedPipe) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, os.ErrClosed) ||
		errors.Is(err, ErrSessionClosed) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET)
}
