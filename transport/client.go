package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tetherhq/tether/transport/wire"
)

// Opener opens typed streams to one device. *Client implements it; so can a
// wrapper that redials a lost session.
type Opener interface {
	OpenStream(ctx context.Context, t wire.MsgType, payload []byte) (*Stream, []byte, error)
}

// Client is a session to the edge bound to one device.
type Client struct {
	sess *Session
	cfg  *Config
}

// NewClient wraps an established client session. cfg may be nil.
func NewClient(sess *Session, cfg *Config) *Client {
	return &Client{sess: sess, cfg: cfg.withDefaults()}
}

// ClientURL returns the URL of deviceID's client endpoint under the edge's
// base URL, such as https://edge.example.com:8443.
func ClientURL(edgeBase, deviceID string) (string, error) {
	u, err := url.Parse(edgeBase)
	if err != nil {
		return "", fmt.Errorf("transport: parse edge URL: %w", err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/client/" + url.PathEscape(deviceID)
	u.RawPath = ""
	return u.String(), nil
}

// DialClient connects to the edge at edgeBase as a client of deviceID with a
// bearer token.
func DialClient(ctx context.Context, edgeBase, deviceID, token string, tlsConf *tls.Config, cfg *Config) (*Client, error) {
	u, err := ClientURL(edgeBase, deviceID)
	if err != nil {
		return nil, err
	}
	auth := ""
	if token != "" {
		auth = "Bearer " + token
	}
	sess, err := Dial(ctx, u, auth, tlsConf, cfg)
	if err != nil {
		return nil, err
	}
	return NewClient(sess, cfg), nil
}

// Session returns the underlying session.
func (c *Client) Session() *Session { return c.sess }

// Close closes the session and all its streams.
func (c *Client) Close() error { return c.sess.Close() }

// Done is closed as soon as the connection to the edge is gone (see
// Session.Done).
func (c *Client) Done() <-chan struct{} { return c.sess.Done() }

// OpenStream opens a stream of type t, sends payload and waits for the
// answer. On OK it returns the stream, ready for the type's byte stream,
// and the OK payload. On an Error answer it returns a *wire.RemoteError. ctx and
// Config.OpenTimeout bound the exchange; the stream itself has no deadline
// afterwards.
func (c *Client) OpenStream(ctx context.Context, t wire.MsgType, payload []byte) (*Stream, []byte, error) {
	if len(payload) > wire.MaxPayload {
		return nil, nil, fmt.Errorf("%w: %d bytes", wire.ErrPayloadTooLarge, len(payload))
	}
	st, err := c.sess.OpenStream()
	if err != nil {
		return nil, nil, fmt.Errorf("open stream: %w", err)
	}
	ok, err := handshake(ctx, st, c.cfg.OpenTimeout, t, payload)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, ok, nil
}

// handshake sends the opening message on st and reads the answer, within
// ctx and timeout.
func handshake(ctx context.Context, st *Stream, timeout time.Duration, t wire.MsgType, payload []byte) ([]byte, error) {
	deadline := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = st.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := wire.WriteMessage(st, t, payload); err != nil {
		return nil, fmt.Errorf("send %v request: %w", t, ctxErr(ctx, err))
	}
	ok, err := wire.ExpectOK(st)
	if err != nil {
		var re *wire.RemoteError
		if errors.As(err, &re) || errors.Is(err, wire.ErrNoAnswer) {
			return nil, err
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
			return nil, fmt.Errorf("wait for %v answer: no answer within %v (the device or the link may be overloaded; retry): %w", t, timeout, err)
		}
		return nil, fmt.Errorf("wait for %v answer: %w", t, ctxErr(ctx, err))
	}
	if !stop() {
		return nil, ctx.Err()
	}
	_ = st.SetDeadline(time.Time{})
	return ok, nil
}

// DialTCP opens a TCP tunnel: the device dials addr ("host:port") and the
// returned net.Conn carries the bytes. It carries half-close through
// CloseWrite. It fits http.Transport.DialContext:
//
//	tr := &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
//		return c.DialTCP(ctx, addr)
//	}}
func (c *Client) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	st, _, err := c.OpenStream(ctx, wire.MsgTCP, []byte(addr))
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Reload asks the device to reload its configuration. It returns nil on OK
// and a *wire.RemoteError with the device's reason otherwise.
func (c *Client) Reload(ctx context.Context) error {
	st, _, err := c.OpenStream(ctx, wire.MsgReload, nil)
	if err != nil {
		return err
	}
	return st.Close()
}

// ListenTCP listens on local ("127.0.0.1:8080"; port 0 picks one) and
// forwards every accepted connection to remote ("host:port") through the
// device, like ssh -L. The forward runs until ctx ends or it is closed.
func (c *Client) ListenTCP(ctx context.Context, local, remote string) (*Forward, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", local)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", local, err)
	}
	return NewForward(ctx, ln, c, remote, nil), nil
}

