package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
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

// writeDeadliner is a destination whose blocked writes a deadline can end.
type writeDeadliner interface {
	SetWriteDeadline(time.Time) error
}

// aborter is an end that can tell its peer "this ended in error", and
// why, which a plain Close cannot: *Stream sends a stream reset (where the
// peer supports it). A *net.TCPConn is reset with a TCP RST instead.
type aborter interface {
	AbortWith(reason string) error
}

// sessionBound is an end that lives on a session: a *Stream, or a type that
// embeds one. Splice ends when that session's connection is gone while the
// stream is still open either way.
type sessionBound interface {
	connContext() context.Context
	finished() bool
	lostErr() error
}

// spliceBufs holds copy buffers the size of a full smux frame, so one read
// from a socket fills one frame.
var spliceBufs = sync.Pool{New: func() any {
	b := make([]byte, DefaultMaxFrameSize)
	return &b
}}

// DefaultHalfCloseTimeout is SpliceOptions.HalfCloseTimeout's default.
const DefaultHalfCloseTimeout = 60 * time.Second

// SpliceOptions tunes Splice. A nil *SpliceOptions means the defaults.
type SpliceOptions struct {
	// StallTimeout ends the splice when a write has made no progress for
	// this long, at any time: a reader that stopped while data waits for
	// it. Zero means no such bound (the edge sets one; a device leaves it
	// to the edge).
	StallTimeout time.Duration
	// HalfCloseTimeout ends the splice when, after one direction has
	// ended, a write in the other direction makes no progress for this
	// long. smux has no stream reset that every peer understands: a peer
	// that closed its stream entirely looks like one that only
	// half-closed, and writes to it block for ever once its window is
	// spent. The bound is armed the moment the direction ends, so a write
	// that was already blocked is covered too. Zero means
	// DefaultHalfCloseTimeout (60 s); negative means no bound.
	HalfCloseTimeout time.Duration
}

