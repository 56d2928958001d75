package qbeecompat

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/logx"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/udp"
)

// Handler serves one stream of the type it is registered for; payload is the
// opening message's payload, already read. It answers with WriteOK or
// WriteError, then uses the stream. Returning an error before answering
// sends the error's text as the Error answer; returning one after answering
// resets the stream; returning nil closes it. ctx ends when the DeviceClient
// is closed or its session is gone. See device.Handler.
type Handler func(ctx context.Context, stream *Stream, payload []byte) error

// DeviceClient keeps a device connected to the edge and serves the streams
// the edge opens with the handlers registered for their types: a
// device.Client.
type DeviceClient struct {
	inner *device.Client

	mu sync.Mutex
	// mu guards the following.
	log      *slog.Logger
	started  bool
	closed   bool
	startErr error
}

// NewDeviceClient returns a device client for endpoint, the edge's device
// endpoint (https://edge.example.com:8443/device). tlsConfig carries the
// device certificate and the edge's CA. Register handlers with WithHandler,
// then Start.
func NewDeviceClient(endpoint string, tlsConfig *tls.Config) (*DeviceClient, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("qbeecompat: device endpoint %q: %w; want https://host[:port]/device", endpoint, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("qbeecompat: device endpoint %q: want an https URL with a host, such as https://edge.example.com:8443/device", endpoint)
	}
	return &DeviceClient{inner: &device.Client{URL: endpoint, TLSConfig: tlsConfig}, log: slog.Default()}, nil
}

// wrapDevice wraps a device client that already runs.
func wrapDevice(d *device.Client, log *slog.Logger) *DeviceClient {
	return &DeviceClient{inner: d, log: log, started: true}
}

// WithHandler registers h for streams of type t, replacing any earlier
// handler, and returns c so that calls chain. Handlers may be registered
// while the client runs; each stream looks its handler up when it opens.
func (c *DeviceClient) WithHandler(t MessageType, h Handler) *DeviceClient {
	c.inner.Handle(t, device.Handler(h))
	return c
}

// WithLogger sets the logger of the connection's state changes and of
// Start's failures; the default is slog.Default(). nil discards. Call it
// before Start: on a running client (such as NewEdgeMock's) it changes
// Start's messages only. It returns c, so that it chains.
func (c *DeviceClient) WithLogger(l *slog.Logger) *DeviceClient {
	l = logx.Or(l)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = l
	if !c.started {
		c.inner.Logger = l
	}
	return c
}

// Native returns the Tether device client underneath. Set its fields
// (Config, BackoffInitial, ...) before Start.
func (c *DeviceClient) Native() *device.Client { return c.inner }

// Start connects in the background and keeps reconnecting until ctx ends or
// Close is called. It returns at once and reports nothing: a client that
// cannot start (closed before, say) logs why at Error and Err returns it.
// Calling Start on a running client does nothing. A closed client does not
// start again: make a new one.
func (c *DeviceClient) Start(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		if c.closed {
			c.startErr = fmt.Errorf("qbeecompat: start: %w; make a new DeviceClient", device.ErrClosed)
			c.log.Error("device client not started", "err", c.startErr)
		}
		return
	}
	c.started = true
	if c.inner.Logger == nil {
		c.inner.Logger = c.log
	}
	if err := c.inner.Start(ctx); err != nil {
		c.startErr = fmt.Errorf("qbeecompat: start: %w", err)
		c.log.Error("device client not started", "edge", c.inner.URL, "err", err)
	}
}

// Ready blocks until the device is connected to the edge, or the client has
// stopped (Close, or the end of Start's context).
func (c *DeviceClient) Ready() {
	select {
	case <-c.inner.Ready():
	case <-c.inner.Done():
	}
}

// IsRunning reports whether the client was started and has not stopped. It
// stays true while the client reconnects.
func (c *DeviceClient) IsRunning() bool {
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if !started {
		return false
	}
	select {
	case <-c.inner.Done():
		return false
	default:
		return true
	}
}

// Err returns why the client stopped or did not start: Start's failure, or
// the end of Start's context. It is nil while the client runs and after a
// plain Close.
func (c *DeviceClient) Err() error {
	c.mu.Lock()
	err := c.startErr
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := c.inner.Err(); err != nil && !errors.Is(err, device.ErrClosed) {
		return err
	}
	return nil
}

// Close closes the session, cuts open streams, ends every handler's context
// and waits for the handlers to return. It is idempotent.
func (c *DeviceClient) Close() error {
	c.mu.Lock()
	c.closed = true
	c.started = true // a closed client never starts
	c.mu.Unlock()
	return c.inner.Close()
}

// tcpTunnels serves HandleTCPTunnel: the zero tcp.Handler, loopback targets
// only. It holds no state, so one serves every device.
var tcpTunnels tcp.Handler

// HandleTCPTunnel serves a TCP tunnel stream (register it for
// MessageTypeTCPTunnel): the zero tcp.Handler, which connects to loopback
// targets only ("127.0.0.1:22", "[::1]:80", "localhost:8080") and answers
// Error for any other. Register (&tcp.Handler{Authorize: ...}).Serve to
// serve others.
func HandleTCPTunnel(ctx context.Context, stream *Stream, payload []byte) error {
	return tcpTunnels.Serve(ctx, stream, payload)
}

// udpTunnels serves HandleUDPTunnel. A udp.Handler keeps no goroutine of its
// own: each tunnel lives in its Serve call, which its DeviceClient owns.
var udpTunnels udp.Handler

// HandleUDPTunnel serves a UDP tunnel stream (register it for
// MessageTypeUDPTunnel) with udp.Handler's defaults: any unicast target the
// device resolves, with the reply cap and port pinning of package udp.
// Register (&udp.Handler{Config: udp.DeviceConfig{Authorize: ...}}).Serve to
// restrict the targets.
func HandleUDPTunnel(ctx context.Context, stream *Stream, payload []byte) error {
	return udpTunnels.Serve(ctx, stream, payload)
}
