package tcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/tetherhq/tether/internal/logx"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// Forward serves a local listener like ssh -L: every connection it
// accepts is carried to Remote through a TCP tunnel opened with Opener,
// with half-close both ways. Fill in the fields, then Start; Close stops
// it.
//
// Tunnels open optimistically when Opener is a transport.EarlyOpener (a
// client.Client or client.Redialer is): the application's first bytes
// follow the opening message without waiting for the device's answer,
// which saves a round trip per connection. A refused tunnel closes the
// application's connection, as when the Forward waits for the answer; the
// bytes it sent are dropped.
type Forward struct {
	// Listener is the local listener to serve; the Forward owns it from
	// Start on and closes it on Close or when Start's context ends.
	Listener net.Listener
	// Opener opens the tunnels: a client.Client or client.Redialer.
	Opener transport.Opener
	// Remote is the "host:port" the device connects each tunnel to.
	Remote string
	// Logger receives failures (at Warn) and closed tunnels (at Debug);
	// nil discards them.
	Logger *slog.Logger

	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex
	// mu guards the following.
	conns map[net.Conn]struct{}
	err   error
}

// Start serves the listener in the background until ctx ends or Close is
// called. It fails when Listener or Opener is missing, or when called
// twice.
func (f *Forward) Start(ctx context.Context) error {
	switch {
	case f.Listener == nil || f.Opener == nil:
		return errors.New("tcp: Forward needs a Listener and an Opener")
	case f.done != nil:
		return errors.New("tcp: Forward already started")
	}
	f.log = logx.Or(f.Logger)
	ctx, f.cancel = context.WithCancel(ctx)
	f.done = make(chan struct{})
	f.conns = make(map[net.Conn]struct{})
	go f.serve(ctx)
	return nil
}

// Addr is the local address being served.
func (f *Forward) Addr() net.Addr { return f.Listener.Addr() }

// Done is closed when the forward has stopped and every connection is closed.
func (f *Forward) Done() <-chan struct{} { return f.done }

// Err returns why the forward stopped, or nil when it was closed.
func (f *Forward) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Close stops accepting, closes every forwarded connection and waits. It
// is idempotent.
func (f *Forward) Close() error {
	if f.done == nil {
		return nil
	}
	f.cancel()
	<-f.done
	return nil
}

func (f *Forward) serve(ctx context.Context) {
	var wg sync.WaitGroup
	defer close(f.done)
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() {
		f.Listener.Close()
		f.mu.Lock()
		for c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
	})
	defer stop()
	var delay time.Duration // after a transient Accept error, as net/http does
	for {
		c, err := f.Listener.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				// EMFILE and the like pass: wait and go on.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				f.log.Warn("forward: accept failed; retrying", "local", f.Listener.Addr().String(), "err", err, "retry_in", delay.String())
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
	// What the application already sent goes with the opening message, in
	// its frame: the edge passes it on to the device with the request.
	bp := firstBufs.Get().(*[]byte)
	n, err := readyBytes(c, *bp)
	if err != nil {
		firstBufs.Put(bp)
		f.log.Debug("forwarded connection failed before its tunnel opened", "local", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	st, err := transport.OpenEarly(ctx, f.Opener, wire.MsgTCP, []byte(f.Remote), (*bp)[:n])
	firstBufs.Put(bp)
	if err != nil {
		f.log.Warn("forward failed", "local", c.RemoteAddr().String(), "remote", f.Remote, "err", err)
		c.Close()
		return
	}
	st.OnAnswer(func(err error) {
		if err != nil {
			f.log.Warn("forward failed", "local", c.RemoteAddr().String(), "remote", f.Remote, "err", err)
		}
	})
	var app io.ReadWriteCloser = c
	if tc, ok := c.(*net.TCPConn); ok {
		app = refusableConn{tc, st}
	}
	up, down, err := transport.Splice(ctx, app, st, nil)
	up += int64(n)
	f.log.Debug("forward closed", "remote", f.Remote, "sent", up, "received", down, "err", err)
}

// refusableConn is an application's connection whose tunnel opened
// optimistically. When the open was refused, the splice's abort closes it
// (the application reads EOF, as it would have without the optimistic
// open); any other abort resets it.
type refusableConn struct {
	*net.TCPConn
	st *transport.EarlyStream
}

// TCP is the application's connection, which the splice reads and
// writes directly.
func (c refusableConn) TCP() *net.TCPConn { return c.TCPConn }

func (c refusableConn) AbortWith(string) error {
	if c.st.Failed() == nil {
		_ = c.SetLinger(0) // Close then sends RST, not FIN
	}
	return c.Close()
}

// maxFirst bounds the application's first bytes that go with the opening
// message: with it, they fit one frame.
const maxFirst = 16 << 10

var firstBufs = sync.Pool{New: func() any {
	b := make([]byte, maxFirst)
	return &b
}}