// Splice copies a to b and b to a until both directions end, then closes
// both. It is the one bidirectional copy of the edge, the device and the
// CLI.
//
// When one direction reaches a clean EOF, the other side's write half is
// closed (CloseWrite) while the reverse direction keeps flowing. Splice
// ends early, aborting both ends, when:
//   - ctx ends;
//   - the session under either end (a *Stream) loses its connection;
//   - a direction fails: a read error other than a clean EOF, such as
//     ErrConnLost, or a write error;
//   - a write makes no progress within the bounds of opts (ErrStalled).
//
// One exception: a *Stream whose peer ended it (FIN) and then reset it
// reads no more, as a command that exited with input still on its way.
// Everything it sent still goes the other way, and only the direction
// into it ends, with an error matching ErrStoppedReading (and
// ErrStreamReset).
//
// Aborting tells each peer that the stream did not end cleanly: a *Stream
// sends a reset where its peer supports one, a *net.TCPConn sends a TCP
// RST; other ends are closed. A read error is therefore never passed on as
// an EOF that means "done".
//
// It returns the bytes copied each way and the first error that was not
// caused by the ends being closed or reaching EOF: ctx's error, ErrStalled,
// ErrConnLost, or the I/O error itself.
func Splice(ctx context.Context, a, b io.ReadWriteCloser, opts *SpliceOptions) (aToB, bToA int64, err error) {
	var o SpliceOptions
	if opts != nil {
		o = *opts
	}
	if o.HalfCloseTimeout == 0 {
		o.HalfCloseTimeout = DefaultHalfCloseTimeout
	}
	sp := &splice{a: a, b: b, opts: o, stop: make(chan struct{})}
	rawA, rawB := rawTCP(a), rawTCP(b)
	sp.toA = &spliceWriter{sp: sp, w: a, raw: rawA}
	sp.toB = &spliceWriter{sp: sp, w: b, raw: rawB}
	sp.toA.other, sp.toB.other = sp.toB, sp.toA

	// Everything that ends the splice from outside aborts it; none of these
	// costs a goroutine.
	var stops []func() bool
	watch := func(c context.Context, cause func() error) {
		stops = append(stops, context.AfterFunc(c, func() { sp.abort(cause()) }))
	}
	watch(ctx, func() error { return context.Cause(ctx) })
	for _, end := range []io.ReadWriteCloser{a, b} {
		if sb, ok := end.(sessionBound); ok {
			// A stream that has both its ends behind it needs its
			// connection no more: what arrived stays readable.
			stops = append(stops, context.AfterFunc(sb.connContext(), func() {
				if !sb.finished() {
					sp.abort(sb.lostErr())
				}
			}))
		}
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()

	var (
		wg   sync.WaitGroup
		errB error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		bToA, errB = sp.copy(sp.toA, readerOf(b, rawB))
	}()
	aToB, errA := sp.copy(sp.toB, readerOf(a, rawA))
	wg.Wait()
	sp.finish()

	if e := sp.abortErr(); e != nil && !IsClosed(e) {
		return aToB, bToA, e
	}
	for _, e := range []error{errA, errB} {
		if e != nil && !IsClosed(e) {
			return aToB, bToA, e
		}
	}
	return aToB, bToA, nil
}

// ErrStoppedReading: the destination of a spliced direction finished its
// own stream and then reset it, refusing the rest: it ended before the
// source did, which is a normal end for the command or program behind it.
// A Stream's Write fails with it (and ErrStreamReset) in that case too.
var ErrStoppedReading = errors.New("transport: the other end finished and reads no more")

// stoppedReading is the error of a direction whose destination finished
// and then reset its stream: the reset, matching ErrStoppedReading too.
type stoppedReading struct{ error }

func (e stoppedReading) Is(target error) bool { return target == ErrStoppedReading }
func (e stoppedReading) Unwrap() error        { return e.error }

// ErrStalled: a spliced write made no progress within its bound
// (SpliceOptions.StallTimeout or HalfCloseTimeout); both ends were aborted.
var ErrStalled = errors.New("transport: no progress while data was waiting; stream reset")

// splice is the state of one Splice call.
type splice struct {
	a, b     io.ReadWriteCloser
	opts     SpliceOptions
	toA, toB *spliceWriter

	once     sync.Once
	stop     chan struct{} // closed when the splice is aborted or done
	abortMu  sync.Mutex
	abortE   error // guarded by abortMu: why the splice was aborted
	finished atomic.Bool
}

// abort ends both ends at once with cause. It is idempotent; the first
// cause wins.
func (sp *splice) abort(cause error) {
	sp.once.Do(func() {
		sp.abortMu.Lock()
		sp.abortE = cause
		sp.abortMu.Unlock()
		close(sp.stop)
		if sp.finished.Load() {
			return
		}
		// The ends are aborted side by side: an end whose connection is
		// stuck holds its abort until that connection dies, and the
		// other end's peer must not wait for that to learn of the abort.
		reason := resetReason(cause)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			abortEnd(sp.a, reason)
		}()
		abortEnd(sp.b, reason)
		wg.Wait()
	})
}

func (sp *splice) abortErr() error {
	sp.abortMu.Lock()
	defer sp.abortMu.Unlock()
	return sp.abortE
}

// finish closes both ends after both directions ended.
func (sp *splice) finish() {
	sp.once.Do(func() {
		sp.finished.Store(true)
		close(sp.stop)
		sp.a.Close()
		sp.b.Close()
	})
	sp.toA.stopTimer()
	sp.toB.stopTimer()
}

// abortEnd ends c so that its peer sees an error, not a clean end.
func abortEnd(c io.Closer, reason string) {
	if ab, ok := c.(aborter); ok {
		_ = ab.AbortWith(reason)
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // Close then sends RST, not FIN
	}
	_ = c.Close()
}

// resetReason is what a reset tells the peer about cause: a reset's own
// reason travels on unchanged, so it crosses every hop.
func resetReason(cause error) string {
	var (
		re *ResetError
		cl *ConnLostError
	)
	switch {
	case errors.As(cause, &re):
		return re.Reason
	case cause == nil || cause == context.Canceled:
		return "" // a plain cancel says nothing; a cause (context.Cause) does
	case errors.As(cause, &cl) && cl.Peer != "":
		return "lost the connection to " + cl.Peer
	case errors.Is(cause, ErrConnLost):
		return "a connection on the way was lost"
	case cause == ErrStalled:
		return "no progress while data was waiting"
	case errors.Is(cause, ErrKeepAliveTimeout):
		return "a connection on the way went silent"
	case errors.Is(cause, ErrProtocolViolation):
		return "a peer on the way broke the protocol"
	}
	return strings.TrimPrefix(cause.Error(), "transport: ")
}

