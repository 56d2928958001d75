package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/tetherhq/tether/transport/wire"
)

// Opener opens typed streams to one device: the opening message and its
// answer, then a stream ready for the type's bytes. *Session implements it;
// so do the client runtime's Client and Redialer. The client halves of the
// stream types (tcp, udp, pty) take an Opener.
type Opener interface {
	OpenStream(ctx context.Context, t wire.MsgType, payload []byte) (*Stream, []byte, error)
}

var _ Opener = (*Session)(nil)

// OpenStream opens a stream of type t, sends payload and waits for the
// answer. On OK it returns the stream, ready for the type's byte stream,
// and the OK payload. On an Error answer it returns a *wire.RemoteError; a
// stream closed without an answer returns wire.ErrNoAnswer. ctx and
// Config.OpenTimeout bound the exchange; the stream itself has no deadline
// afterwards.
func (s *Session) OpenStream(ctx context.Context, t wire.MsgType, payload []byte) (*Stream, []byte, error) {
	if len(payload) > wire.MaxPayload {
		return nil, nil, fmt.Errorf("%w: %d bytes", wire.ErrPayloadTooLarge, len(payload))
	}
	st, err := s.OpenContext(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("open stream: %w", err)
	}
	ok, err := handshake(ctx, st, s.cfg.OpenTimeout, t, payload)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, ok, nil
}

// handshake sends the opening message on st and reads the answer, within
// ctx and timeout.
func handshake(ctx context.Context, st *Stream, timeout time.Duration, t wire.MsgType, payload []byte) ([]byte, error) {
	deadline := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = st.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := wire.WriteMessage(st, t, payload); err != nil {
		return nil, fmt.Errorf("send %v request: %w", t, ctxErr(ctx, err))
	}
	ok, err := wire.ExpectOK(st)
	if err != nil {
		var re *wire.RemoteError
		if errors.As(err, &re) || errors.Is(err, wire.ErrNoAnswer) {
			return nil, err
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
			return nil, fmt.Errorf("wait for %v answer: no answer within %v (the device or the link may be overloaded; retry): %w", t, timeout, err)
		}
		return nil, fmt.Errorf("wait for %v answer: %w", t, ctxErr(ctx, err))
	}
	if !stop() {
		return nil, ctx.Err()
	}
	_ = st.SetDeadline(time.Time{})
	return ok, nil
}
