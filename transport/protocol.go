package transport

import (
	"fmt"
	"time"

	"github.com/xtaci/smux"
)

// Config tunes sessions. A nil *Config means DefaultConfig. Every duration
// of zero takes the default named on its field.
type Config struct {
	// KeepAliveInterval is how often a keep-alive frame (NOP) is sent.
	// Default 10s.
	KeepAliveInterval time.Duration
	// KeepAliveTimeout bounds how long a dead peer keeps its session: the
	// session is closed once nothing arrived for this long while this side
	// waited to read, and (on Linux) once our own frames stayed
	// unacknowledged by the peer's host for KeepAliveTimeout minus
	// KeepAliveInterval, but at least half of KeepAliveTimeout. A peer
	// that announced a longer keep-alive interval on the upgrade is given
	// three of its intervals; one that announced none (a qbee-v1 peer,
	// whose interval is 45 s) is given ReferenceKeepAliveTimeout, and its
	// dead network is still found by the second rule. Default 30s.
	KeepAliveTimeout time.Duration
	// MaxFrameSize is the largest smux data frame we send, in bytes
	// (at most 65535). Default 65535.
	MaxFrameSize int
	// MaxStreamBuffer is the receive window a stream starts with, in bytes.
	// A window caps one stream at window/RTT; on a long link the window
	// grows (see MaxStreamWindow). Default 2 MiB.
	MaxStreamBuffer int
	// MaxStreamWindow is the largest receive window one stream may grow
	// to, in bytes. A stream's window grows to twice what it carried in
	// the session's measured round trip, within the receive budget
	// (MaxReceiveBuffer) less the room that the streams the session may
	// still open are sure to get. Zero means the larger of 16 MiB and
	// MaxStreamBuffer; MaxStreamBuffer turns growth off.
	MaxStreamWindow int
	// MaxStreams caps the concurrent streams of one session; a stream beyond
	// it is answered with Error "too many streams". Default 128.
	MaxStreams int
	// MaxReceiveBuffer is the session-wide receive budget in bytes: the
	// windows of all open streams together never exceed it, so streams
	// whose readers stalled can never stop the others. Zero means
	// MaxStreams × MaxStreamBuffer.
	MaxReceiveBuffer int
	// HandshakeTimeout bounds the TCP connect, TLS handshake and HTTP
	// upgrade of Dial. Default 15s.
	HandshakeTimeout time.Duration
	// OpenTimeout bounds opening a stream: the opening message and the
	// answer. Default 15s.
	OpenTimeout time.Duration
}

// Defaults, chosen by measurement with BenchmarkTunnelThroughput (one
// stream, client → broker → device → TCP sink, loopback TLS, 2 cores;
// x = fraction of raw TLS in the same run):
//
//	frame \ window   256 KiB   1 MiB   4 MiB
//	16 KiB            0.36x    0.43x   0.47x
//	32 KiB            0.41x    0.47x   0.51x
//	64 KiB            0.41x    0.47x   0.53x
//
// 64 KiB frames. On loopback 1 MiB is enough, but a window caps a stream at
// window/RTT on a long link: the reference 128 KiB window allows about
// 1.3 MB/s at 100 ms, 1 MiB about 10.5 MB/s, too close to the 10 MB/s a
// cellular device must sustain there. Streams start at 2 MiB (21 MB/s at
// 100 ms) and grow to 16 MiB where the round trip calls for it
// (BenchmarkLongLinkCLI).
//
// Window updates: smux v2 sends one each time the reader consumed half of
// its MaxStreamBuffer. With an update interval of exactly half the window
// any overshoot stalls the sender for a round trip: 65,535-byte frames
// reach half of 2 MiB only at the 17th frame, so the second update of each
// round trip came a round trip late and every long-link stream ran at half
// its window. And bytes consumed but not yet acknowledged are lost to the
// sender: on average half an update interval, so even well-timed updates
// every half window give 0.75 of window/RTT. So smux is given a quarter
// of the stream's window (it updates every eighth of the starting window:
// 256 KiB, one 16-byte frame), and the frame layer writes the stream's
// real window into each update it sends (policer.advertise): an update
// leaves while most of the window is still in flight, whatever the sizes
// of the frames, and a stream gets about 0.94 of window/RTT.
const (
	DefaultKeepAliveInterval = 10 * time.Second
	DefaultKeepAliveTimeout  = 30 * time.Second
	DefaultMaxFrameSize      = 65535
	DefaultMaxStreamBuffer   = 2 << 20
	DefaultMaxStreamWindow   = 16 << 20
	DefaultMaxStreams        = 128
	DefaultHandshakeTimeout  = 15 * time.Second
	DefaultOpenTimeout       = 15 * time.Second
)

