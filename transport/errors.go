package transport

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrInvalidConfig: a Config field is out of range.
	ErrInvalidConfig = errors.New("transport: invalid config")
	// ErrNotUpgrade: an HTTP request is not a qbee-v1 upgrade.
	ErrNotUpgrade = errors.New("transport: not a qbee-v1 upgrade request")
	// ErrSessionClosed: the session is closed.
	ErrSessionClosed = errors.New("transport: session closed")
	// ErrWriteClosed: a write after CloseWrite.
	ErrWriteClosed = errors.New("transport: write after CloseWrite")
	// ErrConnLost: the connection under the session ended before the
	// peer ended this stream; the bytes read so far may be incomplete.
	ErrConnLost = errors.New("transport: the connection to the peer ended before the stream did; data may be incomplete")
	// ErrStreamReset: the peer reset the stream (its other leg ended in
	// error, or it stopped reading); the bytes read so far may be
	// incomplete.
	ErrStreamReset = errors.New("transport: the peer reset the stream; data may be incomplete")
	// ErrKeepAliveTimeout: the peer sent nothing within the keep-alive
	// timeout; this side presumed it dead and closed the session.
	ErrKeepAliveTimeout = errors.New("transport: the peer went silent past the keep-alive timeout; session closed")
	// ErrProtocolViolation: the peer broke the smux rules (ignored its
	// stream window, flooded tiny frames, sent another protocol version or
	// an unknown command); this side closed the session.
	ErrProtocolViolation = errors.New("transport: the peer broke the smux protocol; session closed")
)

// StatusError is a non-101 HTTP answer to an upgrade. Reason is the body
// text the edge sent, trimmed.
type StatusError struct {
	StatusCode int
	Reason     string
}

func (e *StatusError) Error() string {
	hint := ""
	switch e.StatusCode {
	case 401:
		hint = "token rejected: check the token"
	case 403:
		hint = "forbidden: the credential may not reach this device"
	case 404:
		hint = "device not connected to the edge"
	case 409:
		hint = "conflict: the device ID is already connected"
	case 426:
		hint = "the server did not accept the qbee-v1 upgrade: check the URL"
	}
	msg := fmt.Sprintf("edge answered HTTP %d", e.StatusCode)
	if hint != "" {
		msg += " (" + hint + ")"
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// ResetError is a stream the peer reset: it wraps ErrStreamReset and
// carries the peer's reason, which may be empty.
type ResetError struct {
	Reason string
}

func (e *ResetError) Error() string {
	if e.Reason == "" {
		return ErrStreamReset.Error()
	}
	return "transport: the peer reset the stream: " + e.Reason + "; data may be incomplete"
}

// Is makes errors.Is(err, ErrStreamReset) true.
func (e *ResetError) Is(target error) bool { return target == ErrStreamReset }

// ConnLostError is a stream cut by the loss of its session's connection:
// it wraps ErrConnLost and names the peer when the session was given a
// name (Session.SetPeerName).
type ConnLostError struct {
	Peer string
}

func (e *ConnLostError) Error() string {
	if e.Peer == "" {
		return ErrConnLost.Error()
	}
	return "transport: lost the connection to " + e.Peer + " before the stream ended; data may be incomplete"
}

// Is makes errors.Is(err, ErrConnLost) true.
func (e *ConnLostError) Is(target error) bool { return target == ErrConnLost }
