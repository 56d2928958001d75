// Package agent is the device agent that tether-agent runs, driven by its
// configuration file (agent.yaml): it keeps an embedded host connected to
// the edge with the device runtime (package device) and serves the streams
// the edge opens with the stream types' device halves (transport/tcp, udp,
// pty), under the device owner's own configuration.
//
// The agent serves TCP tunnels (0x10), UDP tunnels (0x11), PTY sessions
// (0x12, 0x13, when enabled) and reloads (0x14). Every tunnel target is
// checked against the owner's allow list on the device, whatever the edge
// allowed, so that a compromised edge cannot reach the device's network;
// the default list is loopback only. A target's name is resolved once, on
// the device, every address it resolves to is checked, and the tunnel
// connects to exactly those addresses (see Config).
//
// The package reads the YAML configuration file but no TLS file: the caller
// (cmd/tether-agent) builds the tls.Config, opens no listener and catches
// the signals.
package agent
