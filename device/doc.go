// Package device is the device runtime of Tether: Client keeps a device
// connected to the edge and serves the streams the edge opens, one Handler
// per stream type. Any embedder uses it; the config-driven agent that
// tether-agent runs is device/agent.
//
// A Client dials the edge (transport.Dial with the device's certificate),
// reads each stream's opening message within the session's OpenTimeout,
// runs the handler registered for its type on a goroutine of its own, and
// turns what goes wrong before the answer into an Error answer: an error
// the handler returns, a handler panic, a type without a handler
// ("unsupported stream type 0x.."), and a stream beyond Config.MaxStreams
// ("too many streams"). A session that ends, by a GoAway or a lost
// connection, is redialed on the transport.Backoff schedule (1 s and 60 s
// by default; a session that lived BackoffReset, 1 s, starts it over, so
// the first redial comes within a second). After a GoAway the old
// session's streams meanwhile finish, for up to DrainTimeout (30 s).
//
// The standard stream types bring their device halves: register
// (&tcp.Handler{}).Serve for wire.MsgTCP, (&udp.Handler{}).Serve for
// wire.MsgUDP, and a pty.Server's ServePTY and ServeCommand for
// wire.MsgPTY and wire.MsgPTYCommand; device/agent does this from
// agent.yaml. A handler of your own answers with wire.WriteOK or returns an
// error, then uses the stream (see Handler). In tests, mock.NewEdgeMock
// connects a Client to a real edge.
//
// The package opens no listener, reads no file and catches no signal: the
// caller passes the *tls.Config and the handlers.
package device
