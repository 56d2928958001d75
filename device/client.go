package device

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherhq/tether/internal/logx"
	"github.com/tetherhq/tether/internal/workers"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// Handler serves one stream of the type it is registered for. payload is
// the opening message's payload, already read.
//
// The handler answers with wire.WriteOK (or wire.WriteError), then uses the
// stream. Returning an error before it answered sends the error's text as
// the Error answer, so a handler may simply return "refused: ..." errors.
// Returning an error after it answered resets the stream, so the peer does
// not take the end for a finished stream; returning nil closes it. ctx ends
// when the Client is closed or the session's connection is gone; the
// handler must then return.
type Handler func(ctx context.Context, st *transport.Stream, payload []byte) error

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("device: client closed")
	// ErrCertExpired: the edge refused the device certificate because it
	// expired. CertRefusal returns it.
	ErrCertExpired = errors.New("device: the edge refused our certificate: expired")
	// ErrCertNotYetValid: the edge refused the device certificate because
	// its validity has not begun (a clock is wrong).
	ErrCertNotYetValid = errors.New("device: the edge refused our certificate: not valid yet")
	// ErrCertRevoked: the edge refused the device certificate because it
	// is revoked.
	ErrCertRevoked = errors.New("device: the edge refused our certificate: revoked")
)

// TLS alerts (RFC 8446 section 6.2) an edge may send about the client
// certificate instead of answering over HTTP.
const (
	alertCertificateRevoked tls.AlertError = 44
	alertCertificateExpired tls.AlertError = 45
)

// CertRefusal tells whether err, from a dial of the edge, is the edge
// refusing the device certificate as expired, not yet valid or revoked:
// it returns ErrCertExpired, ErrCertNotYetValid or ErrCertRevoked, or nil
// for anything else. The edge says so either with a TLS alert, or (as
// tether-edge does) with HTTP 403 and a reason text naming the revoked
// serial or carrying the x509 validity error.
func CertRefusal(err error) error {
	var (
		alert tls.AlertError
		se    *transport.StatusError
	)
	switch {
	case errors.As(err, &alert) && alert == alertCertificateExpired:
		return ErrCertExpired
	case errors.As(err, &alert) && alert == alertCertificateRevoked:
		return ErrCertRevoked
	case errors.As(err, &se) && se.StatusCode == http.StatusForbidden:
		r := strings.ToLower(se.Reason)
		if !strings.Contains(r, "certificate") {
			return nil
		}
		switch {
		case strings.Contains(r, "is revoked"):
			return ErrCertRevoked
		case strings.Contains(r, "has expired or is not yet valid") && strings.Contains(r, "is before"):
			return ErrCertNotYetValid
		case strings.Contains(r, "has expired or is not yet valid"), strings.Contains(r, "certificate has expired"):
			return ErrCertExpired
		}
	}
	return nil
}

// Defaults of a Client.
const (
	// DefaultBackoffReset: a session that lived this long starts the
	// reconnect schedule over.
	DefaultBackoffReset = time.Second
	// DefaultDrainTimeout bounds the drain of a session after a GoAway.
	DefaultDrainTimeout = 30 * time.Second
)

// Client keeps a device connected to the edge: it dials, serves the
// streams the edge opens with the registered handlers, and reconnects with
// jittered backoff (transport.Backoff). Fill in the exported fields, register
// handlers with Handle, then call Start. Fields must not change after Start.
//
//	c := &device.Client{URL: "https://edge.example.com:8443/device", TLSConfig: tc}
//	c.Handle(wire.MsgTCP, (&tcp.Handler{}).Serve)
//	if err := c.Start(ctx); err != nil { ... }
//	defer c.Close()
type Client struct {
	// URL is the edge's device endpoint, e.g. https://edge:8443/device.
	URL string
	// TLSConfig carries the device certificate and the edge's CA.
	TLSConfig *tls.Config
	// Config tunes the session; nil means defaults. Config.MaxStreams caps
	// concurrent streams; beyond it a stream is answered "too many streams".
	Config *transport.Config
	// Agent is what the device says about itself at connect, for the
	// edge's device list (see LocalAgentInfo); the zero value says
	// nothing, as a qbee-v1 agent does.
	Agent transport.AgentInfo
	// Logger receives state changes; nil discards them.
	Logger *slog.Logger
	// BackoffInitial and BackoffMax shape the reconnect delays (defaults
	// 1 s and 60 s): see transport.Backoff.
	BackoffInitial, BackoffMax time.Duration
	// BackoffReset: a session that lived this long, even briefly, starts
	// the schedule over (default 1 s). Shorter ones count as failed
	// attempts, so that an edge that drops a session at once is not
	// redialed in a tight loop.
	BackoffReset time.Duration
	// DrainTimeout bounds how long open streams may finish on the old
	// session after a GoAway (the device meanwhile reconnects on a new
	// one) before they are cut. Default 30 s.
	DrainTimeout time.Duration

	mu sync.Mutex
	// mu guards the following.
	handlers map[wire.MsgType]Handler
	started  bool
	closed   bool
	sess     *transport.Session
	err      error

	ready     chan struct{}
	readyOnce sync.Once
	connected atomic.Bool
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	old       sync.WaitGroup // sessions being drained or reaped in the background
}

