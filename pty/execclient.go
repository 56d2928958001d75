package pty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// ErrNoExitStatus: an exec stream ended without the device's exit frame
// (the device or its connection went away before the command's end was
// known). The output received may be incomplete.
var ErrNoExitStatus = errors.New("pty: the remote command ended without an exit status")

// ExecSession is the client side of a command run without a terminal (an
// exec stream): Write feeds its stdin, CloseWrite ends that, and Wait
// copies its stdout and stderr apart and returns how it ended. Close the
// session when done; closing it before the exit status arrived hangs the
// command up (its process group gets SIGHUP, then SIGKILL).
type ExecSession struct {
	st *transport.Stream

	mu sync.Mutex
	// mu guards the following, and orders frames on the stream.
	eofSent bool
	buf     []byte
}

// Exec starts command on the device through o: run by the run-as user's
// shell (`shell -c command`), or, when command is empty, that shell as a
// login shell reading stdin. Nothing runs on a terminal.
func Exec(ctx context.Context, o transport.Opener, command string) (*ExecSession, error) {
	payload, err := wire.ExecRequest{Command: command}.Encode()
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	st, _, err := o.OpenStream(ctx, wire.MsgExec, payload)
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	return &ExecSession{st: st}, nil
}

// Write sends p to the command's stdin, in frames of at most
// wire.MaxExecData bytes. It blocks while the device does not read (the
// stream's window is full).
func (e *ExecSession) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.eofSent {
		return 0, fmt.Errorf("exec: write after the end of stdin: %w", io.ErrClosedPipe)
	}
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), wire.MaxExecData)]
		var err error
		e.buf, err = wire.AppendExecFrame(e.buf[:0], wire.ExecStdin, chunk)
		if err != nil {
			return n, err
		}
		if _, err := e.st.Write(e.buf); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// CloseWrite passes the end of stdin to the command. Later calls do
// nothing.
func (e *ExecSession) CloseWrite() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.eofSent {
		return nil
	}
	e.eofSent = true
	b, _ := wire.AppendExecFrame(nil, wire.ExecStdinEOF, nil)
	_, err := e.st.Write(b)
	return err
}

// exitGrace bounds Wait's wait for the stream's end after the exit frame.
const exitGrace = time.Second

// Wait copies the command's stdout and stderr to stdout and stderr until
// its exit frame arrives, and returns its status. A stream that ends
// without one yields ErrNoExitStatus; a stream reset by the device or the
// edge yields the transport's *ResetError; a failing stdout or stderr is
// returned as it is.
//
// After the exit frame, Wait waits (a second at most) for the end of the
// stream that follows it, as ssh waits for a channel's close after its
// exit status: a client that closes its session as soon as Wait returns
// then leaves a stream that ended on both sides, which the edge records
// as a normal end, rather than one cut while its end was on the way.
func (e *ExecSession) Wait(stdout, stderr io.Writer) (wire.ExitStatus, error) {
	r := wire.NewExecReader(e.st)
	for {
		f, err := r.ReadExecFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, wire.ErrTruncated) {
				return wire.ExitStatus{}, ErrNoExitStatus
			}
			if errors.Is(err, wire.ErrInvalidExecFrame) {
				_ = e.st.AbortWith("exec: " + err.Error())
			}
			return wire.ExitStatus{}, fmt.Errorf("exec: %w", err)
		}
		if !f.Channel.FromDevice() {
			reason := fmt.Sprintf("exec: a device may not send a %v frame", f.Channel)
			_ = e.st.AbortWith(reason)
			return wire.ExitStatus{}, fmt.Errorf("%w: %s", wire.ErrInvalidExecFrame, reason)
		}
		switch f.Channel {
		case wire.ExecStdout:
			if _, err := stdout.Write(f.Data); err != nil {
				return wire.ExitStatus{}, err
			}
		case wire.ExecStderr:
			if _, err := stderr.Write(f.Data); err != nil {
				return wire.ExitStatus{}, err
			}
		case wire.ExecExit:
			s, err := wire.DecodeExecExit(f.Data)
			if err != nil {
				_ = e.st.AbortWith("exec: " + err.Error())
				return wire.ExitStatus{}, err
			}
			e.awaitEnd()
			return s, nil
		}
	}
}

// awaitEnd reads the stream to its end, for exitGrace at most. Nothing
// may follow the exit frame: what does is dropped.
func (e *ExecSession) awaitEnd() {
	_ = e.st.SetReadDeadline(time.Now().Add(exitGrace))
	var buf [512]byte
	for {
		if _, err := e.st.Read(buf[:]); err != nil {
			break
		}
	}
	_ = e.st.SetReadDeadline(time.Time{})
}

// Close closes the stream. It is idempotent.
func (e *ExecSession) Close() error { return e.st.Close() }

// Abort resets the stream, without waiting for a write.
func (e *ExecSession) Abort() error { return e.st.Abort() }
