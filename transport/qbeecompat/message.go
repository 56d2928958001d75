package qbeecompat

import (
	"context"
	"io"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// MessageType is the first byte of every message: wire.MsgType.
type MessageType = wire.MsgType

// Message types, as the reference names them.
const (
	MessageTypeOK           = wire.MsgOK
	MessageTypeError        = wire.MsgError
	MessageTypeGoAway       = wire.MsgGoAway
	MessageTypeTCPTunnel    = wire.MsgTCP
	MessageTypeUDPTunnel    = wire.MsgUDP
	MessageTypePTY          = wire.MsgPTY
	MessageTypePTYCommand   = wire.MsgPTYCommand
	MessageTypeReload       = wire.MsgReload
	MessageTypeFileTransfer = wire.MsgFileTransfer
)

// Stream is one stream of a session: a net.Conn with a lossless CloseWrite
// and Abort (a reset). See transport.Stream.
type Stream = transport.Stream

// WriteMessage writes one message of type t: wire.WriteMessage.
func WriteMessage(w io.Writer, t MessageType, payload []byte) error {
	return wire.WriteMessage(w, t, payload)
}

// ReadMessage reads one message: wire.ReadMessage. It never allocates more
// than the 2-byte length allows; bound the wait with a read deadline.
func ReadMessage(r io.Reader) (MessageType, []byte, error) {
	m, err := wire.ReadMessage(r)
	if err != nil {
		return 0, nil, err
	}
	return m.Type, m.Payload, nil
}

// WriteOK answers a stream with OK and an optional payload: wire.WriteOK.
func WriteOK(w io.Writer, payload []byte) error { return wire.WriteOK(w, payload) }

// WriteError answers a stream with an Error carrying err's text:
// wire.WriteError. A nil err sends "unknown error".
func WriteError(w io.Writer, err error) error {
	reason := "unknown error"
	if err != nil {
		reason = err.Error()
	}
	return wire.WriteError(w, reason)
}

// ExpectOK reads the answer to an opening message: the OK payload, a
// *wire.RemoteError for an Error answer, wire.ErrNoAnswer for a stream that
// ended first. See wire.ExpectOK.
func ExpectOK(r io.Reader) ([]byte, error) { return wire.ExpectOK(r) }

// Pipe copies src to dst and dst to src until both directions end, then
// closes both: transport.Splice with its defaults. Half-close is carried
// through, and a direction that fails aborts both ends. It returns the bytes
// sent (src to dst) and received (dst to src), and the first error that was
// not an EOF or a close.
func Pipe(src, dst io.ReadWriteCloser) (sent, received int64, err error) {
	return transport.Splice(context.Background(), src, dst, nil)
}
