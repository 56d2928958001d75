package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// Redial defaults: a forward redials quicker than a device, and never waits
// long, since a person is watching.
const (
	DefaultRedialInitial = 500 * time.Millisecond
	DefaultRedialMax     = 15 * time.Second
)

// ErrClosed: the Redialer was closed.
var ErrClosed = errors.New("client: closed")

var _ transport.Opener = (*Redialer)(nil)

// Redialer is a transport.Opener that keeps a session to one device: when
// the session is lost it redials with backoff, while what was built on it
// (the listeners of forwards) stays. Streams opened while it is
// reconnecting wait for the new session, within their context.
//
// A session that never carried a stream is redialed only when a stream
// needs it: the edge closes a client session that opens no stream within
// its first-stream deadline, and an idle forward has nothing to say.
//
// Fill in the fields, then call Start with the first session.
type Redialer struct {
	// Dial opens a new session. Required.
	Dial func(ctx context.Context) (*Client, error)
	// Backoff spaces the redials; zero fields mean 0.5 s and 15 s
	// (transport.Backoff describes the schedule).
	Backoff transport.Backoff
	// Notify, when set, hears what a person watching should know: a lost
	// session, each failed redial, and the reconnection. It runs on the
	// redial goroutine and must not block.
	Notify func(Event)

	cancel context.CancelFunc
	done   chan struct{}
	demand chan struct{} // a stream waits for a session

	mu sync.Mutex
	// mu guards the following.
	cur     *Client
	used    bool          // cur carried a stream
	changed chan struct{} // closed and replaced whenever cur changes
}

// Event is what a Redialer tells its Notify.
type Event struct {
	Kind EventKind
	// Err is why a redial failed (RedialFailed only).
	Err error
}

// EventKind names a Redialer event.
type EventKind int

const (
	// Lost: a session that carried streams was lost; redialing.
	Lost EventKind = iota
	// RedialFailed: a redial failed; Err says why. Retried with backoff.
	RedialFailed
	// Reconnected: a new session is up after a loss or failed redials.
	Reconnected
)

// Start keeps first (an established session) and its successors alive
// until ctx ends or Close is called.
func (r *Redialer) Start(ctx context.Context, first *Client) error {
	if r.Dial == nil || first == nil {
		return errors.New("client: Redialer needs Dial and a first session")
	}
	if r.done != nil {
		return errors.New("client: Redialer already started")
	}
	if r.Backoff.Initial == 0 {
		r.Backoff.Initial = DefaultRedialInitial
	}
	if r.Backoff.Max == 0 {
		r.Backoff.Max = DefaultRedialMax
	}
	ctx, r.cancel = context.WithCancel(ctx)
	r.done, r.demand = make(chan struct{}), make(chan struct{}, 1)
	r.cur, r.changed = first, make(chan struct{})
	go r.loop(ctx, first)
	return nil
}

func (r *Redialer) notify(e Event) {
	if r.Notify != nil {
		r.Notify(e)
	}
}

// set makes c the current session and returns whether the one it replaces
// carried a stream.
func (r *Redialer) set(c *Client) (used bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	used = r.used
	r.cur, r.used = c, false
	close(r.changed)
	r.changed = make(chan struct{})
	return used
}

func (r *Redialer) markUsed() {
	r.mu.Lock()
	r.used = true
	r.mu.Unlock()
}

func (r *Redialer) loop(ctx context.Context, cl *Client) {
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
			r.notify(Event{Kind: Lost})
		} else {
			// The edge closed an idle session: redial when a stream
			// needs one.
			select {
			case <-ctx.Done():
				return
			case <-r.demand:
			}
		}
		bo := r.Backoff
		failed := false
		for {
			var err error
			cl, err = r.Dial(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			failed = true
			r.notify(Event{Kind: RedialFailed, Err: err})
			t := time.NewTimer(bo.Next())
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		r.set(cl)
		if used || failed {
			r.notify(Event{Kind: Reconnected})
		}
	}
}

// client returns the current session, waiting for a reconnect within ctx.
func (r *Redialer) client(ctx context.Context) (*Client, error) {
	for {
		select {
		case <-r.done:
			return nil, ErrClosed
		default:
		}
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
			return nil, ErrClosed
		case <-changed:
		}
	}
}

// OpenStream opens a stream on the current session. A stream that fails
// because the session just died is retried once on the next session.
func (r *Redialer) OpenStream(ctx context.Context, t wire.MsgType, payload []byte) (*transport.Stream, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, transport.DefaultOpenTimeout+r.Backoff.Max)
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

// OpenStreamEarly opens a stream on the current session without waiting
// for the answer (transport.EarlyStream). An open that fails because the
// session just died is retried once on the next session; once the
// opening message is out, the answer decides.
func (r *Redialer) OpenStreamEarly(ctx context.Context, t wire.MsgType, payload, first []byte) (*transport.EarlyStream, error) {
	wctx, cancel := context.WithTimeout(ctx, transport.DefaultOpenTimeout+r.Backoff.Max)
	defer cancel()
	for attempt := 0; ; attempt++ {
		cl, err := r.client(wctx)
		if err != nil {
			return nil, err
		}
		st, err := cl.OpenStreamEarly(ctx, t, payload, first)
		if err == nil {
			r.markUsed()
			return st, nil
		}
		if attempt > 0 || ctx.Err() != nil {
			return nil, err
		}
		timer := time.NewTimer(200 * time.Millisecond)
		select {
		case <-cl.Done():
			timer.Stop()
		case <-timer.C:
			return nil, err
		}
	}
}

// Close stops reconnecting and closes the current session. It is
// idempotent.
func (r *Redialer) Close() error {
	if r.done == nil {
		return nil
	}
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
