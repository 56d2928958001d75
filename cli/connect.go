package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// tlsConfig is the client TLS configuration: the edge verified against the
// CA of --ca, or the system pool when none is set.
func tlsConfig(s *Settings) (*tls.Config, error) {
	if s.CA == "" {
		return certs.ClientTLSConfig(nil), nil
	}
	pool, err := certs.LoadPool(s.CA)
	if err != nil {
		return nil, &configError{fmt.Errorf("read the CA certificate %s: %w", s.CA, err)}
	}
	return certs.ClientTLSConfig(pool), nil
}

// connection is everything a device command needs to reach the edge.
type connection struct {
	settings *Settings
	tls      *tls.Config
	device   string
	log      *slog.Logger
	cfg      *transport.Config
}

// prepare resolves settings for a command that reaches device.
func (g *globalOptions) prepare(device string) (*connection, error) {
	g.msg.device = device
	s, err := g.settings()
	if err != nil {
		return nil, err
	}
	if err := s.requireEdge(); err != nil {
		return nil, err
	}
	if device == "" {
		return nil, usageErrorf("the device ID is empty")
	}
	tc, err := tlsConfig(s)
	if err != nil {
		return nil, err
	}
	return &connection{settings: s, tls: tc, device: device, log: g.logger(),
		cfg: &transport.Config{HandshakeTimeout: g.timeout}}, nil
}

// dial opens a client session to the device. Its Done reports a lost
// connection at once.
func (c *connection) dial(ctx context.Context) (*transport.Client, error) {
	c.log.Debug("dialing the edge", "edge", c.settings.Edge, "device", c.device)
	return transport.DialClient(ctx, c.settings.Edge, c.device, c.settings.Token, c.tls, c.cfg)
}

// Reconnect delays of long-running commands (tcp, udp).
const (
	redialInitial = 500 * time.Millisecond
	redialMax     = 15 * time.Second
)

// redialer is a transport.Opener that keeps a session to the edge: when the
// session is lost it redials with backoff, while the forwards built on it
// keep their listeners. Streams opened while it is reconnecting wait for
// the new session, within their context.
//
// A session that never carried a stream is redialed only when a stream
// needs it: the edge closes a client session that opens no stream within
// its first-stream deadline, and an idle forward has nothing to say.
type redialer struct {
	conn *connection
	out  func(format string, args ...any) // progress lines for the user

	cancel context.CancelFunc
	done   chan struct{}
	demand chan struct{} // a stream waits for a session

	mu sync.Mutex
	// mu guards the following.
	cur     *transport.Client
	used    bool          // cur carried a stream
	changed chan struct{} // closed and replaced whenever cur changes
}

// newRedialer starts keeping first (an established client) and its
// successors alive until ctx ends or Close is called.
func newRedialer(ctx context.Context, conn *connection, first *transport.Client, out func(string, ...any)) *redialer {
	ctx, cancel := context.WithCancel(ctx)
	r := &redialer{conn: conn, out: out, cancel: cancel, done: make(chan struct{}), demand: make(chan struct{}, 1),
		cur: first, changed: make(chan struct{})}
	go r.loop(ctx, first)
	return r
}

// set makes c the current session and returns whether the one it replaces
// carried a stream.
func (r *redialer) set(c *transport.Client) (used bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	used = r.used
	r.cur, r.used = c, false
	close(r.changed)
	r.changed = make(chan struct{})
	return used
}

func (r *redialer) markUsed() {
	r.mu.Lock()
	r.used = true
	r.mu.Unlock()
}

func (r *redialer) loop(ctx context.Context, cl *transport.Client) {
	defer close(r.done)
	for {
		select {
		case <-ctx.Done():
			cl.Close()
			return
		case <-cl.Done():
		}
		cl.Close()
		used := r.set(nil)
		if used {
			r.out("lost the connection to the edge; reconnecting (local listeners stay open)")
		} else {
			r.conn.log.Debug("the edge closed the idle session; redialing when a connection needs it")
			select {
			case <-ctx.Done():
				return
			case <-r.demand:
			}
		}
		bo := transport.Backoff{Initial: redialInitial, Max: redialMax}
		var lastMsg string
		for {
			var err error
			cl, err = r.conn.dial(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			_, msg := describe(err, msgContext{r.conn.settings.Edge, r.conn.device, r.conn.settings.TokenFrom, r.conn.settings.CA})
			if msg != lastMsg {
				r.out("reconnect failed: %s; retrying", msg)
				lastMsg = msg
			}
			t := time.NewTimer(bo.Next())
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		r.set(cl)
		if used || lastMsg != "" {
			r.out("reconnected to the edge")
		}
	}
}

// client returns the current session, waiting for a reconnect within ctx.
func (r *redialer) client(ctx context.Context) (*transport.Client, error) {
	for {
		r.mu.Lock()
		cur, changed := r.cur, r.changed
		r.mu.Unlock()
		if cur != nil {
			return cur, nil
		}
		select {
		case r.demand <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the edge: %w", ctx.Err())
		case <-r.done:
			return nil, transport.ErrClientClosed
		case <-changed:
		}
	}
}

// OpenStream opens a stream on the current session. A stream that fails
// because the session just died is retried once on the next session.
func (r *redialer) OpenStream(ctx context.Context, t wire.MsgType, payload []byte) (*transport.Stream, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, transport.DefaultOpenTimeout+redialMax)
	defer cancel()
	for attempt := 0; ; attempt++ {
		cl, err := r.client(ctx)
		if err != nil {
			return nil, nil, err
		}
		st, ok, err := cl.OpenStream(ctx, t, payload)
		if err == nil {
			r.markUsed()
			return st, ok, nil
		}
		var re *wire.RemoteError
		if errors.As(err, &re) || errors.Is(err, wire.ErrNoAnswer) || attempt > 0 || ctx.Err() != nil {
			return nil, nil, err
		}
		// A stream that failed because the session died is retried on the
		// next session; Done reports a broken session promptly.
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-cl.Done():
			t.Stop()
		case <-t.C:
			return nil, nil, err
		}
	}
}

// Close stops reconnecting and closes the current session.
func (r *redialer) Close() error {
	r.cancel()
	<-r.done
	r.mu.Lock()
	cur := r.cur
	r.mu.Unlock()
	if cur != nil {
		cur.Close()
	}
	return nil
}
