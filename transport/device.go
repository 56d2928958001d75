package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherhq/tether/transport/wire"
)

// Handler serves one stream of the type it is registered for. payload is
// the opening message's payload. The handler answers with wire.WriteOK or
// wire.WriteError, then uses the stream; the DeviceClient closes the stream when
// the handler returns. ctx ends when the DeviceClient is closed.
type Handler func(ctx context.Context, st *Stream, payload []byte)

// Reconnect and drain defaults of a DeviceClient.
const (
	DefaultBackoffInitial = time.Second
	DefaultBackoffMax     = 60 * time.Second
	DefaultBackoffReset   = time.Second
	DefaultDrainTimeout   = 30 * time.Second
)

// DeviceClient keeps a device connected to the edge: it dials, serves the
// streams the edge opens with the registered handlers, and reconnects with
// jittered backoff (see Backoff). Fill in the exported fields, register
// handlers with Handle, then call Start. Fields must not change after Start.
type DeviceClient struct {
	// URL is the edge's device endpoint, e.g. https://edge:8443/device.
	URL string
	// TLSConfig carries the device certificate and the edge's CA.
	TLSConfig *tls.Config
	// Config tunes the session; nil means defaults. Config.MaxStreams caps
	// concurrent streams; beyond it a stream is answered "too many streams".
	Config *Config
	// Logger receives state changes; nil discards them.
	Logger *slog.Logger
	// BackoffInitial and BackoffMax shape the reconnect delays (defaults
	// 1 s and 60 s): see Backoff.
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
	sess     *Session
	err      error

	ready     chan struct{}
	readyOnce sync.Once
	connected atomic.Bool
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	old       sync.WaitGroup // sessions being drained or reaped in the background
}

// NewDeviceClient returns a DeviceClient for the edge URL. cfg and logger
// may be nil.
func NewDeviceClient(url string, tlsConf *tls.Config, cfg *Config, logger *slog.Logger) *DeviceClient {
	return &DeviceClient{URL: url, TLSConfig: tlsConf, Config: cfg, Logger: logger}
}

// Handle registers h for streams of type t, replacing any earlier handler.
// Handlers may be registered while the client runs.
func (d *DeviceClient) Handle(t wire.MsgType, h Handler) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.handlers == nil {
		d.handlers = make(map[wire.MsgType]Handler)
	}
	d.handlers[t] = h
}

func (d *DeviceClient) handler(t wire.MsgType) Handler {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.handlers[t]
}

func (d *DeviceClient) init() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ready == nil {
		d.ready = make(chan struct{})
		d.done = make(chan struct{})
	}
}

// Start connects in the background and keeps reconnecting until ctx ends or
// Close is called. It fails when called twice, after Close, or without a
// URL.
func (d *DeviceClient) Start(ctx context.Context) error {
	d.init()
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return ErrClientClosed
	case d.started:
		return errors.New("transport: DeviceClient already started")
	case d.URL == "":
		return errors.New("transport: DeviceClient.URL is empty: set the edge's device endpoint, such as https://edge.example.com:8443/device")
	}
	d.started = true
	ctx, d.cancel = context.WithCancel(ctx)
	go d.run(ctx)
	return nil
}

// Ready is closed once the first session to the edge is up.
func (d *DeviceClient) Ready() <-chan struct{} {
	d.init()
	return d.ready
}

// Connected reports whether a session to the edge is up now: it turns
// false as soon as the connection is gone or the edge sent GoAway, even
// while handlers of the old session are still finishing.
func (d *DeviceClient) Connected() bool { return d.connected.Load() }

// Done is closed when the client has stopped (after Close, or when Start's
// context ended) and every handler returned.
func (d *DeviceClient) Done() <-chan struct{} {
	d.init()
	return d.done
}