// DefaultConfig returns a new Config with every default filled in.
func DefaultConfig() *Config {
	c := &Config{}
	return c.WithDefaults()
}

// WithDefaults returns a copy of c (or of the defaults when c is nil) with
// every zero field replaced by its default.
func (c *Config) WithDefaults() *Config {
	var out Config
	if c != nil {
		out = *c
	}
	if out.KeepAliveInterval == 0 {
		out.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if out.KeepAliveTimeout == 0 {
		out.KeepAliveTimeout = DefaultKeepAliveTimeout
	}
	if out.MaxFrameSize == 0 {
		out.MaxFrameSize = DefaultMaxFrameSize
	}
	if out.MaxStreamBuffer == 0 {
		out.MaxStreamBuffer = DefaultMaxStreamBuffer
	}
	if out.MaxStreamWindow == 0 {
		out.MaxStreamWindow = max(DefaultMaxStreamWindow, out.MaxStreamBuffer)
	}
	if out.MaxStreams == 0 {
		out.MaxStreams = DefaultMaxStreams
	}
	if out.MaxReceiveBuffer == 0 {
		out.MaxReceiveBuffer = out.MaxStreams * out.MaxStreamBuffer
	}
	if out.HandshakeTimeout == 0 {
		out.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if out.OpenTimeout == 0 {
		out.OpenTimeout = DefaultOpenTimeout
	}
	return &out
}

// VerifyConfig reports the first invalid field of c, after defaults.
func VerifyConfig(c *Config) error {
	d := c.WithDefaults()
	switch {
	case d.KeepAliveInterval < 0 || d.KeepAliveTimeout < 0:
		return fmt.Errorf("%w: keep-alive durations must be positive", ErrInvalidConfig)
	case d.KeepAliveTimeout <= d.KeepAliveInterval:
		return fmt.Errorf("%w: keep-alive timeout %v must be longer than the interval %v", ErrInvalidConfig, d.KeepAliveTimeout, d.KeepAliveInterval)
	case d.MaxFrameSize < 1024 || d.MaxFrameSize > 65535:
		return fmt.Errorf("%w: max frame size %d is outside 1024..65535", ErrInvalidConfig, d.MaxFrameSize)
	case d.MaxStreamBuffer < d.MaxFrameSize:
		return fmt.Errorf("%w: stream buffer %d is smaller than a frame (%d)", ErrInvalidConfig, d.MaxStreamBuffer, d.MaxFrameSize)
	case d.MaxStreamWindow < d.MaxStreamBuffer || d.MaxStreamWindow > 1<<30:
		return fmt.Errorf("%w: max stream window %d must be between the stream buffer (%d) and 1 GiB", ErrInvalidConfig, d.MaxStreamWindow, d.MaxStreamBuffer)
	case d.MaxStreams < 1:
		return fmt.Errorf("%w: max streams must be at least 1", ErrInvalidConfig)
	case d.MaxReceiveBuffer < d.MaxStreamBuffer || d.MaxReceiveBuffer > 1<<30:
		return fmt.Errorf("%w: receive buffer %d must be between the stream buffer and 1 GiB", ErrInvalidConfig, d.MaxReceiveBuffer)
	case d.HandshakeTimeout < 0 || d.OpenTimeout < 0:
		return fmt.Errorf("%w: timeouts must be positive", ErrInvalidConfig)
	}
	return nil
}

// tcpUserTimeout is the TCP_USER_TIMEOUT of a session's connection: with a
// keep-alive frame sent every interval, a dead peer host is found within
// KeepAliveTimeout.
func (c *Config) tcpUserTimeout() time.Duration {
	return max(c.KeepAliveTimeout-c.KeepAliveInterval, c.KeepAliveTimeout/2)
}

// smuxConfig is the smux configuration for c. The version is always 2.
// smux's own keep-alive is off: the frame layer runs ours. smux's stream
// buffer is a quarter of our window: smux sends a window update each time
// half of it was consumed, an eighth of our window, and the frame layer
// replaces the window that the update carries with the stream's own.
func (c *Config) smuxConfig() *smux.Config {
	d := c.WithDefaults()
	return &smux.Config{
		Version:           2,
		KeepAliveDisabled: true,
		MaxFrameSize:      d.MaxFrameSize,
		MaxReceiveBuffer:  d.MaxReceiveBuffer,
		MaxStreamBuffer:   d.MaxStreamBuffer / 4,
	}
}