// copy copies src to dst until src's EOF, then half-closes dst. On a real
// error it aborts the splice.
func (sp *splice) copy(dst *spliceWriter, src io.Reader) (int64, error) {
	n, err := copyInto(dst, src)
	if err == nil {
		if cw, ok := dst.w.(closeWriter); ok {
			if cerr := cw.CloseWrite(); cerr != nil && !IsClosed(cerr) {
				err = cerr
			}
		}
	}
	if err != nil && errors.Is(err, ErrStreamReset) && peerFinished(dst.w) {
		// The destination ended its stream (FIN) before it refused more of
		// ours: what it sent first, an answer or a reason, must still go
		// the other way, so this direction ends without cutting that one.
		dst.other.ended()
		if !errors.Is(err, ErrStoppedReading) {
			err = stoppedReading{err}
		}
		return n, err
	}
	if err != nil {
		switch {
		case dst.stalled.Load():
			err = ErrStalled
		case IsClosed(err):
			// A write into a stream whose connection just died fails as
			// "closed" before the loss is noticed: say what happened.
			if lost := sp.lostEnd(); lost != nil {
				err = lost
			}
		}
		sp.abort(err)
		return n, err
	}
	// This direction is done; the other one must now make progress.
	dst.other.ended()
	return n, nil
}

// peerFinished reports whether w is a stream whose peer ended it (FIN)
// before any reset.
func peerFinished(w io.Writer) bool {
	ts, ok := w.(interface{ transportStream() *Stream })
	return ok && ts.transportStream().peerEnded()
}

// lostEnd returns the loss error of an end whose session's connection is
// gone while the end was still open, or nil.
func (sp *splice) lostEnd() error {
	for _, end := range []io.ReadWriteCloser{sp.a, sp.b} {
		sb, ok := end.(sessionBound)
		if !ok || sb.finished() {
			continue
		}
		select {
		case <-sb.connContext().Done():
			return sb.lostErr()
		default:
		}
	}
	return nil
}

// copyInto moves src's bytes to dst: a *Stream hands over smux's received
// frames without another copy; anything else goes through a frame-sized
// pooled buffer.
func copyInto(dst io.Writer, src io.Reader) (int64, error) {
	if wt, ok := src.(streamWriterTo); ok {
		return wt.WriteTo(dst)
	}
	bp := spliceBufs.Get().(*[]byte)
	defer spliceBufs.Put(bp)
	return io.CopyBuffer(dst, readerOnly{src}, *bp)
}

// spliceWriter is one direction's destination. It bounds writes that make
// no progress: with a write deadline where the destination has one, and
// with a timer that aborts the splice otherwise. Only its direction's copy
// loop writes to it; ended is called from the other direction.
type spliceWriter struct {
	sp    *splice
	w     io.Writer
	raw   *rawSocket // writes to w when w is a TCP connection (rawTCP)
	other *spliceWriter

	halfClosed atomic.Bool  // the opposite direction has ended
	moved      atomic.Int64 // unix nanoseconds when the bound was last armed
	stalled    atomic.Bool  // a deadline or the timer fired on a stuck write
	writing    atomic.Bool  // a Write is in progress
	started    atomic.Int64 // unix nanoseconds when the last Write began
	progress   atomic.Int64 // completed writes

	tmu   sync.Mutex
	timer *time.Timer // guarded by tmu; for streams and destinations without deadlines
}

// bound returns the no-progress bound that applies now, or 0 for none.
func (s *spliceWriter) bound() time.Duration {
	o := s.sp.opts
	d := o.StallTimeout
	if s.halfClosed.Load() && o.HalfCloseTimeout > 0 && (d == 0 || o.HalfCloseTimeout < d) {
		d = o.HalfCloseTimeout
	}
	return d
}

