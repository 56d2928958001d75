package edge

import (
	"time"
)

// Limits bound what one peer can make the edge do. Every zero field takes
// the default named on it.
//
// The stream caps nest. Server.Transport's MaxStreams bounds every
// session of the edge, client or device, and sizes its receive buffer;
// within it, MaxStreamsPerClientSession bounds what one client session
// opens, MaxStreamsPerDevice what all clients together have open to one
// device, and MaxStreamsPerClientPerDevice one client's share of a device.
// The device's own cap (its agent's max_streams) applies beyond the edge.
// The timeouts of connection set-up and of opening a stream are those of
// Server.Transport (HandshakeTimeout, OpenTimeout).
type Limits struct {
	// MaxStreamsPerClientSession caps the concurrent streams of one client
	// session; beyond it a stream is answered "too many streams". It is
	// never above the transport's MaxStreams. Default 64.
	MaxStreamsPerClientSession int
	// MaxStreamsPerDevice caps the concurrent streams the edge opens to one
	// device, across all its clients. It is never above the transport's
	// MaxStreams, which sizes the session receive buffer so that this many
	// stalled streams cannot freeze the session. Default: that MaxStreams.
	MaxStreamsPerDevice int
	// MaxStreamsPerClientPerDevice caps the concurrent streams that one
	// client identity, across all its sessions, may have open to one
	// device, so that no client can take all of the device's streams and
	// lock the others out. Default: half of what the device serves: the
	// smaller of MaxStreamsPerDevice and the cap the device announces on
	// its upgrade (Tether-Max-Streams; our agents send their max_streams),
	// at least 1. Never above that cap.
	MaxStreamsPerClientPerDevice int
	// MaxHeaderBytes bounds the request line and headers, in bytes.
	// Default 16 KiB.
	MaxHeaderBytes int
	// UpgradeRate is the sustained number of upgrade requests per second
	// allowed from one source IP; UpgradeBurst the burst above it. A
	// request beyond them gets 429. The defaults, 200/s and 2000, let a
	// fleet behind one NAT address reconnect at once after an edge restart
	// (devices back off and retry on 429).
	UpgradeRate  float64
	UpgradeBurst int
	// StallTimeout resets a spliced stream when one direction has data
	// waiting but its reader made no progress for this long, so a stalled
	// client holds nothing of the device session. Default 60s.
	StallTimeout time.Duration
	// GoAwayTimeout bounds sending GoAway to one device. Default 5s.
	GoAwayTimeout time.Duration
	// FirstStreamTimeout closes a client session that has opened no
	// stream this long after its upgrade. Default 30s.
	FirstStreamTimeout time.Duration
	// AuditTimeout bounds how long the opening of a stream that must be
	// audited (PTY, file transfer) waits for its record to be written;
	// past it the stream is refused with "audit log unavailable".
	// Default 5s.
	AuditTimeout time.Duration
	// RejectAuditRate is the sustained number of refused-upgrade audit
	// records per second (all peers together), RejectAuditBurst the burst
	// above it: unauthenticated peers can cause refusals at will. The next
	// record written counts those left out (Event.Suppressed). Defaults
	// 20/s and 200.
	RejectAuditRate  float64
	RejectAuditBurst int
}

// Limit defaults.
const (
	DefaultMaxStreamsPerClientSession = 64
	DefaultMaxHeaderBytes             = 16 << 10
	DefaultUpgradeRate                = 200
	DefaultUpgradeBurst               = 2000
	DefaultStallTimeout               = 60 * time.Second
	DefaultGoAwayTimeout              = 5 * time.Second
	DefaultFirstStreamTimeout         = 30 * time.Second
	DefaultAuditTimeout               = 5 * time.Second
	DefaultRejectAuditRate            = 20
	DefaultRejectAuditBurst           = 200
)

// withDefaults fills zero fields; maxStreams is the transport's MaxStreams.
func (l Limits) withDefaults(maxStreams int) Limits {
	if l.MaxStreamsPerClientSession <= 0 {
		l.MaxStreamsPerClientSession = DefaultMaxStreamsPerClientSession
	}
	l.MaxStreamsPerClientSession = min(l.MaxStreamsPerClientSession, maxStreams)
	if l.MaxStreamsPerDevice <= 0 || l.MaxStreamsPerDevice > maxStreams {
		l.MaxStreamsPerDevice = maxStreams
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.UpgradeRate <= 0 {
		l.UpgradeRate = DefaultUpgradeRate
	}
	if l.UpgradeBurst <= 0 {
		l.UpgradeBurst = DefaultUpgradeBurst
	}
	if l.StallTimeout <= 0 {
		l.StallTimeout = DefaultStallTimeout
	}
	if l.GoAwayTimeout <= 0 {
		l.GoAwayTimeout = DefaultGoAwayTimeout
	}
	if l.MaxStreamsPerClientPerDevice <= 0 {
		l.MaxStreamsPerClientPerDevice = max(1, l.MaxStreamsPerDevice/2)
	}
	l.MaxStreamsPerClientPerDevice = min(l.MaxStreamsPerClientPerDevice, l.MaxStreamsPerDevice)
	if l.FirstStreamTimeout <= 0 {
		l.FirstStreamTimeout = DefaultFirstStreamTimeout
	}
	if l.AuditTimeout <= 0 {
		l.AuditTimeout = DefaultAuditTimeout
	}
	if l.RejectAuditRate <= 0 {
		l.RejectAuditRate = DefaultRejectAuditRate
	}
	if l.RejectAuditBurst <= 0 {
		l.RejectAuditBurst = DefaultRejectAuditBurst
	}
	return l
}
