package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// PTY sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrInvalidPTYCommand: a PTY command payload is not valid JSON or a
	// field is out of range.
	ErrInvalidPTYCommand = errors.New("wire: invalid PTY command")
	// ErrInvalidExitStatus: an exit-status answer is not valid.
	ErrInvalidExitStatus = errors.New("wire: invalid PTY exit status")
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

// ValidateSessionID checks a PTY session ID: at most MaxPTYSessionID
// printable ASCII bytes without spaces.
func ValidateSessionID(id string) error {
	if len(id) > MaxPTYSessionID || !printable(id) {
		return fmt.Errorf("%w: session ID must be at most %d printable ASCII bytes", ErrInvalidPTYCommand, MaxPTYSessionID)
	}
	return nil
}