// arm (re)sets the bound on the next or current write. force sets it even
// if it was moved recently.
func (s *spliceWriter) arm(force bool) {
	d := s.bound()
	if d <= 0 {
		return
	}
	now := time.Now()
	if !force {
		s.started.Store(now.UnixNano()) // arm(false) starts each Write
	}
	if !force && time.Duration(now.UnixNano()-s.moved.Load()) < d/4 {
		return // a write starts with at least 3/4 of the bound ahead
	}
	s.moved.Store(now.UnixNano())
	if _, onSession := s.w.(sessionBound); !onSession {
		if wd, ok := s.w.(writeDeadliner); ok {
			_ = wd.SetWriteDeadline(now.Add(d))
			return
		}
	}
	// A stream is watched by the timer: its deadline bounds the waits
	// for the peer's window and for its turn, not a frame whose write to
	// a connection that does not drain has begun. Either way the timer's abort resets the other end at
	// once (an end whose connection is stuck holds its own abort).
	s.armTimer(d)
}

// armTimer watches a write that no deadline ends: when the bound passes,
// see expire.
func (s *spliceWriter) armTimer(d time.Duration) {
	s.tmu.Lock()
	defer s.tmu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
	}
	seen := s.progress.Load()
	s.timer = time.AfterFunc(d, func() { s.expire(seen) })
}

// expire runs when the bound armed after seen completed writes has passed.
// A write stuck since then aborts the splice. A write that began later
// gets the rest of its own bound, counted from its start; with no write
// under way, the next one arms the bound again.
func (s *spliceWriter) expire(seen int64) {
	select {
	case <-s.sp.stop:
		return
	default:
	}
	switch {
	case !s.writing.Load():
	case s.progress.Load() == seen:
		s.stalled.Store(true)
		s.sp.abort(ErrStalled)
	default:
		left := time.Duration(s.started.Load() + int64(s.bound()) - time.Now().UnixNano())
		s.armTimer(max(left, 0))
	}
}

func (s *spliceWriter) stopTimer() {
	s.tmu.Lock()
	defer s.tmu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
	}
}

// ended records that the opposite direction has ended, and arms the
// half-close bound at once, so that a write already blocked is covered.
func (s *spliceWriter) ended() {
	s.halfClosed.Store(true)
	if s.writing.Load() {
		s.arm(true)
	}
}

func (s *spliceWriter) Write(p []byte) (int, error) {
	s.writing.Store(true)
	s.arm(false)
	var (
		n   int
		err error
	)
	if s.raw != nil {
		n, err = s.raw.Write(p)
	} else {
		n, err = s.w.Write(p)
	}
	s.writing.Store(false)
	s.progress.Add(1)
	if err != nil && isTimeout(err) {
		s.stalled.Store(true)
	}
	return n, err
}

// streamWriterTo is a *Stream, or a type that embeds one: its received
// frames can be handed over without another copy.
type streamWriterTo interface {
	io.WriterTo
	transportStream() *Stream
}

func (s *Stream) transportStream() *Stream { return s }

// rawTCP returns the raw reads and writes of end when it is a TCP
// connection (rawio_linux.go), or nil. Its deadlines, half-close and
// close stay end's.
func rawTCP(end io.ReadWriteCloser) *rawSocket {
	switch c := end.(type) {
	case *net.TCPConn:
		return rawSocketOf(c)
	case tcpEnd:
		return rawSocketOf(c.TCP())
	}
	return nil
}

// tcpEnd is an end that is a TCP connection with more to it, such as an
// abort of its own (AbortWith): TCP returns the connection, whose
// bytes are the end's.
type tcpEnd interface {
	TCP() *net.TCPConn
}

// readerOf returns what a splice reads end with: raw, when end has it.
func readerOf(end io.ReadWriteCloser, raw *rawSocket) io.Reader {
	if raw != nil {
		return raw
	}
	return end
}

// readerOnly hides WriteTo so io.CopyBuffer uses our buffer.
type readerOnly struct{ io.Reader }

// isTimeout reports a deadline that fired.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// IsClosed reports errors that mean "the other side or we closed" a
// connection, stream or socket, not a failure worth reporting: net.ErrClosed,
// io.EOF, io.ErrClosedPipe, os.ErrClosed, ErrSessionClosed, EPIPE and
// ECONNRESET.
func IsClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.ErrClosedPipe) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, os.ErrClosed) ||
		errors.Is(err, ErrSessionClosed) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET)
}
