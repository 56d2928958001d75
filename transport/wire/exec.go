package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Exec streams (MsgExec, our extension; docs/protocol.md, "Exec") run one
// command on the device without a terminal. The opening payload is a JSON
// ExecRequest. After OK the stream carries exec frames both ways:
//
//	| channel (1 byte) | length n (4 bytes, big endian) | n bytes |
//
// The client sends stdin data and, once, stdin EOF; the device sends stdout
// and stderr data and, once, the exit status, then closes the stream.

// ExecChannel is the first byte of an exec frame.
type ExecChannel uint8

// Exec channels. The trailing comment gives the direction and the payload.
const (
	ExecStdin    ExecChannel = 0x00 // client to device: 1..MaxExecData bytes for the command's stdin
	ExecStdout   ExecChannel = 0x01 // device to client: 1..MaxExecData bytes the command wrote to stdout
	ExecStderr   ExecChannel = 0x02 // device to client: 1..MaxExecData bytes the command wrote to stderr
	ExecStdinEOF ExecChannel = 0x03 // client to device: empty; the command's stdin is closed
	ExecExit     ExecChannel = 0x04 // device to client: JSON ExitStatus (exited true); the last frame
)

var execChannelNames = map[ExecChannel]string{
	ExecStdin:    "stdin",
	ExecStdout:   "stdout",
	ExecStderr:   "stderr",
	ExecStdinEOF: "stdin-eof",
	ExecExit:     "exit",
}

// String names the channel, or gives its hex value when unknown.
func (c ExecChannel) String() string {
	if s, ok := execChannelNames[c]; ok {
		return s
	}
	return fmt.Sprintf("ExecChannel(0x%02x)", uint8(c))
}

// FromClient reports whether a client may send frames on c.
func (c ExecChannel) FromClient() bool { return c == ExecStdin || c == ExecStdinEOF }

// FromDevice reports whether a device may send frames on c.
func (c ExecChannel) FromDevice() bool {
	return c == ExecStdout || c == ExecStderr || c == ExecExit
}

// Exec limits.
const (
	// ExecFrameHeader is the size of an exec frame's header.
	ExecFrameHeader = 5
	// MaxExecData bounds the data of one stdin, stdout or stderr frame.
	MaxExecData = 32 << 10
	// MaxExecExit bounds the exit frame's JSON.
	MaxExecExit = 256
	// MaxExecCommand bounds the command line of an ExecRequest, in bytes.
	MaxExecCommand = 32 << 10
)

// Exec sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrInvalidExecRequest: an exec opening payload is malformed.
	ErrInvalidExecRequest = errors.New("wire: invalid exec request")
	// ErrInvalidExecFrame: an exec frame has an unknown channel, a length
	// out of bounds for its channel, or a malformed exit status.
	ErrInvalidExecFrame = errors.New("wire: invalid exec frame")
)

// ExecRequest is the JSON payload of MsgExec:
//
//	{"command":"ps | grep agent"}
//
// The device runs Command with the run-as user's shell, as `shell -c
// Command`; an empty Command runs that shell as a login shell reading
// stdin. Either way there is no terminal.
type ExecRequest struct {
	Command string `json:"command"`
}

// Validate checks the command: at most MaxExecCommand bytes of UTF-8
// without NUL (a NUL cannot cross into an argument vector).
func (r ExecRequest) Validate() error {
	switch {
	case len(r.Command) > MaxExecCommand:
		return fmt.Errorf("%w: the command is %d bytes; at most %d", ErrInvalidExecRequest, len(r.Command), MaxExecCommand)
	case !utf8.ValidString(r.Command):
		return fmt.Errorf("%w: the command is not valid UTF-8", ErrInvalidExecRequest)
	case strings.IndexByte(r.Command, 0) >= 0:
		return fmt.Errorf("%w: the command contains a NUL byte", ErrInvalidExecRequest)
	}
	return nil
}

// Encode returns the request's JSON.
func (r ExecRequest) Encode() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// DecodeExecRequest parses and validates an exec opening payload. Unknown
// fields are ignored.
func DecodeExecRequest(b []byte) (ExecRequest, error) {
	var r ExecRequest
	if len(b) > MaxPayload {
		return r, fmt.Errorf("%w: %d bytes", ErrPayloadTooLarge, len(b))
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return ExecRequest{}, fmt.Errorf("%w: %v", ErrInvalidExecRequest, err)
	}
	if err := r.Validate(); err != nil {
		return ExecRequest{}, err
	}
	return r, nil
}

