// Package transport is the session layer of the qbee-v1 remote-access
// protocol that devices, the edge and clients share: the HTTPS upgrade into
// an smux v2 session, sessions and streams, the opening of typed streams,
// Splice and the reconnect schedule. Everything above it (message types,
// stream types, runtimes) lives in other packages; docs/protocol.md
// describes the wire in prose for other implementations.
//
// # Where to start
//
// Most code needs this package only for its types: a device serves streams
// with the device package, a client reaches a device with transport/client
// and the stream types (transport/tcp, udp, pty), and both hand around
// *Stream and Opener. Use this package directly to write an edge (Upgrade,
// then Accept, Open and Splice, as edge.Server does), a stream type of your
// own (an Opener and wire messages), or a dialer with other needs than
// the runtimes' (Dial).
//
// # Sessions and streams
//
// Dial (device or client) and Upgrade (edge) set up a *Session: an smux v2
// session over TLS with a frame-aware layer beneath smux. Config tunes it
// (keep-alive, windows, stream cap, timeouts); nil means DefaultConfig.
// Streams are *Stream values: a net.Conn with a lossless CloseWrite. After
// CloseWrite the peer reads EOF once it has read every byte written before,
// and this side keeps reading the peer's bytes to the last one. The FIN is
// sent by our frame layer rather than by smux, so smux's own half-close
// clean-up, which in some releases drops received bytes not yet read, never
// runs; the wire carries exactly one FIN per stream. Abort resets a stream:
// a peer that announced the reset extension reads ErrStreamReset (a
// *ResetError with the reason) rather than a clean EOF. Close with bytes
// left unread resets the stream right after its FIN, as TCP does, so a
// peer blocked on a full window learns at once that nobody reads; it still
// reads every byte this side wrote. A stream whose connection ends before
// the peer ended the stream reads ErrConnLost, and Session.Done reports
// the dead connection at once. Session.Close on a live connection of
// Dial's, or of a server whose listener passes its connections through
// GatherRecords (the edge's does), lets the peer take every byte written
// before: the connection lingers in the background, for a second at most,
// until the peer closes too. A process calls AwaitClosed before it exits,
// which would cut that short.
//
// The same layer polices the peer: a peer that sends beyond its stream
// window, floods a stream with tiny frames, uses another smux version or an
// unknown command has its session closed, and reads fail with an error
// wrapping ErrProtocolViolation (Session.Err says why).
//
// # Typed streams
//
// Every stream starts with one message from its opener and one answer from
// the responder (transport/wire has the codec). Session.OpenStream, and any
// Opener, sends the opening message and waits for the answer, within its
// context and Config.OpenTimeout, on a connection that has stopped
// draining too (Session.OpenContext): an Error answer is a *wire.RemoteError carrying the
// device's reason, and a stream closed without an answer is
// wire.ErrNoAnswer. The stream types' client halves take an Opener, so they
// run on a *Session, a client.Client or a client.Redialer alike.
//
// # Splice
//
// Splice is the one bidirectional copy of the edge, the device and the
// CLI: it carries half-close in both directions, passes a reset on with its
// reason, bounds a direction that stopped making progress (SpliceOptions),
// and closes both ends when both directions are done. A direction into a
// stream whose peer finished and then refused the rest (a command that
// exited with input unread) ends with ErrStoppedReading.
//
// # Reconnecting
//
// Backoff is the reconnect schedule of devices (1 s initial, 60 s cap) and
// of the client's Redialer (0.5 s and 15 s): the first dial after a loss
// within the initial delay, then jittered waits between half and all of
// 5 × initial × 1.5^(n-1), up to the cap.
//
// Library code here never logs through the global logger, never opens
// listeners from configuration and never reads TLS files: callers pass a
// *slog.Logger (nil discards), listeners and *tls.Config values.
package transport