// Handle registers h for streams of type t, replacing any earlier handler.
// Handlers may be registered while the client runs.
func (d *Client) Handle(t wire.MsgType, h Handler) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.handlers == nil {
		d.handlers = make(map[wire.MsgType]Handler)
	}
	d.handlers[t] = h
}

func (d *Client) handler(t wire.MsgType) Handler {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.handlers[t]
}

func (d *Client) init() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ready == nil {
		d.ready = make(chan struct{})
		d.done = make(chan struct{})
	}
}

// Start connects in the background and keeps reconnecting until ctx ends or
// Close is called. It fails at once, without dialing, when called twice,
// after Close, or when URL is empty or not an https:// URL with a host:
// those would fail every redial.
func (d *Client) Start(ctx context.Context) error {
	d.init()
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return ErrClosed
	case d.started:
		return errors.New("device: client already started")
	case d.URL == "":
		return errors.New("device: Client.URL is empty: set the edge's device endpoint, such as https://edge.example.com:8443/device")
	}
	if u, err := url.Parse(d.URL); err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("device: Client.URL %q is not an https:// URL with a host; set the edge's device endpoint, such as https://edge.example.com:8443/device", d.URL)
	}
	d.started = true
	ctx, d.cancel = context.WithCancel(ctx)
	go d.run(ctx)
	return nil
}

// Ready is closed once the first session to the edge is up.
func (d *Client) Ready() <-chan struct{} {
	d.init()
	return d.ready
}

// Connected reports whether a session to the edge is up now: it turns
// false as soon as the connection is gone or the edge sent GoAway, even
// while handlers of the old session are still finishing.
func (d *Client) Connected() bool { return d.connected.Load() }

// Done is closed when the client has stopped (after Close, or when Start's
// context ended) and every handler returned.
func (d *Client) Done() <-chan struct{} {
	d.init()
	return d.done
}

// Err returns why the client stopped: ErrClosed after Close, the
// context's error when its context ended, nil while it runs.
func (d *Client) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// Close closes the session, cuts open streams, ends every handler's
// context and waits for the handlers to return. It is idempotent.
// Handlers must return once their context ends.
func (d *Client) Close() error {
	d.init()
	d.mu.Lock()
	d.closed = true
	started := d.started
	if d.err == nil {
		d.err = ErrClosed
	}
	cancel := d.cancel
	d.mu.Unlock()
	if !started {
		d.closeOnce.Do(func() { close(d.done) })
		return nil
	}
	cancel()
	<-d.done
	return nil
}

func (d *Client) logger() *slog.Logger { return logx.Or(d.Logger) }

func (d *Client) run(ctx context.Context) {
	defer d.closeOnce.Do(func() { close(d.done) })
	defer d.old.Wait()
	log := d.logger()
	bo := &transport.Backoff{Initial: d.BackoffInitial, Max: d.BackoffMax}
	resetAfter := cmp.Or(max(d.BackoffReset, 0), DefaultBackoffReset)
	var lastErr string
	for {
		sess, err := transport.DialHeader(ctx, d.URL, d.Agent.Header(), d.TLSConfig, d.Config)
		if err == nil {
			lastErr = ""
			log.Info("connected to edge", "edge", d.URL, "local", sess.LocalAddr().String())
			up := time.Now()
			reason := d.serve(ctx, sess)
			if ctx.Err() != nil {
				break
			}
			upFor := time.Since(up)
			log.Warn("disconnected from edge", "edge", d.URL, "reason", reason, "up", upFor.Round(time.Millisecond).String())
			if upFor >= resetAfter {
				bo.Reset()
			}
		} else {
			if ctx.Err() != nil {
				break
			}
			// Log a failure once per kind, not once per retry.
			if kind := failureKind(err); kind != lastErr {
				if refusal := CertRefusal(err); refusal != nil {
					msg := strings.TrimPrefix(refusal.Error(), "device: ")
					log.Error(msg+"; "+certRefusalHint(refusal)+"; retrying with backoff", "edge", d.URL, "err", err)
				} else {
					log.Warn("cannot reach edge; retrying with backoff", "edge", d.URL, "err", err)
				}
				lastErr = kind
			} else {
				log.Debug("still cannot reach edge", "edge", d.URL, "err", err)
			}
		}
		// Every redial waits a jittered delay, so that devices dropped
		// together (an edge restart, a GoAway to all) do not return together.
		t := time.NewTimer(bo.Next())
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	d.mu.Lock()
	if d.err == nil {
		d.err = ctx.Err()
	}
	d.mu.Unlock()
}

// failureKind names the kind of a dial failure, without the parts that
// change from one attempt to the next (such as local ports), so that each
// kind is logged once.
func failureKind(err error) string {
	var (
		de *transport.DialError
		se *transport.StatusError
	)
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("status %d %s", se.StatusCode, se.Reason)
	case errors.As(err, &de):
		return de.Op + " " + de.Addr + ": " + de.Hint()
	}
	return err.Error()
}

