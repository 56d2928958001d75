package transport

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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

// HalfCloseStall bounds how long Splice keeps writing into an end that
// makes no progress once the opposite direction has ended. smux has no
// stream reset: a peer that closed its stream entirely looks, from here,
// like one that only half-closed, and writes to it block for ever once its
// window is spent. A live reader that stalls this long after its own EOF
// is treated as gone too.
var HalfCloseStall = 60 * time.Second

// Splice copies a to b and b to a until both directions end, then closes
// both. When one direction reaches EOF, the other side's write half is
// closed (CloseWrite) while the reverse direction keeps flowing; from then
// on a write that makes no progress for HalfCloseStall ends the splice. A
// real error in either direction closes both ends at once. It returns the
// bytes copied each way and the first error that was not caused by the ends
// being closed or reaching EOF.
func Splice(a, b io.ReadWriteCloser) (aToB, bToA int64, err error) {
	var (
		wg         sync.WaitGroup
		once       sync.Once
		closeBoth  = func() { a.Close(); b.Close() }
		errA, errB error
		toA        = &spliceWriter{w: a}
		toB        = &spliceWriter{w: b}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		bToA, errB = spliceCopy(toA, b)
		if errB != nil {
			once.Do(closeBoth)
		} else {
			toB.otherDone.Store(true)
		}
	}()
	aToB, errA = spliceCopy(toB, a)
	if errA != nil {
		once.Do(closeBoth)
	} else {
		toA.otherDone.Store(true)
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

// spliceWriter is one direction's destination. Once the opposite direction
// has ended, it keeps a write deadline HalfCloseStall ahead, moved forward
// at most every quarter of it, so a peer that is gone cannot hold the
// splice. Only that direction's copy loop writes to it.
type spliceWriter struct {
	w         io.Writer
	otherDone atomic.Bool
	moved     time.Time // when the deadline was last moved
}

func (s *spliceWriter) Write(p []byte) (int, error) {
	if s.otherDone.Load() {
		if d, ok := s.w.(interface{ SetWriteDeadline(time.Time) error }); ok {
			if now := time.Now(); now.Sub(s.moved) > HalfCloseStall/4 {
				_ = d.SetWriteDeadline(now.Add(HalfCloseStall))
				s.moved = now
			}
		}
	}
	return s.w.Write(p)
}

// streamWriterTo is a *Stream, or a type that embeds one: its received
// frames can be handed over without another copy.
type streamWriterTo interface {
	io.WriterTo
	transportStream() *Stream
}

func (s *Stream) transportStream() *Stream { return s }

// spliceCopy copies src to dst until src's EOF, then half-closes dst. It is
// the one copy loop of the edge, the device and the CLI.
func spliceCopy(dst *spliceWriter, src io.Reader) (int64, error) {
	var (
		n   int64
		err error
	)
	if wt, ok := src.(streamWriterTo); ok {
		// smux hands over its received frames without another copy.
		n, err = wt.WriteTo(dst)
	} else {
		bp := spliceBufs.Get().(*[]byte)
		n, err = io.CopyBuffer(dst, readerOnly{src}, *bp)
		spliceBufs.Put(bp)
	}
	if err != nil {
		return n, err
	}
	if cw, ok := dst.w.(closeWriter); ok {
		if err := cw.CloseWrite(); err != nil && !isClosedErr(err) {
			return n, err
		}
	}
	return n, nil
}

// readerOnly hides WriteTo so io.CopyBuffer uses our buffer.
type readerOnly struct{ io.Reader }

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
