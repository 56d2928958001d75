// Package client is the client runtime of Tether: a session through the
// edge to one device, and the Redialer that keeps one alive for
// long-running commands such as port forwards.
//
// A Dialer holds what every session needs (the edge's base URL, a bearer
// token, the TLS configuration that verifies the edge); Dialer.Dial opens
// a session bound to one device and returns a *Client. Client.OpenStream
// opens a typed stream on it and waits for the device's answer; the stream
// types' own packages do this for their type (tcp.Dial, tcp.Forward,
// udp.Listener, pty.Open), through any transport.Opener, which Client and
// Redialer are. Client.Done reports a lost connection at once.
//
// A Redialer is an Opener that redials with backoff (transport.Backoff;
// 0.5 s to 15 s by default) when its session is lost, so that what was
// built on it, such as the listener of a forward, stays. A stream opened
// while it reconnects waits for the next session. A session that never
// carried a stream is redialed only when a stream needs it (the edge closes
// idle client sessions). Notify hears what a person watching should know:
// a lost session, each failed redial, the reconnection.
//
// The package opens no listener and reads no file: the caller passes the
// *tls.Config, and the CLI (cli) builds it from its profile.
package client