// certRefusalHint says what to do about a refused certificate.
func certRefusalHint(refusal error) string {
	switch refusal {
	case ErrCertRevoked:
		return "issue this device a new certificate, or ask the edge's operator why it was revoked"
	case ErrCertNotYetValid:
		return "check the clocks of this device and of the edge"
	}
	return "issue a new certificate and replace the files (the agent picks them up at its next connection)"
}

// serve runs one session until its connection is gone, a GoAway arrives,
// or ctx ends, and returns why. It returns at once in every case, so the
// device redials without waiting: after a GoAway the old session drains in
// the background, bounded by DrainTimeout; after a lost connection its
// handlers are cut and reaped in the background. Only when ctx ends does it
// wait for the handlers.
func (d *Client) serve(ctx context.Context, sess *transport.Session) string {
	cfg := d.Config.WithDefaults()
	d.mu.Lock()
	d.sess = sess
	d.mu.Unlock()
	d.connected.Store(true)
	d.readyOnce.Do(func() { close(d.ready) })
	defer func() {
		d.connected.Store(false)
		d.mu.Lock()
		d.sess = nil
		d.mu.Unlock()
	}()

	hctx, hcancel := context.WithCancel(ctx)
	o := &served{d: d, sess: sess, cfg: cfg, ctx: hctx, cancel: hcancel, goAway: make(chan struct{}), acceptDone: make(chan struct{})}
	o.streams.Run = o.serve

	// The accept loop owns AcceptStream and starts each stream's handler
	// itself (one hand-off per stream, not two); it stops when the session
	// closes.
	go o.accept()

	reason := "session closed by the edge"
loop:
	for {
		select {
		case <-ctx.Done():
			reason = "client closed"
			break loop
		case <-o.goAway:
			reason = "edge sent GoAway"
			break loop
		case <-sess.Done():
			if err := sess.Err(); err != nil {
				reason = err.Error()
			}
			break loop
		case <-o.acceptDone:
			break loop
		}
	}

	switch {
	case ctx.Err() != nil:
		o.setMode(modeStopped)
		o.cut()
	case reason == "edge sent GoAway":
		o.setMode(modeDraining)
		d.connected.Store(false)
		d.old.Add(1)
		go func() {
			defer d.old.Done()
			o.drain(ctx, cmp.Or(max(d.DrainTimeout, 0), DefaultDrainTimeout))
			o.cut()
		}()
	default:
		o.setMode(modeStopped)
		d.connected.Store(false)
		d.old.Add(1)
		go func() {
			defer d.old.Done()
			o.cut()
		}()
	}
	return reason
}

// served is one session being served: its accept loop, its handlers and
// the refusals sent while it drains.
type served struct {
	d      *Client
	sess   *transport.Session
	cfg    *transport.Config
	ctx    context.Context    // the handlers' context
	cancel context.CancelFunc // ends it

	acceptDone chan struct{}
	goAway     chan struct{}
	goOnce     sync.Once
	active     atomic.Int64
	handlers   sync.WaitGroup // the handlers running
	refusals   sync.WaitGroup
	// streams runs the handlers, on goroutines that serve one stream after
	// another: the edge opens stream after stream.
	streams workers.Pool[*transport.Stream]

	mu sync.Mutex
	// mu guards the following; the accept loop holds it while it hands a
	// stream on, so that no handler starts once a drain waits for them.
	mode serveMode
}

