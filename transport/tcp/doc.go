// Package tcp is the TCP tunnel stream type (wire.MsgTCP, 0x10), both
// halves: a client asks the device to connect to a "host:port" on its
// side, and the stream then carries the connection's bytes both ways, with
// half-close.
//
// On the client side, Dial opens one tunnel as a net.Conn (it fits
// http.Transport.DialContext), and Forward serves a local listener like
// ssh -L, one tunnel per accepted connection. Both open their streams
// through any transport.Opener: a client.Client, or a client.Redialer for a
// forward that must outlive its session.
//
// On the device side, Handler serves tunnels: register its Serve method
// with device.Client.Handle for wire.MsgTCP. It parses the target,
// authorizes it (Authorize; by default LoopbackOnly), connects to exactly
// the addresses it authorized, answers, and splices with half-close until
// both directions end. A refusal or a failed connect is the stream's Error
// answer, which the client reads as a *wire.RemoteError.
package tcp
