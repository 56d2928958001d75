package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherhq/tether/transport/wire"
)

// EarlyOpener opens streams optimistically (docs/protocol.md, "Optimistic
// open"): the opening message goes out and the stream is returned at once,
// so its first bytes follow the message without waiting for the answer.
// *Session implements it; so do the client runtime's Client and Redialer.
type EarlyOpener interface {
	OpenStreamEarly(ctx context.Context, t wire.MsgType, payload, first []byte) (*EarlyStream, error)
}

var _ EarlyOpener = (*Session)(nil)

// OpenEarly opens a stream of type t on o optimistically when o is an
// EarlyOpener, and with o.OpenStream (waiting for the answer) otherwise;
// then first, the stream's first bytes, go out.
func OpenEarly(ctx context.Context, o Opener, t wire.MsgType, payload, first []byte) (*EarlyStream, error) {
	if eo, ok := o.(EarlyOpener); ok {
		return eo.OpenStreamEarly(ctx, t, payload, first)
	}
	st, ok, err := o.OpenStream(ctx, t, payload)
	if err != nil {
		return nil, err
	}
	if len(first) > 0 {
		if _, err := st.Write(first); err != nil {
			st.Close()
			return nil, err
		}
	}
	es := &EarlyStream{Stream: st, answered: true, ok: ok}
	es.done.Store(true)
	return es, nil
}

// EarlyStream is a stream opened without waiting for its answer. Writes
// go out at once: the edge and the device hold them in the stream's
// window until the stream is spliced, and drop them if the open is
// refused. The first Read (or WriteTo) reads the answer first: on OK it
// goes on with the stream's bytes; on an Error answer it returns a
// *wire.RemoteError, and on a stream closed without an answer
// wire.ErrNoAnswer, and the stream is closed. The open's context and
// Config.OpenTimeout bound the wait for the answer (as a read deadline, so
// a read deadline set before the answer arrived is replaced by it).
type EarlyStream struct {
	*Stream

	t        wire.MsgType
	deadline time.Time // of the answer
	ctx      context.Context
	stop     func() bool // ends the context's hold on the answer's wait
	onAnswer []func(error)

	done   atomic.Bool           // the answer was read and was OK: Read's fast path
	failed atomic.Pointer[error] // why the open failed, once the answer was read

	mu sync.Mutex
	// mu guards the following.
	answered bool
	ok       []byte
	err      error
}

var _ net.Conn = (*EarlyStream)(nil)

// OpenStreamEarly opens a stream of type t and sends payload, and first,
// the stream's first bytes, in the same write (one frame while they fit),
// without waiting for the answer (see EarlyStream). ctx and
// Config.OpenTimeout bound the opening message now and the answer later.
func (s *Session) OpenStreamEarly(ctx context.Context, t wire.MsgType, payload, first []byte) (*EarlyStream, error) {
	if len(payload) > wire.MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes", wire.ErrPayloadTooLarge, len(payload))
	}
	st, err := s.OpenContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	deadline := time.Now().Add(s.cfg.OpenTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = st.SetWriteDeadline(deadline)
	msg, err := wire.AppendMessage(make([]byte, 0, wire.HeaderSize+len(payload)+len(first)), t, payload)
	if err == nil {
		_, err = st.Write(append(msg, first...))
	}
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("send %v request: %w", t, ctxErr(ctx, err))
	}
	_ = st.SetWriteDeadline(time.Time{})
	es := &EarlyStream{Stream: st, t: t, deadline: deadline, ctx: ctx}
	es.stop = context.AfterFunc(ctx, func() { _ = st.SetReadDeadline(time.Unix(1, 0)) })
	return es, nil
}

// OnAnswer has f called once with the outcome of the open when the
// answer has been read: nil for OK, the error Read returns otherwise.
// Each call adds one f; call it before the stream is read.
func (s *EarlyStream) OnAnswer(f func(error)) { s.onAnswer = append(s.onAnswer, f) }

// Answer waits for the answer, unless a Read already did, and returns
// the OK payload or why the open failed (see EarlyStream).
func (s *EarlyStream) Answer() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.answered {
		return s.ok, s.err
	}
	s.answered = true
	_ = s.Stream.SetReadDeadline(s.deadline)
	s.ok, s.err = s.readAnswer()
	if !s.stop() && s.err == nil {
		// The context ended as the answer came: the read deadline it set
		// would fail the stream's next read.
		s.err = fmt.Errorf("wait for %v answer: %w", s.t, s.ctx.Err())
	}
	if s.err != nil {
		s.failed.Store(&s.err)
		// Nothing of the stream is read any more; its early bytes are
		// dropped on the other side.
		s.Stream.Close()
	} else {
		_ = s.Stream.SetReadDeadline(time.Time{})
		s.done.Store(true)
	}
	for _, f := range s.onAnswer {
		f(s.err)
	}
	return s.ok, s.err
}

func (s *EarlyStream) readAnswer() ([]byte, error) {
	ok, err := wire.ExpectOK(s.Stream)
	if err == nil {
		return ok, nil
	}
	var re *wire.RemoteError
	if errors.As(err, &re) || errors.Is(err, wire.ErrNoAnswer) {
		return nil, err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && s.ctx.Err() == nil {
		return nil, fmt.Errorf("wait for %v answer: no answer by the open's deadline (the device or the link may be overloaded; retry): %w", s.t, err)
	}
	return nil, fmt.Errorf("wait for %v answer: %w", s.t, ctxErr(s.ctx, err))
}

// Failed returns why the open failed once its answer was read and was
// not OK, and nil otherwise: it never waits.
func (s *EarlyStream) Failed() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// answer is Answer's error, read once; later calls cost one lock.
func (s *EarlyStream) answerErr() error {
	if s.done.Load() {
		return nil
	}
	_, err := s.Answer()
	return err
}

// Read reads the answer first, then the peer's bytes (Stream.Read).
func (s *EarlyStream) Read(p []byte) (int, error) {
	if err := s.answerErr(); err != nil {
		return 0, err
	}
	return s.Stream.Read(p)
}

// WriteTo reads the answer first, then writes the peer's bytes to w
// (Stream.WriteTo).
func (s *EarlyStream) WriteTo(w io.Writer) (int64, error) {
	if err := s.answerErr(); err != nil {
		return 0, err
	}
	return s.Stream.WriteTo(w)
}
