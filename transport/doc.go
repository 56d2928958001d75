// Package transport implements the qbee-v1 remote-access protocol that
// devices, the edge and clients share: the HTTPS upgrade into an smux v2
// session, the typed opening message of every stream, and the client,
// device and splice primitives built on them. docs/protocol.md describes
// the wire in prose for other implementations.
//
// # Sessions and streams
//
// Dial (device or client) and Upgrade (edge) set up a *Session: an smux v2
// session over TLS with a frame-aware layer beneath smux. Streams are
// *Stream values: net.Conn with a lossless CloseWrite. After CloseWrite the
// peer reads EOF once it has read every byte written before, and this side
// keeps reading the peer's bytes to the last one. The FIN is sent by our
// frame layer rather than by smux, so smux's own half-close clean-up, which
// in some releases drops received bytes not yet read, never runs; the wire
// carries exactly one FIN per stream. A stream whose connection ends before
// the peer ended the stream reads ErrConnLost rather than a clean EOF, and
// Session.ConnDone reports the dead connection at once.
//
// The same layer polices the peer: a peer that sends beyond its stream
// window, floods a stream with tiny frames, uses another smux version or an
// unknown command has its session closed, and reads fail with an error
// wrapping ErrProtocolViolation (Session.Err says why).
//
// # Messages
//
// Every stream starts with one message from its opener (wire.WriteMessage) and
// one answer from the responder (wire.WriteOK or wire.WriteError). wire.ExpectOK turns an
// Error answer into a *wire.RemoteError carrying the device's reason, and a
// stream closed without an answer into wire.ErrNoAnswer. wire.ReadMessage never
// allocates beyond the 2-byte length and reassembles split writes.
//
// # Clients and devices
//
// A Client is a session to the edge bound to one device: OpenStream opens
// a typed stream and waits for its answer; DialTCP returns a net.Conn to a
// host:port on the device's side (it fits http.Transport.DialContext);
// ListenTCP forwards local connections like ssh -L; Reload asks the device
// to reload.
//
// A DeviceClient keeps a device connected: it dials the edge, serves each
// stream with the Handler registered for its type, answers unknown types
// with "unsupported stream type 0x..", turns a handler panic into an Error
// answer, caps concurrent streams, drains on GoAway (30 s by default), and
// reconnects on the Backoff schedule: the first dial after a loss within
// 1 s, then jittered waits growing from 2.5–5 s by 1.5 times per failure up
// to 60 s; a session that lived 1 s starts the schedule over.
//
// Splice is the one bidirectional copy of the edge, the device and the
// CLI: it carries half-close in both directions and closes both ends when
// both directions are done.
//
// Library code here never logs through the global logger, never opens
// listeners from configuration and never reads TLS files: callers pass a
// *slog.Logger (nil discards), listeners and *tls.Config values.
package transport
