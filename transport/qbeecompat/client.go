package qbeecompat

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/tetherhq/tether/internal/logx"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/udp"
)

// ErrClientClosed: a tunnel was asked of a Client after its Close.
var ErrClientClosed = errors.New("qbeecompat: client closed")

// Client is a session through the edge to one device: a client.Client, plus
// the tunnels opened with it, which Close ends.
type Client struct {
	inner *client.Client

	mu sync.Mutex
	// mu guards the following.
	log      *slog.Logger
	closed   bool
	forwards []*tcp.Forward
	udps     []*udp.Listener
}

// NewClient connects to endpointURL, the edge's client endpoint for one
// device (https://edge.example.com:8443/client/<device ID>, or
// /device/<device ID> as the reference's clients dial), sending authToken
// as the whole Authorization header (the bare token, or "Bearer <token>");
// empty sends none. tlsConfig verifies the edge; nil means the system roots. ctx
// bounds the connection set-up only.
func NewClient(ctx context.Context, endpointURL, authToken string, tlsConfig *tls.Config) (*Client, error) {
	sess, err := transport.Dial(ctx, endpointURL, authToken, tlsConfig, nil)
	if err != nil {
		return nil, err
	}
	return wrapClient(client.New(sess), slog.Default()), nil
}

func wrapClient(c *client.Client, log *slog.Logger) *Client {
	return &Client{inner: c, log: log}
}

// WithLogger sets the logger of the tunnels opened from now on (failed
// tunnel streams are logged at Warn); the default is slog.Default(). nil
// discards. It returns c, so that it chains.
func (c *Client) WithLogger(l *slog.Logger) *Client {
	l = logx.Or(l)
	c.mu.Lock()
	c.log = l
	c.mu.Unlock()
	return c
}

// Native returns the Tether client underneath: a transport.Opener for the
// stream types' own packages (tcp.Dial, udp.Listener, pty.Open).
func (c *Client) Native() *client.Client { return c.inner }

// GetSession returns the session underneath.
func (c *Client) GetSession() *transport.Session { return c.inner.Session() }

// OpenStream opens a stream of type msgType with payload and waits for the
// device's answer; see OpenStreamPayload.
func (c *Client) OpenStream(ctx context.Context, msgType MessageType, payload []byte) (*Stream, error) {
	st, _, err := c.inner.OpenStream(ctx, msgType, payload)
	return st, err
}

// OpenStreamPayload opens a stream of type msgType with payload and waits for
// the answer. On OK it returns the stream and the OK payload; an Error answer
// returns a *wire.RemoteError with the reason; a stream closed without an
// answer returns wire.ErrNoAnswer. ctx and the session's OpenTimeout (15 s)
// bound the exchange.
func (c *Client) OpenStreamPayload(ctx context.Context, msgType MessageType, payload []byte) (*Stream, []byte, error) {
	return c.inner.OpenStream(ctx, msgType, payload)
}

// OpenTCPTunnel listens on localHostPort ("127.0.0.1:8080"; port 0 picks one)
// and forwards every connection to remoteHostPort as the device reaches it,
// like ssh -L. Closing the returned listener, ending ctx or closing c stops
// the tunnel and closes its connections.
func (c *Client) OpenTCPTunnel(ctx context.Context, localHostPort, remoteHostPort string) (*net.TCPListener, error) {
	if _, err := target.Parse(remoteHostPort); err != nil {
		return nil, fmt.Errorf("qbeecompat: TCP tunnel remote: %w; want host:port as the device reaches it, such as 127.0.0.1:22", err)
	}
	laddr, err := net.ResolveTCPAddr("tcp", localHostPort)
	if err != nil {
		return nil, fmt.Errorf("qbeecompat: TCP tunnel local address %q: %w; want ip:port, such as 127.0.0.1:8080", localHostPort, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClientClosed
	}
	ln, err := net.ListenTCP("tcp", laddr)
	if err != nil {
		return nil, fmt.Errorf("qbeecompat: TCP tunnel: %w; pick a free port or port 0", err)
	}
	f := &tcp.Forward{Listener: ln, Opener: c.inner, Remote: remoteHostPort, Logger: c.log}
	if err := f.Start(ctx); err != nil {
		ln.Close()
		return nil, err
	}
	c.forwards = append(pruneForwards(c.forwards), f)
	return ln, nil
}

// UDPTunnel forwards the datagrams of local UDP peers through the device:
// a udp.Listener.
type UDPTunnel struct {
	l *udp.Listener
}

// OpenUDPTunnel binds localHostPort ("127.0.0.1:5353"; port 0 picks one) and
// forwards what local peers send there to remoteHostPort as the device
// reaches it, one stream per peer. Answers from other ports of the remote
// come from matching local ports, as in the reference. Close, ending ctx or
// closing c stops it.
func (c *Client) OpenUDPTunnel(ctx context.Context, localHostPort, remoteHostPort string) (*UDPTunnel, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClientClosed
	}
	l := &udp.Listener{Opener: c.inner, Local: localHostPort, Remote: remoteHostPort, Logger: c.log}
	if err := l.Start(ctx); err != nil {
		return nil, fmt.Errorf("qbeecompat: UDP tunnel: %w", err)
	}
	c.udps = append(pruneUDPs(c.udps), l)
	return &UDPTunnel{l: l}, nil
}

// PrimaryAddr is the local address peers send to.
func (t *UDPTunnel) PrimaryAddr() *net.UDPAddr { return t.l.Addr().(*net.UDPAddr) }

// Native returns the udp.Listener underneath, for its Stats.
func (t *UDPTunnel) Native() *udp.Listener { return t.l }

// Close closes the sockets and streams of the tunnel and waits until they
// are gone. It is idempotent.
func (t *UDPTunnel) Close() error { return t.l.Close() }

// Close ends the tunnels opened with c, then the session and every stream
// on it. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	forwards, udps := c.forwards, c.udps
	c.forwards, c.udps = nil, nil
	c.mu.Unlock()
	for _, f := range forwards {
		f.Close()
	}
	for _, l := range udps {
		l.Close()
	}
	return c.inner.Close()
}

// pruneForwards drops the forwards that have stopped on their own (their
// listener was closed), so a long-lived Client does not hold on to them.
func pruneForwards(fs []*tcp.Forward) []*tcp.Forward {
	kept := fs[:0]
	for _, f := range fs {
		select {
		case <-f.Done():
		default:
			kept = append(kept, f)
		}
	}
	return kept
}

// pruneUDPs drops the UDP tunnels that have stopped.
func pruneUDPs(ls []*udp.Listener) []*udp.Listener {
	kept := ls[:0]
	for _, l := range ls {
		select {
		case <-l.Done():
		default:
			kept = append(kept, l)
		}
	}
	return kept
}
