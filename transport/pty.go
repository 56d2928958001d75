package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// PTY sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrInvalidPTYCommand: a PTY command payload is not valid JSON or a
	// field is out of range.
	ErrInvalidPTYCommand = errors.New("transport: invalid PTY command")
	// ErrInvalidExitStatus: an exit-status answer is not valid.
	ErrInvalidExitStatus = errors.New("transport: invalid PTY exit status")
	// ErrExitStatusUnsupported: the device does not implement the
	// exit-status extension (it closed the stream without answering or
	// answered OK without a status). The remote exit status is unknown.
	ErrExitStatusUnsupported = errors.New("transport: the device does not report exit statuses (its agent predates the PTY exit-status extension); the remote exit status is unknown")
)

// PTYCommandType is the "type" field of a PTY command.
type PTYCommandType int

// PTY command types. Resize is qbee-v1; Status is our extension (see
// docs/protocol.md, "PTY exit status"), which qbee-v1 devices answer with an
// Error or not at all.
const (
	PTYResize PTYCommandType = 0 // resize session sid to cols x rows
	PTYStatus PTYCommandType = 1 // OK payload: JSON ExitStatus of session sid
)

// String names the command type.
func (t PTYCommandType) String() string {
	switch t {
	case PTYResize:
		return "resize"
	case PTYStatus:
		return "status"
	}
	return fmt.Sprintf("PTYCommandType(%d)", int(t))
}

// Limits of the PTY command fields.
const (
	// MaxPTYSessionID bounds a session ID, in bytes.
	MaxPTYSessionID = 128
	// MaxPTYTerm bounds the TERM value, in bytes.
	MaxPTYTerm = 64
	// MaxPTYSize is the largest window dimension (a struct winsize field).
	MaxPTYSize = 65535
	// DefaultPTYTerm is the TERM a device sets when the client sends none.
	DefaultPTYTerm = "xterm-256color"
	// PTYEOF is the terminal's end-of-file character (VEOF, Ctrl-D): written
	// at the start of a line, the program reading the terminal sees EOF.
	PTYEOF = 0x04
)

// PTYCommand is the JSON payload of MsgPTY (open a session) and
// MsgPTYCommand (act on an existing session):
//
//	{"sid":"","type":0,"cols":120,"rows":40,"command":"","command_args":[]}
//
// Term is our extension: the TERM value for the new session's environment.
// It is omitted when empty, and qbee-v1 devices ignore it.
type PTYCommand struct {
	SID         string         `json:"sid"`
	Type        PTYCommandType `json:"type"`
	Cols        int            `json:"cols"`
	Rows        int            `json:"rows"`
	Command     string         `json:"command"`
	CommandArgs []string       `json:"command_args"`
	Term        string         `json:"term,omitempty"`
}

// Encode returns the command's JSON, with command_args as [] when empty
// (the form existing peers send).
func (c PTYCommand) Encode() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.CommandArgs == nil {
		c.CommandArgs = []string{}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPTYCommand, err)
	}
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("%w: the command and its arguments take %d bytes, more than one message holds (%d)", ErrInvalidPTYCommand, len(b), MaxPayload)
	}
	return b, nil
}

// Validate checks every field's range.
func (c PTYCommand) Validate() error {
	switch {
	case c.Type < 0:
		return fmt.Errorf("%w: negative type %d", ErrInvalidPTYCommand, c.Type)
	case c.Cols < 0 || c.Cols > MaxPTYSize || c.Rows < 0 || c.Rows > MaxPTYSize:
		return fmt.Errorf("%w: window size %dx%d is outside 0..%d", ErrInvalidPTYCommand, c.Cols, c.Rows, MaxPTYSize)
	case len(c.SID) > MaxPTYSessionID || !printable(c.SID):
		return fmt.Errorf("%w: session ID must be at most %d printable ASCII bytes", ErrInvalidPTYCommand, MaxPTYSessionID)
	case strings.IndexByte(c.Command, 0) >= 0:
		return fmt.Errorf("%w: command contains a NUL byte", ErrInvalidPTYCommand)
	case c.Command == "" && len(c.CommandArgs) > 0:
		return fmt.Errorf("%w: command_args without a command", ErrInvalidPTYCommand)
	}
	for _, a := range c.CommandArgs {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("%w: a command argument contains a NUL byte", ErrInvalidPTYCommand)
		}
	}
	return ValidateTerm(c.Term)
}

