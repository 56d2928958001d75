package transport

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Upgrade headers of our backward-compatible extensions (docs/protocol.md,
// "Extensions on the upgrade"). Peers that do not know them ignore them;
// a feature is used only when the peer announced it.
const (
	// HeaderExtensions lists the extensions the sender understands, as a
	// comma-separated token list.
	HeaderExtensions = "Tether-Extensions"
	// HeaderKeepAlive is the sender's keep-alive interval in milliseconds.
	HeaderKeepAlive = "Tether-Keepalive"
	// HeaderMaxStreams is how many streams the sender serves at once; more
	// are answered "too many streams". An edge sizes its per-client share
	// of a device by it.
	HeaderMaxStreams = "Tether-Max-Streams"
	// ExtensionReset is the token for stream resets (the RST frame).
	ExtensionReset = "reset"
)

// Bounds of an announced keep-alive interval; a value outside them is
// ignored, as if none had been announced.
const (
	minAnnouncedInterval = 100 * time.Millisecond
	maxAnnouncedInterval = time.Hour
)

// ReferenceKeepAliveTimeout is the receive timeout used for a peer that
// announced no keep-alive interval: qbee-v1 peers send a NOP only every
// 45 s and wait 120 s themselves. A dead network under such a peer is still
// found within the configured timeout, by the TCP user timeout on our own
// keep-alive frames.
const ReferenceKeepAliveTimeout = 120 * time.Second

// peerInfo is what the peer announced on the upgrade.
type peerInfo struct {
	reset      bool          // the peer understands stream resets
	interval   time.Duration // the peer's keep-alive interval; 0 when not announced
	maxStreams int           // the streams the peer serves at once; 0 when not announced
}

// recvTimeout is how long this side waits for any frame from the peer
// before it presumes the peer dead: ours, unless the peer's own interval
// needs longer (three intervals), or the peer announced none.
func (p peerInfo) recvTimeout(ours time.Duration) time.Duration {
	if p.interval > 0 {
		return max(ours, 3*p.interval)
	}
	return max(ours, ReferenceKeepAliveTimeout)
}

// announce adds our extension headers for a session configured by d.
func announce(h http.Header, d *Config) {
	h.Set(HeaderExtensions, ExtensionReset)
	h.Set(HeaderKeepAlive, strconv.FormatInt(d.KeepAliveInterval.Milliseconds(), 10))
	h.Set(HeaderMaxStreams, strconv.Itoa(d.MaxStreams))
}

// parsePeer reads the peer's extension headers. Unknown tokens and values
// out of range are ignored.
func parsePeer(h http.Header) peerInfo {
	var p peerInfo
	p.reset = headerHasToken(h, HeaderExtensions, ExtensionReset)
	if v := h.Values(HeaderKeepAlive); len(v) == 1 {
		// The range is checked in milliseconds: a huge count would
		// overflow as a Duration, and could wrap into the range.
		ms, err := strconv.ParseInt(strings.TrimSpace(v[0]), 10, 64)
		if err == nil && ms >= minAnnouncedInterval.Milliseconds() && ms <= maxAnnouncedInterval.Milliseconds() {
			p.interval = time.Duration(ms) * time.Millisecond
		}
	}
	if v := h.Values(HeaderMaxStreams); len(v) == 1 {
		if n, err := strconv.Atoi(strings.TrimSpace(v[0])); err == nil && n >= 1 && n <= 1<<16 {
			p.maxStreams = n
		}
	}
	return p
}
