package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The wire flow, in brief (docs/protocol.md has the prose):
//
//  1. The dialer (a device or a client) sends an HTTP/1.1 GET over TLS with
//     "Connection: upgrade", "Upgrade: websocket" and
//     "Sec-WebSocket-Protocol: qbee-v1" (clients add Authorization).
//  2. The edge answers "101 Switching Protocols" with the same three
//     headers. From the next byte on the TLS connection carries an smux v2
//     session; the dialer is the smux client and the edge the smux server.
//  3. Every stream starts with one message from its opener and one answer
//     (OK or Error) from the responder: type (1 byte), payload length n
//     (2 bytes, big endian), payload (n bytes, 0..65535).
//  4. After OK the stream is a duplex byte stream whose format depends on
//     the type; after Error the responder closes it.

// MsgType is the first byte of every message.
type MsgType uint8

// Message types. The trailing comment gives each payload.
const (
	MsgOK           MsgType = 0x01 // optional, type-specific (PTY: session ID)
	MsgError        MsgType = 0x02 // UTF-8 reason a person can act on
	MsgGoAway       MsgType = 0x03 // empty; edge to device: drain and reconnect
	MsgTCP          MsgType = 0x10 // "host:port" to dial from the device
	MsgUDP          MsgType = 0x11 // "<suggested source port>:<host>:<port>"
	MsgPTY          MsgType = 0x12 // JSON PTYCommand: initial size, optional command
	MsgPTYCommand   MsgType = 0x13 // JSON PTYCommand for an existing session (sid set)
	MsgReload       MsgType = 0x14 // empty
	MsgFileTransfer MsgType = 0x20 // JSON {"direction":0|1,"path":"/abs"}

	// Tether's extension range is 0x70..0x7f; qbee uses none of it.
	MsgPeerOpen       MsgType = 0x70 // edge to edge: JSON PeerOpen, then the client's opening message
	MsgExec           MsgType = 0x71 // JSON ExecRequest; after OK, exec frames both ways (exec.go)
	MsgPeerRecordings MsgType = 0x72 // edge to edge: JSON PeerRecordings; after OK, a list's JSON or a file's bytes (peerrec.go)
)

var msgTypeNames = map[MsgType]string{
	MsgOK:             "OK",
	MsgError:          "Error",
	MsgGoAway:         "GoAway",
	MsgTCP:            "TCP",
	MsgUDP:            "UDP",
	MsgPTY:            "PTY",
	MsgPTYCommand:     "PTYCommand",
	MsgReload:         "Reload",
	MsgFileTransfer:   "FileTransfer",
	MsgPeerOpen:       "PeerOpen",
	MsgExec:           "Exec",
	MsgPeerRecordings: "PeerRecordings",
}

// String returns the type's name, or its hex value when unknown.
func (t MsgType) String() string {
	if s, ok := msgTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("MsgType(0x%02x)", uint8(t))
}

// Known reports whether t is a message type defined by the protocol.
func (t MsgType) Known() bool {
	_, ok := msgTypeNames[t]
	return ok
}

// Framing limits.
const (
	// HeaderSize is the size of a message header: type and length.
	HeaderSize = 3
	// MaxPayload is the largest payload a message can carry.
	MaxPayload = 1<<16 - 1
	// MaxErrorReason bounds the reason we send in an Error message; longer
	// reasons are cut at a rune boundary.
	MaxErrorReason = 1024
)

// Message is one framed protocol message.
type Message struct {
	Type    MsgType
	Payload []byte
}

// WriteMessage writes one message as a single write (header and payload
// together), so that a message never straddles two smux frames needlessly.
func WriteMessage(w io.Writer, t MsgType, payload []byte) error {
	buf, err := AppendMessage(nil, t, payload)
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

// AppendMessage appends one encoded message to buf, so that several
// messages can go out in one write (one frame on the wire).
func AppendMessage(buf []byte, t MsgType, payload []byte) ([]byte, error) {
	if len(payload) > MaxPayload {
		return buf, fmt.Errorf("%w: %d bytes", ErrPayloadTooLarge, len(payload))
	}
	buf = append(buf, byte(t), 0, 0)
	binary.BigEndian.PutUint16(buf[len(buf)-2:], uint16(len(payload)))
	return append(buf, payload...), nil
}

// ReadMessage reads one message. It reads the header and the payload with
// full reads, so a message split across writes or frames is reassembled, and
// never allocates more than the 2-byte length allows. Callers bound the wait
// with a read deadline on r.
func ReadMessage(r io.Reader) (Message, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Message{}, fmt.Errorf("%w: header cut short", ErrTruncated)
		}
		return Message{}, err
	}
	n := int(binary.BigEndian.Uint16(hdr[1:3]))
	m := Message{Type: MsgType(hdr[0])}
	if n == 0 {
		return m, nil
	}
	m.Payload = make([]byte, n)
	if _, err := io.ReadFull(r, m.Payload); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Message{}, fmt.Errorf("%w: payload of %d bytes cut short", ErrTruncated, n)
		}
		return Message{}, err
	}
	return m, nil
}

// WriteOK answers a stream with OK and an optional payload.
func WriteOK(w io.Writer, payload []byte) error {
	return WriteMessage(w, MsgOK, payload)
}

// WriteError answers a stream with an Error carrying reason. Long reasons are
// shortened to MaxErrorReason bytes.
func WriteError(w io.Writer, reason string) error {
	return WriteMessage(w, MsgError, []byte(truncateReason(reason)))
}

func truncateReason(s string) string {
	if len(s) <= MaxErrorReason {
		return s
	}
	cut := MaxErrorReason
	for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return s[:cut]
}

// ExpectOK reads the responder's answer. OK returns its payload; Error
// returns a *RemoteError carrying the reason; a stream that ends before any
// answer returns ErrNoAnswer (existing devices do that for types they do not
// handle); anything else returns ErrUnexpectedMessage.
func ExpectOK(r io.Reader) ([]byte, error) {
	m, err := ReadMessage(r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ErrNoAnswer
		}
		return nil, fmt.Errorf("read answer: %w", err)
	}
	switch m.Type {
	case MsgOK:
		return m.Payload, nil
	case MsgError:
		return nil, &RemoteError{Reason: string(m.Payload)}
	default:
		return nil, fmt.Errorf("%w: %v", ErrUnexpectedMessage, m.Type)
	}
}

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrPayloadTooLarge: a message payload exceeds MaxPayload.
	ErrPayloadTooLarge = errors.New("wire: payload too large")
	// ErrTruncated: a message ended before its header or payload was complete.
	ErrTruncated = errors.New("wire: message truncated")
	// ErrNoAnswer: the responder closed the stream without answering.
	ErrNoAnswer = errors.New("wire: the device closed the stream without answering; it may not support this stream type")
	// ErrUnexpectedMessage: the answer was neither OK nor Error.
	ErrUnexpectedMessage = errors.New("wire: unexpected message")
)

// RemoteError is an Error answer from the responder. Reason is the remote
// text, verbatim.
type RemoteError struct {
	Reason string
}

func (e *RemoteError) Error() string { return e.Reason }