// ValidateTerm checks a TERM value: empty (the default), or at most
// MaxPTYTerm bytes of letters, digits and "._+-".
func ValidateTerm(term string) error {
	if len(term) > MaxPTYTerm {
		return fmt.Errorf("%w: TERM is longer than %d bytes", ErrInvalidPTYCommand, MaxPTYTerm)
	}
	for i := 0; i < len(term); i++ {
		b := term[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '_' || b == '+' || b == '-') {
			return fmt.Errorf("%w: TERM %q may hold only letters, digits and ._+-", ErrInvalidPTYCommand, term)
		}
	}
	return nil
}

// printable reports whether s is printable ASCII without spaces.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// DecodePTYCommand parses and validates a PTY command payload. Unknown JSON
// fields are ignored, so later extensions do not break this reader.
func DecodePTYCommand(b []byte) (PTYCommand, error) {
	if len(b) > MaxPayload {
		return PTYCommand{}, fmt.Errorf("%w: %d bytes", ErrPayloadTooLarge, len(b))
	}
	var c PTYCommand
	if err := json.Unmarshal(b, &c); err != nil {
		return PTYCommand{}, fmt.Errorf("%w: %v", ErrInvalidPTYCommand, err)
	}
	if err := c.Validate(); err != nil {
		return PTYCommand{}, err
	}
	return c, nil
}

// ExitStatus is how a PTY session's process ended: the JSON answer to a
// PTYStatus command, {"exited":true,"code":7,"signal":""}.
//
// Exited is false while the process runs. Code is the exit code; for a
// process killed by a signal it is 128 plus the signal number (as shells
// report it) and Signal names the signal without the "SIG" prefix ("KILL",
// "HUP"). Signal is empty for a normal exit.
type ExitStatus struct {
	Exited bool   `json:"exited"`
	Code   int    `json:"code"`
	Signal string `json:"signal"`
}

// String describes the status for people: "exit code 7", "killed by
// signal KILL", "running".
func (s ExitStatus) String() string {
	switch {
	case !s.Exited:
		return "running"
	case s.Signal != "":
		return "killed by signal " + s.Signal
	}
	return fmt.Sprintf("exit code %d", s.Code)
}

// maxSignalName bounds ExitStatus.Signal.
const maxSignalName = 16

// Validate checks the ranges of s.
func (s ExitStatus) Validate() error {
	if s.Code < 0 || s.Code > 255 {
		return fmt.Errorf("%w: code %d is outside 0..255", ErrInvalidExitStatus, s.Code)
	}
	if len(s.Signal) > maxSignalName {
		return fmt.Errorf("%w: signal name longer than %d bytes", ErrInvalidExitStatus, maxSignalName)
	}
	for i := 0; i < len(s.Signal); i++ {
		b := s.Signal[i]
		if !(b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '+' || b == '-') {
			return fmt.Errorf("%w: signal name %q", ErrInvalidExitStatus, s.Signal)
		}
	}
	if !s.Exited && (s.Code != 0 || s.Signal != "") {
		return fmt.Errorf("%w: a running process has no code or signal", ErrInvalidExitStatus)
	}
	return nil
}

// Encode returns the status's JSON.
func (s ExitStatus) Encode() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

// DecodeExitStatus parses and validates an exit-status answer.
func DecodeExitStatus(b []byte) (ExitStatus, error) {
	if len(b) > MaxPayload {
		return ExitStatus{}, fmt.Errorf("%w: %d bytes", ErrPayloadTooLarge, len(b))
	}
	var s ExitStatus
	if err := json.Unmarshal(b, &s); err != nil {
		return ExitStatus{}, fmt.Errorf("%w: %v", ErrInvalidExitStatus, err)
	}
	if err := s.Validate(); err != nil {
		return ExitStatus{}, err
	}
	return s, nil
}

