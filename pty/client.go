package pty

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// DefaultCols and DefaultRows size a terminal whose client sent 0, and the
// one a client without a terminal asks for.
const DefaultCols, DefaultRows = 80, 24

// ErrExitStatusUnsupported is returned when the device's agent has no
// exit-status extension.
var (
	// ErrExitStatusUnsupported: the device does not implement the
	// exit-status extension (it closed the stream without answering or
	// answered OK without a status). The remote exit status is unknown.
	ErrExitStatusUnsupported = errors.New("pty: the device does not report exit statuses (its agent predates the PTY exit-status extension); the remote exit status is unknown")
)

// Request describes a PTY session to open.
type Request struct {
	// Cols and Rows give the initial window size; zero lets the device
	// choose (80x24 on ours).
	Cols, Rows int
	// Command runs instead of the login shell when set, with Args.
	Command string
	Args    []string
	// Term is the TERM value for the session; empty means the device's
	// default, xterm-256color.
	Term string
}

// Session is the client side of an open PTY session: the stream carries
// the terminal's bytes both ways, and ID names the session on the device
// for Resize and ExitStatus.
//
// Closing the stream, or its write side, hangs the session up: the device
// sends SIGHUP to the session's processes. To pass end-of-input on while
// still reading the output (pipe mode), call SendEOF instead.
type Session struct {
	*transport.Stream
	o transport.Opener
	// ID is the session ID the device answered with.
	ID string

	lastByte atomic.Int32 // last byte written, or -1 when nothing was written
}

// Write sends terminal input.
func (p *Session) Write(b []byte) (int, error) {
	n, err := p.Stream.Write(b)
	if n > 0 {
		p.lastByte.Store(int32(b[n-1]))
	}
	return n, err
}

// SendEOF passes end-of-input to the remote program: it writes the
// terminal's EOF character (Ctrl-D), twice when the last byte written did
// not end a line (the first one then only flushes the pending line). It
// works while the remote terminal is in canonical mode, as it is for a
// shell or a command reading lines.
func (p *Session) SendEOF() error {
	eof := []byte{wire.PTYEOF}
	if last := p.lastByte.Load(); last >= 0 && last != '\n' && last != '\r' {
		eof = append(eof, wire.PTYEOF)
	}
	_, err := p.Stream.Write(eof)
	return err
}

// Open opens a PTY session on the device through o: the login shell, or
// req.Command with req.Args, on a new terminal of the requested size.
func Open(ctx context.Context, o transport.Opener, req Request) (*Session, error) {
	cmd := wire.PTYCommand{Type: wire.PTYResize, Cols: req.Cols, Rows: req.Rows, Command: req.Command, CommandArgs: req.Args, Term: req.Term}
	payload, err := cmd.Encode()
	if err != nil {
		return nil, fmt.Errorf("open PTY: %w", err)
	}
	st, ok, err := o.OpenStream(ctx, wire.MsgPTY, payload)
	if err != nil {
		return nil, fmt.Errorf("open PTY: %w", err)
	}
	id := string(bytes.TrimSpace(ok))
	if wire.ValidateSessionID(id) != nil {
		st.Close()
		return nil, fmt.Errorf("open PTY: the device answered with an invalid session ID (%d bytes)", len(ok))
	}
	p := &Session{Stream: st, o: o, ID: id}
	p.lastByte.Store(-1)
	return p, nil
}

// Resize sets the session's window size; the remote program gets SIGWINCH.
func (p *Session) Resize(ctx context.Context, cols, rows int) error {
	return Resize(ctx, p.o, p.ID, cols, rows)
}

// ExitStatus waits for the session's process to end and returns how it
// ended: see WaitExit.
func (p *Session) ExitStatus(ctx context.Context) (wire.ExitStatus, error) {
	return WaitExit(ctx, p.o, p.ID)
}

// Resize sets the window size of session sid through o; the remote
// program gets SIGWINCH.
func Resize(ctx context.Context, o transport.Opener, sid string, cols, rows int) error {
	if cols < 1 || rows < 1 {
		return fmt.Errorf("resize PTY: %w: window size %dx%d must be at least 1x1", wire.ErrInvalidPTYCommand, cols, rows)
	}
	st, err := command(ctx, o, wire.PTYCommand{SID: sid, Type: wire.PTYResize, Cols: cols, Rows: rows})
	if err != nil {
		return fmt.Errorf("resize PTY: %w", err)
	}
	st.Close()
	return nil
}

func command(ctx context.Context, o transport.Opener, cmd wire.PTYCommand) (*transport.Stream, error) {
	if cmd.SID == "" {
		return nil, fmt.Errorf("%w: no session ID (the device did not give one)", wire.ErrInvalidPTYCommand)
	}
	payload, err := cmd.Encode()
	if err != nil {
		return nil, err
	}
	st, _, err := o.OpenStream(ctx, wire.MsgPTYCommand, payload)
	return st, err
}

// Exit-status polling intervals: the device records the exit as the
// session ends, which may be just after the client saw the stream end.
const (
	exitPollInitial = 20 * time.Millisecond
	exitPollMax     = 500 * time.Millisecond
)

// WaitExit returns how session sid's process ended. Call it once the
// session's stream has ended: while the device still reports the process
// as running it asks again, at growing intervals up to half a second, until
// ctx ends (it then returns the last status and the context's error).
//
// A device without the exit-status extension yields
// ErrExitStatusUnsupported; a session the device does not know (never
// existed, or ended more than a minute ago) yields its *wire.RemoteError.
func WaitExit(ctx context.Context, o transport.Opener, sid string) (wire.ExitStatus, error) {
	delay := exitPollInitial
	for {
		s, err := Status(ctx, o, sid)
		if err != nil || s.Exited {
			return s, err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return s, fmt.Errorf("PTY exit status: the process is still running: %w", ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, exitPollMax)
	}
}

// Status asks once, through o, for the state of session sid's process:
// Exited is false while it runs. Errors are those of WaitExit.
func Status(ctx context.Context, o transport.Opener, sid string) (wire.ExitStatus, error) {
	if sid == "" {
		return wire.ExitStatus{}, fmt.Errorf("PTY exit status: %w: no session ID (the device did not give one)", wire.ErrInvalidPTYCommand)
	}
	payload, err := wire.PTYCommand{SID: sid, Type: wire.PTYStatus}.Encode()
	if err != nil {
		return wire.ExitStatus{}, fmt.Errorf("PTY exit status: %w", err)
	}
	st, ok, err := o.OpenStream(ctx, wire.MsgPTYCommand, payload)
	if err != nil {
		if errors.Is(err, wire.ErrNoAnswer) {
			return wire.ExitStatus{}, fmt.Errorf("PTY exit status: %w", ErrExitStatusUnsupported)
		}
		return wire.ExitStatus{}, fmt.Errorf("PTY exit status: %w", err)
	}
	st.Close()
	if len(ok) == 0 {
		return wire.ExitStatus{}, fmt.Errorf("PTY exit status: %w", ErrExitStatusUnsupported)
	}
	s, err := wire.DecodeExitStatus(ok)
	if err != nil {
		return wire.ExitStatus{}, fmt.Errorf("PTY exit status: %w", err)
	}
	return s, nil
}