// serveMode is what the accept loop does with a new stream.
type serveMode int

const (
	modeServing  serveMode = iota // run its handler
	modeDraining                  // refuse it: the edge sent GoAway
	modeStopped                   // close it: the session is being cut
)

func (o *served) setMode(m serveMode) {
	o.mu.Lock()
	o.mode = m
	o.mu.Unlock()
}

func (o *served) accept() {
	defer close(o.acceptDone)
	for {
		st, err := o.sess.Accept()
		if err != nil {
			return
		}
		o.mu.Lock()
		switch o.mode {
		case modeServing:
			o.dispatch(st)
		case modeDraining:
			o.refuse(st)
		default:
			st.Close()
		}
		o.mu.Unlock()
	}
}

// dispatch runs a stream's handler (serve) on a goroutine of o.streams.
func (o *served) dispatch(st *transport.Stream) {
	o.handlers.Add(1)
	o.streams.Go(st)
}

// serve runs a stream's handler. A handler's error before any answer
// becomes the Error answer. A stream whose handler failed after answering,
// or was cut (the client is closing, or the session is gone), is reset
// rather than closed: its peer must not take the end for a finished
// stream.
func (o *served) serve(st *transport.Stream) {
	defer o.handlers.Done()
	ctx := o.ctx
	err := o.d.dispatch(ctx, st, o.cfg, &o.active, func() { o.goOnce.Do(func() { close(o.goAway) }) })
	switch {
	case err != nil && st.Written() == 0 && ctx.Err() == nil:
		_ = st.SetWriteDeadline(time.Now().Add(o.cfg.OpenTimeout))
		_ = wire.WriteError(st, err.Error())
		st.Close()
	case err != nil || ctx.Err() != nil:
		if err != nil {
			o.d.logger().Debug("stream ended in error", "err", err)
		}
		st.Abort()
	default:
		st.Close()
	}
}

// drain lets open streams finish, bounded by timeout and ctx, while
// refusing the streams the edge opens meanwhile.
func (o *served) drain(ctx context.Context, timeout time.Duration) {
	finished := make(chan struct{})
	go func() { o.handlers.Wait(); close(finished) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case <-finished:
			return
		case <-t.C:
			o.d.logger().Warn("drain timeout: cutting the streams still open on the old session", "streams", o.active.Load())
			return
		case <-ctx.Done():
			return
		case <-o.sess.Done():
			return
		}
	}
}

// refuse answers a stream opened during a drain with a reason.
func (o *served) refuse(st *transport.Stream) {
	o.refusals.Add(1)
	go func() {
		defer o.refusals.Done()
		defer st.Close()
		_ = st.SetDeadline(time.Now().Add(o.cfg.OpenTimeout))
		if _, err := wire.ReadMessage(st); err == nil {
			_ = wire.WriteError(st, "the device is reconnecting to the edge (GoAway); retry in a moment")
		}
	}()
}

// cut ends the handlers' context, closes the session (which ends every
// stream) and waits for the accept loop, the handlers and the refusals.
func (o *served) cut() {
	o.cancel()
	o.sess.Close()
	<-o.acceptDone
	o.handlers.Wait()
	o.streams.Close()
	o.refusals.Wait()
}

// dispatch reads a stream's opening message and runs its handler.
func (d *Client) dispatch(ctx context.Context, st *transport.Stream, cfg *transport.Config, active *atomic.Int64, goAway func()) (err error) {
	log := d.logger()
	_ = st.SetReadDeadline(time.Now().Add(cfg.OpenTimeout))
	m, rerr := wire.ReadMessage(st)
	if rerr != nil {
		log.Debug("stream closed before its opening message", "err", rerr)
		return nil
	}
	_ = st.SetReadDeadline(time.Time{})
	if m.Type == wire.MsgGoAway {
		log.Info("edge asked to reconnect (GoAway); draining open streams")
		goAway()
		return nil
	}
	if n := active.Add(1); n > int64(cfg.MaxStreams) {
		active.Add(-1)
		return fmt.Errorf("too many streams: this device allows %d at once", cfg.MaxStreams)
	}
	defer active.Add(-1)
	h := d.handler(m.Type)
	if h == nil {
		return fmt.Errorf("unsupported stream type 0x%02x", uint8(m.Type))
	}
	defer func() {
		if r := recover(); r != nil {
			log.Error("stream handler panicked", "type", m.Type.String(), "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error in the %v handler on the device", m.Type)
		}
	}()
	return h(ctx, st, m.Payload)
}