// AppendExecFrame appends one encoded frame to buf after checking its
// length against its channel.
func AppendExecFrame(buf []byte, c ExecChannel, data []byte) ([]byte, error) {
	if err := checkExecFrame(c, len(data)); err != nil {
		return buf, err
	}
	buf = append(buf, byte(c), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(buf[len(buf)-4:], uint32(len(data)))
	return append(buf, data...), nil
}

// PutExecFrameHeader writes the header of a frame of channel c with n
// bytes of data into buf[:ExecFrameHeader], for a sender that reads the
// data into buf[ExecFrameHeader:] itself. The caller keeps n within the
// channel's bounds.
func PutExecFrameHeader(buf []byte, c ExecChannel, n int) {
	buf[0] = byte(c)
	binary.BigEndian.PutUint32(buf[1:ExecFrameHeader], uint32(n))
}

// checkExecFrame checks a frame's length against its channel.
func checkExecFrame(c ExecChannel, n int) error {
	switch c {
	case ExecStdin, ExecStdout, ExecStderr:
		if n < 1 || n > MaxExecData {
			return fmt.Errorf("%w: %v frame of %d bytes; want 1 to %d", ErrInvalidExecFrame, c, n, MaxExecData)
		}
	case ExecStdinEOF:
		if n != 0 {
			return fmt.Errorf("%w: stdin-eof frame of %d bytes; want 0", ErrInvalidExecFrame, n)
		}
	case ExecExit:
		if n < 1 || n > MaxExecExit {
			return fmt.Errorf("%w: exit frame of %d bytes; want 1 to %d", ErrInvalidExecFrame, n, MaxExecExit)
		}
	default:
		return fmt.Errorf("%w: unknown channel 0x%02x", ErrInvalidExecFrame, uint8(c))
	}
	return nil
}

// ExecExitFrame encodes the exit frame for s, which must have exited.
func ExecExitFrame(s ExitStatus) ([]byte, error) {
	if !s.Exited {
		return nil, fmt.Errorf("%w: the exit frame needs an ended process", ErrInvalidExecFrame)
	}
	b, err := s.Encode()
	if err != nil {
		return nil, err
	}
	return AppendExecFrame(nil, ExecExit, b)
}

// DecodeExecExit parses the data of an exit frame.
func DecodeExecExit(b []byte) (ExitStatus, error) {
	if len(b) > MaxExecExit {
		return ExitStatus{}, fmt.Errorf("%w: exit frame of %d bytes", ErrInvalidExecFrame, len(b))
	}
	s, err := DecodeExitStatus(b)
	if err != nil {
		return ExitStatus{}, fmt.Errorf("%w: %v", ErrInvalidExecFrame, err)
	}
	if !s.Exited {
		return ExitStatus{}, fmt.Errorf("%w: the exit frame says the process still runs", ErrInvalidExecFrame)
	}
	return s, nil
}

// ExecFrame is one decoded exec frame. Data aliases the reader's buffer
// and is valid until the next ReadExecFrame.
type ExecFrame struct {
	Channel ExecChannel
	Data    []byte
}

// ExecReader reads exec frames from a stream with one buffer of
// MaxExecData bytes; it never allocates more.
type ExecReader struct {
	r   io.Reader
	hdr [ExecFrameHeader]byte
	buf []byte
}

// NewExecReader returns a reader of the exec frames on r. Callers bound
// the wait with deadlines on r.
func NewExecReader(r io.Reader) *ExecReader {
	return &ExecReader{r: r}
}

// ReadExecFrame reads the next frame. It checks the header (a known
// channel, a length within that channel's bound) before it reads the data.
// A stream that ends between frames returns io.EOF; one that ends inside a
// frame returns ErrTruncated.
func (x *ExecReader) ReadExecFrame() (ExecFrame, error) {
	if _, err := io.ReadFull(x.r, x.hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return ExecFrame{}, fmt.Errorf("%w: exec frame header cut short", ErrTruncated)
		}
		return ExecFrame{}, err
	}
	c := ExecChannel(x.hdr[0])
	n64 := binary.BigEndian.Uint32(x.hdr[1:])
	if n64 > MaxExecData {
		return ExecFrame{}, fmt.Errorf("%w: %v frame of %d bytes; at most %d", ErrInvalidExecFrame, c, n64, MaxExecData)
	}
	n := int(n64)
	if err := checkExecFrame(c, n); err != nil {
		return ExecFrame{}, err
	}
	if x.buf == nil && n > 0 {
		x.buf = make([]byte, MaxExecData)
	}
	data := x.buf[:n:n]
	if _, err := io.ReadFull(x.r, data); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return ExecFrame{}, fmt.Errorf("%w: %v frame of %d bytes cut short", ErrTruncated, c, n)
		}
		return ExecFrame{}, err
	}
	return ExecFrame{Channel: c, Data: data}, nil
}
