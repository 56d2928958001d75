// Package udp is the UDP tunnel stream type (0x11), both halves: Handler
// serves tunnels on the device, Listener forwards local datagrams through
// them on the client. Both are struct literals that work from their zero
// value (Listener needs an Opener and a Remote): Start or Serve them, then
// Close them.
//
// # Wire format
//
// The opening message's payload is "<suggested source port>:<host>:<port>",
// for example "5353:127.0.0.1:53" (IPv6 hosts in brackets). After the OK
// answer both directions of the stream carry datagrams framed as
//
//	+----------------+------------------+--------------+
//	| port, 2 B BE   | length m, 2 B BE | m bytes data |
//	+----------------+------------------+--------------+
//
// Client to device, port is the destination port on the device side; device
// to client, port is the source port of the datagram the remote service
// sent, so that the client can answer from a matching local port. Frames
// may be written several to one write or one across several writes; readers
// reassemble them by their length field.
//
// Port 0 is no datagram's port. From device to client, a frame for port 0
// is a close frame: its data is a UTF-8 reason (at most MaxCloseReason
// bytes), and the device closes the stream after it. Older clients drop it
// as an invalid frame and then see the stream end.
//
// # Device side
//
// Handler.Serve answers Error, before any datagram leaves the device, for
// a malformed request, a target that DeviceConfig.Authorize refuses, and a
// broadcast, multicast or unspecified address (also when a DNS name
// resolves only to such). Otherwise it binds a socket, on loopback of the
// target's family when the target is loopback and on the unspecified
// address otherwise, trying the suggested source port first, answers OK and
// relays until the stream ends or the tunnel idles out.
//
// A tunnel reaches one port: a client datagram goes to the port of the
// opening message, or to a port the target has itself answered from on
// this tunnel (a service that replies from another port, as TFTP does);
// the tunnel remembers the last 8 such ports. Datagrams for
// any other port are dropped and counted (DeviceStats.DroppedPort), so a
// client allowed 10.0.0.1:53 cannot reach 10.0.0.1's other services.
//
// A tunnel's replies are capped against its requests: over any
// DeviceConfig.ReplyRatioWindow (10 s), the payload bytes relayed from the
// target may total at most MaxReplyRatio (10) times the payload bytes sent
// to it, plus ReplyAllowance (64 KiB, so one answer of any size to a
// single query passes). The datagram that would pass the cap is dropped
// and the tunnel ends with a close frame saying so
// (DeviceStats.ClosedReplyRatio).
//
// A tunnel holds two fixed buffers of about DeviceConfig.MaxDatagram bytes
// each and queues nothing else: when the client is slow, the stream's flow
// control holds the relay and the kernel drops what overflows the socket,
// as it would for any slow UDP reader. Datagrams longer than MaxDatagram,
// datagrams over the packet-rate limit, frames for port 0 or for a port the
// tunnel may not reach, and datagrams from any address other than the
// target's are dropped and counted in DeviceStats, never truncated or
// passed on.
//
// # Client side
//
// Listener gives each local peer (ip:port) its own stream and asks the
// device to send from the peer's port, as qbee-v1 does. When the remote
// answers from a port other than the one it was sent to, the Listener opens
// a secondary socket on its own IP (on that port when free) and sends the
// answer from there; datagrams the peer sends to the secondary socket go to
// the remote's matching port. Peers' streams and secondary sockets close
// after Listener.IdleTimeout without traffic; a datagram is never handed
// to a peer that is going away. A close frame ends the peer's flow: the
// Listener logs the reason, counts it (ListenerStats.ClosedByDevice) and
// hands it to Listener.OnDeviceClose as a *DeviceCloseError; the peer's
// next datagram opens a new flow.
package udp