// Forward serves a local listener, tunnelling every accepted connection to
// a remote address through an Opener.
type Forward struct {
	ln     net.Listener
	opener Opener
	remote string
	log    *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex
	// mu guards the following.
	conns map[net.Conn]struct{}
	err   error
}

// NewForward starts serving ln. It owns ln and closes it on Close or when
// ctx ends. logger may be nil.
func NewForward(ctx context.Context, ln net.Listener, o Opener, remote string, logger *slog.Logger) *Forward {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Forward{ln: ln, opener: o, remote: remote, log: logger, cancel: cancel,
		done: make(chan struct{}), conns: make(map[net.Conn]struct{})}
	go f.serve(ctx)
	return f
}

// Addr is the local address being served.
func (f *Forward) Addr() net.Addr { return f.ln.Addr() }

// Done is closed when the forward has stopped and every connection is closed.
func (f *Forward) Done() <-chan struct{} { return f.done }

// Err returns why the forward stopped, or nil when it was closed.
func (f *Forward) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Close stops accepting, closes every forwarded connection and waits.
func (f *Forward) Close() error {
	f.cancel()
	<-f.done
	return nil
}

func (f *Forward) serve(ctx context.Context) {
	var wg sync.WaitGroup
	defer close(f.done)
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() {
		f.ln.Close()
		f.mu.Lock()
		for c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	defer stop()
	var delay time.Duration // after a transient Accept error, as net/http does
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				// EMFILE and the like pass: wait and go on.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				f.log.Warn("forward: accept failed; retrying", "local", f.ln.Addr().String(), "err", err, "retry_in", delay.String())
				t := time.NewTimer(delay)
				select {
				case <-ctx.Done():
					t.Stop()
				case <-t.C:
				}
				continue
			}
			if ctx.Err() == nil {
				f.mu.Lock()
				f.err = fmt.Errorf("accept: %w", err)
				f.mu.Unlock()
			}
			f.cancel()
			return
		}
		delay = 0
		if !f.track(ctx, c, true) {
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer f.track(ctx, c, false)
			f.handle(ctx, c)
		}()
	}
}

// track adds or removes c. Adding fails once ctx has ended: the closer
// that runs then holds mu, so no connection escapes it.
func (f *Forward) track(ctx context.Context, c net.Conn, add bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !add {
		delete(f.conns, c)
		return true
	}
	if ctx.Err() != nil {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forward) handle(ctx context.Context, c net.Conn) {
	st, _, err := f.opener.OpenStream(ctx, wire.MsgTCP, []byte(f.remote))
	if err != nil {
		f.log.Warn("forward failed", "local", c.RemoteAddr().String(), "remote", f.remote, "err", err)
		c.Close()
		return
	}
	up, down, err := Splice(ctx, c, st, nil)
	f.log.Debug("forward closed", "remote", f.remote, "sent", up, "received", down, "err", err)
}
