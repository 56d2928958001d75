package client_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

// redialRig is a broker with a device serving TCP tunnels, a target on the
// device's side, and a Redialer whose Dial counts its calls and can be
// held back.
type redialRig struct {
	b      *testbroker.Broker
	target string
	r      *client.Redialer
	calls  chan bool         // one value per Dial call: whether it was held
	events chan client.Event // what Notify heard

	mu sync.Mutex
	// mu guards the following.
	gate chan struct{} // when not nil, Dial waits until it is closed
}

func newRedialRig(t *testing.T) *redialRig {
	t.Helper()
	rr := &redialRig{
		b:      testbroker.New(t, nil),
		calls:  make(chan bool, 1000),
		events: make(chan client.Event, 1000),
	}
	rr.b.StartDevice(t, nil, nil)
	rr.target = testutil.TCPServer(t, testbroker.PatternAfterEOF)
	d := rr.b.Dialer(nil)
	rr.r = &client.Redialer{
		Dial: func(ctx context.Context) (*client.Client, error) {
			rr.mu.Lock()
			gate := rr.gate
			rr.mu.Unlock()
			rr.calls <- gate != nil
			if gate != nil {
				select {
				case <-gate:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return d.Dial(ctx, testbroker.DeviceID)
		},
		Backoff: transport.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		Notify:  func(e client.Event) { rr.events <- e },
	}
	first, err := rr.r.Dial(testbroker.Ctx(t))
	require.NoError(t, err)
	// The broker holds the session (Dial returns with the 101, maybe before
	// the broker's handler has tracked it), so CloseClients reaches it.
	require.Eventually(t, func() bool { return rr.b.NumClients() == 1 }, testbroker.WaitLong, time.Millisecond)
	require.NoError(t, rr.r.Start(context.Background(), first))
	t.Cleanup(func() { rr.r.Close() })
	return rr
}

// exchange moves a request and its answer through the Redialer.
func (rr *redialRig) exchange(t *testing.T, seed byte) {
	t.Helper()
	n, err := testbroker.Exchange(testbroker.Ctx(t), rr.r, rr.target, 1000, seed)
	require.NoError(t, err)
	require.Equal(t, 1000, n)
}

// hold makes Dial wait until release.
func (rr *redialRig) hold() {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.gate = make(chan struct{})
}

func (rr *redialRig) release() {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	close(rr.gate)
	rr.gate = nil
}

// event waits for the next event Notify heard.
func (rr *redialRig) event(t *testing.T) client.Event {
	t.Helper()
	select {
	case e := <-rr.events:
		return e
	case <-time.After(testbroker.WaitLong):
		t.Fatal("Notify heard nothing")
		return client.Event{}
	}
}

// closeAndDrain closes the Redialer, which waits for its loop (and so for
// every Notify), and returns the events not read yet.
func (rr *redialRig) closeAndDrain(t *testing.T) []client.Event {
	t.Helper()
	require.NoError(t, rr.r.Close())
	var left []client.Event
	for {
		select {
		case e := <-rr.events:
			left = append(left, e)
		default:
			return left
		}
	}
}

// TestRedialerRedialsALostSession: a session that carried a stream is
// redialed as soon as it is lost; Notify hears the loss and the
// reconnection, and streams go on through the new session.
func TestRedialerRedialsALostSession(t *testing.T) {
	rr := newRedialRig(t)
	rr.exchange(t, 1)

	rr.b.CloseClients() // the edge drops the session; the device stays
	require.Equal(t, client.Lost, rr.event(t).Kind)
	require.Equal(t, client.Reconnected, rr.event(t).Kind)
	rr.exchange(t, 2)

	require.Len(t, rr.calls, 2, "Dial calls: the first session and one redial")
	require.Equal(t, 2, rr.b.NumClients(), "client sessions the edge saw")
	require.Empty(t, rr.closeAndDrain(t), "events after the reconnection")
}

// TestRedialerRedialsAnIdleSessionOnDemand: a session that never carried a
// stream (an idle forward, which the edge closes after its first-stream
// deadline) is not redialed when it is lost, only when a stream needs it,
// and nobody is told: nothing was interrupted.
func TestRedialerRedialsAnIdleSessionOnDemand(t *testing.T) {
	rr := newRedialRig(t)
	<-rr.calls // the first session's
	rr.b.CloseClients()

	// The Redialer sees the loss on the same channel; an eager redial
	// would follow at once (Backoff.Initial is 10 ms).
	select {
	case <-rr.calls:
		t.Fatal("an idle session was redialed with no stream waiting for it")
	case <-time.After(500 * time.Millisecond):
	}

	rr.exchange(t, 1) // needs a session: redials now
	require.Len(t, rr.calls, 1, "Dial calls for the stream")
	require.Empty(t, rr.closeAndDrain(t), "events for an idle session")
}

// TestRedialerNotifiesFailuresAndWaitsForTheEdge: while the edge is down,
// every failed redial is reported with its error and retried; a stream
// opened meanwhile waits for the next session instead of failing.
func TestRedialerNotifiesFailuresAndWaitsForTheEdge(t *testing.T) {
	rr := newRedialRig(t)
	rr.exchange(t, 1)

	rr.b.Stop()
	require.Equal(t, client.Lost, rr.event(t).Kind)
	for range 2 {
		e := rr.event(t)
		require.Equal(t, client.RedialFailed, e.Kind)
		var de *transport.DialError
		require.ErrorAs(t, e.Err, &de, "a failed redial says which step failed")
		// Refused once the listener is gone; a dial racing its closing
		// may fail on the upgrade instead.
		require.Contains(t, []string{"connect", "tls", "upgrade"}, de.Op, "%v", e.Err)
	}

	// A stream opened while there is no session waits for one. The next
	// redial is held until the device is back, so that the stream reaches
	// it. The Redialer dials one at a time: once a held call has begun, no
	// earlier one can reach the edge first.
	rr.hold()
	for held := false; !held; {
		select {
		case held = <-rr.calls:
		case <-time.After(testbroker.WaitLong):
			t.Fatal("the Redialer stopped redialing")
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := testbroker.Exchange(testbroker.Ctx(t), rr.r, rr.target, 1000, 2)
		done <- err
	}()
	rr.b.Start()
	rr.b.Device(t)
	select {
	case err := <-done:
		t.Fatalf("the stream ended before any session was back: %v", err)
	default:
	}
	rr.release()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(testbroker.WaitLong):
		t.Fatal("the waiting stream never got the new session")
	}

	// Every event from here is a failed redial, until the reconnection.
	for {
		e := rr.event(t)
		if e.Kind == client.Reconnected {
			break
		}
		require.Equal(t, client.RedialFailed, e.Kind)
		require.Error(t, e.Err)
	}
	require.Empty(t, rr.closeAndDrain(t), "events after the reconnection")

	_, _, err := rr.r.OpenStream(testbroker.Ctx(t), wire.MsgTCP, []byte(rr.target))
	require.True(t, errors.Is(err, client.ErrClosed) || errors.Is(err, transport.ErrSessionClosed), "a stream after Close: %v", err)
	require.NoError(t, rr.r.Close(), "Close is idempotent")
}

func TestRedialerStartErrors(t *testing.T) {
	b := testbroker.New(t, nil)
	b.StartDevice(t, nil, nil)
	first := b.DialClient(t, nil)
	dial := func(ctx context.Context) (*client.Client, error) { return nil, errors.New("not used") }

	require.ErrorContains(t, (&client.Redialer{}).Start(context.Background(), first), "needs Dial")
	require.ErrorContains(t, (&client.Redialer{Dial: dial}).Start(context.Background(), nil), "first session")
	require.NoError(t, (&client.Redialer{}).Close(), "Close before Start")

	r := &client.Redialer{Dial: dial}
	require.NoError(t, r.Start(context.Background(), first))
	require.ErrorContains(t, r.Start(context.Background(), first), "already started")
	require.NoError(t, r.Close())
}