// Err returns why the client stopped: ErrClientClosed after Close, the
// context's error when its context ended, nil while it runs.
func (d *DeviceClient) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// Close closes the session, cuts open streams, ends every handler's
// context and waits for the handlers to return. It is idempotent.
// Handlers must return once their context ends.
func (d *DeviceClient) Close() error {
	d.init()
	d.mu.Lock()
	d.closed = true
	started := d.started
	if d.err == nil {
		d.err = ErrClientClosed
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

func (d *DeviceClient) logger() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

func orDefault(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

func (d *DeviceClient) run(ctx context.Context) {
	defer d.closeOnce.Do(func() { close(d.done) })
	defer d.old.Wait()
	log := d.logger()
	bo := &Backoff{Initial: d.BackoffInitial, Max: d.BackoffMax}
	resetAfter := orDefault(d.BackoffReset, DefaultBackoffReset)
	var lastErr string
	for {
		sess, err := Dial(ctx, d.URL, "", d.TLSConfig, d.Config)
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
				log.Warn("cannot reach edge; retrying with backoff", "edge", d.URL, "err", err)
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

// Backoff is the reconnect schedule of devices and clients: quick after a
// connection that lived, then spaced out so that a fleet dropped at once
// neither hammers its edge nor waits long once the edge is back.
//
// The first delay after Reset is drawn uniformly from [0, Initial). The
// n-th one after that is drawn from [c/2, c] with c = 5×Initial×1.5^(n-1),
// capped at Max. With the defaults (1 s, 60 s) the first four dials after
// a loss fall at 0–1 s, 2.5–6 s, 6.3–13.5 s and 12–25 s: a device tries at
// most three times in any 10 s, and redials within 7.5 s of an edge that
// comes back within the first few seconds. The zero value uses the
// defaults. A Backoff is not safe for concurrent use.
type Backoff struct {
	// Initial scales the schedule. Zero means DefaultBackoffInitial (1 s).
	Initial time.Duration
	// Max caps every delay. Zero means DefaultBackoffMax (60 s).
	Max time.Duration

	attempt int
}

// Next returns the delay before the next attempt and advances the schedule.
func (b *Backoff) Next() time.Duration {
	initial := orDefault(b.Initial, DefaultBackoffInitial)
	maxDelay := max(orDefault(b.Max, DefaultBackoffMax), initial)
	n := b.attempt
	b.attempt++
	if n == 0 {
		return time.Duration(rand.Int64N(int64(initial)))
	}
	ceil := float64(5*initial) * math.Pow(1.5, float64(min(n-1, 60)))
	if ceil > float64(maxDelay) {
		ceil = float64(maxDelay)
	}
	half := int64(ceil / 2)
	return time.Duration(half + rand.Int64N(half+1))
}

// Reset starts the schedule over, after a connection that lived.
func (b *Backoff) Reset() { b.attempt = 0 }

// failureKind names the kind of a dial failure, without the parts that
// change from one attempt to the next (such as local ports), so that each
// kind is logged once.
func failureKind(err error) string {
	var (
		de *DialError
		se *StatusError
	)
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("status %d %s", se.StatusCode, se.Reason)
	case errors.As(err, &de):
		return de.Op + " " + de.Addr + ": " + de.hint()
	}
	return err.Error()
}

// serve runs one session until its connection is gone, a GoAway arrives,
// or ctx ends, and returns why. It returns at once in every case, so the
// device redials without waiting: after a GoAway the old session drains in
// the background, bounded by DrainTimeout; after a lost connection its
// handlers are cut and reaped in the background. Only when ctx ends does it
// wait for the handlers.
func (d *DeviceClient) serve(ctx context.Context, sess *Session) string {
	cfg := d.Config.withDefaults()
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
	o := &served{d: d, sess: sess, cfg: cfg, cancel: hcancel, streams: make(chan *Stream), goAway: make(chan struct{}), acceptDone: make(chan struct{})}

	// The accept loop owns AcceptStream; it stops when the session closes.
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
		case st := <-o.streams:
			o.dispatch(hctx, st)
		}
	}

	switch {
	case ctx.Err() != nil:
		o.cut()
	case reason == "edge sent GoAway":
		d.connected.Store(false)
		d.old.Add(1)
		go func() {
			defer d.old.Done()
			o.drain(ctx, orDefault(d.DrainTimeout, DefaultDrainTimeout))
			o.cut()
		}()
	default:
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
	d      *DeviceClient
	sess   *Session
	cfg    *Config
	cancel context.CancelFunc // ends the handlers' context

	streams    chan *Stream
	acceptDone chan struct{}
	goAway     chan struct{}
	goOnce     sync.Once
	active     atomic.Int64
	handlers   sync.WaitGroup
	refusals   sync.WaitGroup
}

func (o *served) accept() {
	defer close(o.acceptDone)
	for {
		st, err := o.sess.AcceptStream()
		if err != nil {
			return
		}
		select {
		case o.streams <- st:
		case <-o.sess.Done():
			st.Close()
		}
	}
}

// dispatch runs a stream's handler on its own goroutine.
// A stream whose handler was cut (the client is closing, or the session is
// gone) is reset rather than closed: its peer must not take the end for a
// finished stream.
func (o *served) dispatch(ctx context.Context, st *Stream) {
	o.handlers.Add(1)
	go func() {
		defer o.handlers.Done()
		o.d.dispatch(ctx, st, o.cfg, &o.active, func() { o.goOnce.Do(func() { close(o.goAway) }) })
		if ctx.Err() != nil {
			st.Abort()
		} else {
			st.Close()
		}
	}()
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
		case st := <-o.streams:
			o.refuse(st)
		}
	}
}

// refuse answers a stream opened during a drain with a reason.
func (o *served) refuse(st *Stream) {
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
	o.refusals.Wait()
}

// dispatch reads a stream's opening message and runs its handler.
func (d *DeviceClient) dispatch(ctx context.Context, st *Stream, cfg *Config, active *atomic.Int64, goAway func()) {
	log := d.logger()
	_ = st.SetReadDeadline(time.Now().Add(cfg.OpenTimeout))
	m, err := wire.ReadMessage(st)
	if err != nil {
		log.Debug("stream closed before its opening message", "err", err)
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	if m.Type == wire.MsgGoAway {
		log.Info("edge asked to reconnect (GoAway); draining open streams")
		goAway()
		return
	}
	if n := active.Add(1); n > int64(cfg.MaxStreams) {
		active.Add(-1)
		_ = wire.WriteError(st, fmt.Sprintf("too many streams: this device allows %d at once", cfg.MaxStreams))
		return
	}
	defer active.Add(-1)
	h := d.handler(m.Type)
	if h == nil {
		_ = wire.WriteError(st, fmt.Sprintf("unsupported stream type 0x%02x", uint8(m.Type)))
		return
	}
	defer func() {
		if r := recover(); r != nil {
			log.Error("stream handler panicked", "type", m.Type.String(), "panic", r, "stack", string(debug.Stack()))
			if st.Written() == 0 {
				_ = wire.WriteError(st, fmt.Sprintf("internal error in the %v handler on the device", m.Type))
			}
		}
	}()
	h(ctx, st, m.Payload)
}
