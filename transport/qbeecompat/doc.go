// Package qbeecompat runs programs written against go.qbee.io/transport, the
// reference implementation of the qbee-v1 protocol, on Tether's packages: for
// the calls listed below, switching is one import line.
//
//	import transport "github.com/tetherhq/tether/transport/qbeecompat"
//
// (A file that imported the reference under another name keeps that name and
// changes the path only.) The package is a thin layer: every name is the
// reference's, implemented by the Tether package named in brackets, and
// Native on each type hands over the Tether value underneath.
//
// # Covered
//
//   - Messages: MessageType and its constants, WriteMessage, ReadMessage,
//     WriteOK, WriteError, ExpectOK [transport/wire].
//   - Pipe [transport.Splice].
//   - Client side: NewClient; Client's OpenStream, OpenStreamPayload,
//     OpenTCPTunnel [transport/tcp.Forward], OpenUDPTunnel with
//     UDPTunnel.PrimaryAddr and Close [udp.Listener], GetSession and Close
//     [transport/client].
//   - Device side: Handler; NewDeviceClient; DeviceClient's WithHandler,
//     Start, Ready, IsRunning, Err and Close [device]; HandleTCPTunnel
//     [transport/tcp.Handler] and HandleUDPTunnel [udp.Handler].
//   - Tests: Tester, NewEdgeMock; EdgeMock's URL, ClientTLS, Client and
//     DeviceClient [mock]. The mock is a real edge (policy, mTLS, audit), not
//     a bare relay.
//
// # What differs
//
//   - Streams are *Stream, which is *transport.Stream, not *smux.Stream.
//     OpenStream returns one; a Handler takes one. A custom handler written
//     as func(ctx, *smux.Stream, []byte) error changes that one type to
//     *transport.Stream; its body stays, since Stream is a net.Conn with
//     CloseWrite (the smux-specific GetDieCh is gone: use the handler's ctx).
//     GetSession returns *transport.Session rather than *smux.Session.
//   - Half-close is lossless: when one side of a TCP tunnel shuts its write
//     half, the other side reads EOF after every byte and the reverse
//     direction keeps flowing (the reference ends both at the first EOF).
//   - A tunnel that fails ends in a stream reset where the peer supports it,
//     not in a FIN, so the far end does not take a cut connection for a
//     complete one. A handler that returns an error after answering OK resets
//     its stream; one that returns an error before answering sends the
//     error's text as the Error answer (the reference only logs it).
//   - HandleTCPTunnel serves loopback targets only, like a zero tcp.Handler.
//     The reference dials whatever the client names. To serve other targets,
//     register (&tcp.Handler{Authorize: ...}).Serve, which is a Handler too.
//     HandleUDPTunnel refuses broadcast, multicast and unspecified targets,
//     caps replies against requests and lets a tunnel reach only its port
//     and the ports the target answered from (package udp).
//   - DeviceClient.Start returns nothing, as the reference's does; it logs
//     what went wrong and Err reports it. Logs go to slog.Default() unless
//     WithLogger sets another logger: a compatibility layer whose Start cannot
//     return an error must not hide one. Reconnects follow transport.Backoff
//     (jittered, 1 s growing to 60 s), not a fixed 3-10 s.
//   - Sessions send keep-alives every 10 s and give up on a silent peer after
//     30 s (the reference: 45 s and 120 s); peers that announce no interval,
//     as reference peers do, are given 120 s.
//   - UDP tunnels close a local peer's stream after 60 s idle (reference: 15
//     minutes).
//   - NewEdgeMock's client and device are those of mock.NewEdgeMock:
//     EdgeMock.Client returns a new client bound to the mock's device, and
//     EdgeMock.DeviceClient the one device (the reference's would be a second
//     device, which its mock refuses).
//   - NewClient's endpointURL is used as given, and authToken is the whole
//     Authorization header value. Tether's edge serves clients on
//     /client/<device ID> (mock's EdgeMock.ClientURL) and, as the
//     reference's clients dial, on /device/<device ID> and
//     /edge/<edge ID>/device/<device ID>, with the bare token or
//     "Bearer <token>".
//
// # Not covered
//
// PTY streams (use package pty, whose Open returns a session with Resize and
// the exit status), ClientConnect, UpgradeHandler, DefaultSmuxConfig,
// WithSmuxConfig (use Native and set device.Client.Config before Start),
// WithIOWaitTimeout (use the context), ParsePortUint16, and the PTY and
// Command payload types (package wire has PTYCommand), and file transfer
// (DownloadFile, UploadFile, HandleFileTransfer: use package
// transport/files, whose DownloadFile, UploadFile and Server speak the
// same 0x20 stream and add raw mode, checksums and resume).
//
// Importing this package links the edge, for NewEdgeMock. A device binary
// that counts its bytes uses the native packages (device, tcp, udp) instead.
// docs/qbeecompat.md maps every reference name to this package and to the
// native API.
package qbeecompat
