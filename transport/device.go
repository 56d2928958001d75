package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Handler serves one stream of the type it is registered for. payload is
// the opening message's payload. The handler answers with WriteOK or
// WriteError, then uses the stream; the DeviceClient closes the stream when
// the handler returns. ctx ends when the DeviceClient is closed.
type Handler func(ctx context.Context, st *Stream, payload []byte)

// Reconnect defaults of a DeviceClient.
const (
	DefaultBackoffInitial = time.Second
	DefaultBackoffMax     = 60 * time.Second
	DefaultBackoffReset   = 60 * time.Second
	DefaultDrainTimeout   = 30 * time.Second
)

// DeviceClient keeps a device connected to the edge: it dials, serves the
// streams the edge opens with the registered handlers, and reconnects with
// exponential backoff and full jitter. Fill in the exported fields, register
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
	// BackoffInitial, BackoffMax: reconnect delays (defaults 1 s and 60 s).
	// Before the n-th dial since the backoff was last reset, the delay is
	// drawn uniformly from [0, min(max, initial×2^(n-1))) (full jitter).
	BackoffInitial, BackoffMax time.Duration
	// BackoffReset: a connection up this long resets the backoff (60 s).
	BackoffReset time.Duration
	// DrainTimeout bounds how long open streams may finish after a GoAway or
	// Close before they are cut (default 30 s).
	DrainTimeout time.Duration

	mu sync.Mutex
	// mu guards the following.
	handlers map[MsgType]Handler
	started  bool
	sess     *Session
	err      error

	ready     chan struct{}
	readyOnce sync.Once
	connected atomic.Bool
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// NewDeviceClient returns a DeviceClient for the edge URL. cfg and logger
// may be nil.
func NewDeviceClient(url string, tlsConf *tls.Config, cfg *Config, logger *slog.Logger) *DeviceClient {
	return &DeviceClient{URL: url, TLSConfig: tlsConf, Config: cfg, Logger: logger}
}

// Handle registers h for streams of type t, replacing any earlier handler.
// Handlers may be registered while the client runs.
func (d *DeviceClient) Handle(t MsgType, h Handler) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.handlers == nil {
		d.handlers = make(map[MsgType]Handler)
	}
	d.handlers[t] = h
}

func (d *DeviceClient) handler(t MsgType) Handler {
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
// Close is called. It returns an error only when called twice.
func (d *DeviceClient) Start(ctx context.Context) error {
	d.init()
	d.mu.Lock()
	if d.started {
		d.mu.Unlock()
		return errors.New("transport: DeviceClient already started")
	}
	d.started = true
	ctx, d.cancel = context.WithCancel(ctx)
	d.mu.Unlock()
	go d.run(ctx)
	return nil
}

// Ready is closed once the first session to the edge is up.
func (d *DeviceClient) Ready() <-chan struct{} {
	d.init()
	return d.ready
}

// Connected reports whether a session is up now.
func (d *DeviceClient) Connected() bool { return d.connected.Load() }

// Done is closed when the client has stopped and every handler returned.
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

// Close closes the session, cuts open streams and waits for the client to
// stop. It is idempotent.
func (d *DeviceClient) Close() error {
	d.init()
	d.mu.Lock()
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
	log := d.logger()
	initial := orDefault(d.BackoffInitial, DefaultBackoffInitial)
	maxDelay := orDefault(d.BackoffMax, DefaultBackoffMax)
	resetAfter := orDefault(d.BackoffReset, DefaultBackoffReset)
	// attempt counts dials since the last session that lasted resetAfter;
	// the delay before the next dial is drawn from
	// [0, min(maxDelay, initial×2^(attempt-1))).
	attempt := 0
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
				attempt = 0
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
		attempt++
		ceil := initial << min(attempt-1, 30)
		if ceil <= 0 || ceil > maxDelay {
			ceil = maxDelay
		}
		t := time.NewTimer(time.Duration(rand.Int64N(int64(ceil)) + 1))
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

// serve runs one session until it ends, a GoAway drains it, or ctx ends.
// It returns why the session ended.
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

	var (
		wg      sync.WaitGroup
		active  atomic.Int64
		goAway  = make(chan struct{})
		goOnce  sync.Once
		reason  = "session closed by the edge"
		streams = make(chan *Stream)
	)
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()

	// The accept loop owns AcceptStream; it stops when the session closes.
	acceptDone := make(chan error, 1)
	go func() {
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				acceptDone <- err
				return
			}
			select {
			case streams <- st:
			case <-sess.CloseChan():
				st.Close()
			}
		}
	}()

	draining := false
loop:
	for {
		select {
		case <-ctx.Done():
			reason = "client closed"
			break loop
		case <-goAway:
			reason = "edge sent GoAway"
			draining = true
			break loop
		case err := <-acceptDone:
			acceptDone <- err
			if !errors.Is(err, ErrSessionClosed) {
				reason = err.Error()
			}
			break loop
		case st := <-streams:
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer st.Close()
				d.dispatch(hctx, st, cfg, &active, func() { goOnce.Do(func() { close(goAway) }) })
			}()
		}
	}

	// Let open streams finish, bounded by the drain timeout, then cut them.
	// Streams the edge opens meanwhile are refused with a reason.
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	var refusals sync.WaitGroup
	if draining || ctx.Err() != nil {
		drain := time.NewTimer(orDefault(d.DrainTimeout, DefaultDrainTimeout))
		if ctx.Err() != nil && !draining {
			drain.Reset(0)
		}
	wait:
		for {
			select {
			case <-finished:
				break wait
			case <-drain.C:
				break wait
			case st := <-streams:
				refusals.Add(1)
				go func() {
					defer refusals.Done()
					defer st.Close()
					_ = st.SetDeadline(time.Now().Add(cfg.OpenTimeout))
					if _, err := ReadMessage(st); err == nil {
						_ = WriteError(st, "the device is reconnecting to the edge (GoAway); retry in a moment")
					}
				}()
			}
		}
		drain.Stop()
	}
	hcancel()
	sess.Close()
	<-acceptDone
	<-finished
	refusals.Wait()
	return reason
}

// dispatch reads a stream's opening message and runs its handler.
func (d *DeviceClient) dispatch(ctx context.Context, st *Stream, cfg *Config, active *atomic.Int64, goAway func()) {
	log := d.logger()
	_ = st.SetReadDeadline(time.Now().Add(cfg.OpenTimeout))
	m, err := ReadMessage(st)
	if err != nil {
		log.Debug("stream closed before its opening message", "err", err)
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	if m.Type == MsgGoAway {
		log.Info("edge asked to reconnect (GoAway); draining open streams")
		goAway()
		return
	}
	if n := active.Add(1); n > int64(cfg.MaxStreams) {
		active.Add(-1)
		_ = WriteError(st, fmt.Sprintf("too many streams: this device allows %d at once", cfg.MaxStreams))
		return
	}
	defer active.Add(-1)
	h := d.handler(m.Type)
	if h == nil {
		_ = WriteError(st, fmt.Sprintf("unsupported stream type 0x%02x", uint8(m.Type)))
		return
	}
	defer func() {
		if r := recover(); r != nil {
			log.Error("stream handler panicked", "type", m.Type.String(), "panic", r, "stack", string(debug.Stack()))
			if st.Written() == 0 {
				_ = WriteError(st, fmt.Sprintf("internal error in the %v handler on the device", m.Type))
			}
		}
	}()
	h(ctx, st, m.Payload)
}