// PTYRequest describes a PTY session to open.
type PTYRequest struct {
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

// PTYSession is an open PTY session: the stream carries the terminal's bytes
// both ways, and ID names the session for ResizePTY and PTYExitStatus.
//
// Closing the stream, or its write side, hangs the session up: the device
// sends SIGHUP to the session's processes. To pass end-of-input on while
// still reading the output (pipe mode), call SendEOF instead.
type PTYSession struct {
	*Stream
	// ID is the session ID the device answered with.
	ID string

	lastByte atomic.Int32 // last byte written, or -1 when nothing was written
}

// Write sends terminal input.
func (p *PTYSession) Write(b []byte) (int, error) {
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
func (p *PTYSession) SendEOF() error {
	eof := []byte{PTYEOF}
	if last := p.lastByte.Load(); last >= 0 && last != '\n' && last != '\r' {
		eof = append(eof, PTYEOF)
	}
	_, err := p.Stream.Write(eof)
	return err
}

// OpenPTY opens a PTY session on the device: the login shell, or
// req.Command with req.Args, on a new terminal of the requested size.
func (c *Client) OpenPTY(ctx context.Context, req PTYRequest) (*PTYSession, error) {
	cmd := PTYCommand{Type: PTYResize, Cols: req.Cols, Rows: req.Rows, Command: req.Command, CommandArgs: req.Args, Term: req.Term}
	payload, err := cmd.Encode()
	if err != nil {
		return nil, fmt.Errorf("open PTY: %w", err)
	}
	st, ok, err := c.OpenStream(ctx, MsgPTY, payload)
	if err != nil {
		return nil, fmt.Errorf("open PTY: %w", err)
	}
	id := string(bytes.TrimSpace(ok))
	if len(id) > MaxPTYSessionID || !printable(id) {
		st.Close()
		return nil, fmt.Errorf("open PTY: the device answered with an invalid session ID (%d bytes)", len(ok))
	}
	p := &PTYSession{Stream: st, ID: id}
	p.lastByte.Store(-1)
	return p, nil
}

// ResizePTY sets the window size of session sid; the remote program gets
// SIGWINCH.
func (c *Client) ResizePTY(ctx context.Context, sid string, cols, rows int) error {
	if cols < 1 || rows < 1 {
		return fmt.Errorf("resize PTY: %w: window size %dx%d must be at least 1x1", ErrInvalidPTYCommand, cols, rows)
	}
	st, err := c.ptyCommand(ctx, PTYCommand{SID: sid, Type: PTYResize, Cols: cols, Rows: rows})
	if err != nil {
		return fmt.Errorf("resize PTY: %w", err)
	}
	st.Close()
	return nil
}

func (c *Client) ptyCommand(ctx context.Context, cmd PTYCommand) (*Stream, error) {
	if cmd.SID == "" {
		return nil, fmt.Errorf("%w: no session ID (the device did not give one)", ErrInvalidPTYCommand)
	}
	payload, err := cmd.Encode()
	if err != nil {
		return nil, err
	}
	st, _, err := c.OpenStream(ctx, MsgPTYCommand, payload)
	return st, err
}

// Exit-status polling intervals: the device records the exit as the
// session ends, which may be just after the client saw the stream end.
const (
	exitPollInitial = 20 * time.Millisecond
	exitPollMax     = 500 * time.Millisecond
)

// PTYExitStatus returns how session sid's process ended. Call it once the
// session's stream has ended: while the device still reports the process
// as running it asks again, at growing intervals up to half a second, until
// ctx ends (it then returns the last status and the context's error).
//
// A device without the exit-status extension yields
// ErrExitStatusUnsupported; a session the device does not know (never
// existed, or ended more than a minute ago) yields its *RemoteError.
func (c *Client) PTYExitStatus(ctx context.Context, sid string) (ExitStatus, error) {
	delay := exitPollInitial
	for {
		s, err := c.PTYStatus(ctx, sid)
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

// PTYStatus asks once for the state of session sid's process: Exited is
// false while it runs. Errors are those of PTYExitStatus.
func (c *Client) PTYStatus(ctx context.Context, sid string) (ExitStatus, error) {
	if sid == "" {
		return ExitStatus{}, fmt.Errorf("PTY exit status: %w: no session ID (the device did not give one)", ErrInvalidPTYCommand)
	}
	payload, err := PTYCommand{SID: sid, Type: PTYStatus}.Encode()
	if err != nil {
		return ExitStatus{}, fmt.Errorf("PTY exit status: %w", err)
	}
	st, ok, err := c.OpenStream(ctx, MsgPTYCommand, payload)
	if err != nil {
		if errors.Is(err, ErrNoAnswer) {
			return ExitStatus{}, fmt.Errorf("PTY exit status: %w", ErrExitStatusUnsupported)
		}
		return ExitStatus{}, fmt.Errorf("PTY exit status: %w", err)
	}
	st.Close()
	if len(ok) == 0 {
		return ExitStatus{}, fmt.Errorf("PTY exit status: %w", ErrExitStatusUnsupported)
	}
	s, err := DecodeExitStatus(ok)
	if err != nil {
		return ExitStatus{}, fmt.Errorf("PTY exit status: %w", err)
	}
	return s, nil
}
