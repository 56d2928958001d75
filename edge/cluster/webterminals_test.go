package cluster_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/edge/cluster"
)

// leasesOf is the web terminal leases of edge id, on a NATS connection of
// its own, which close ends.
func leasesOf(t *testing.T, ns *natsServer, id string, ttl time.Duration) (l *cluster.WebTerminalLeases, close func()) {
	t.Helper()
	js := jetStreamOf(t, ns)
	return &cluster.WebTerminalLeases{JetStream: js, Edge: id, LeaseTTL: ttl}, js.Conn().Close
}

// acquire takes one of identity's max leases on l and reports whether it
// did, failing the test on an error; a taken lease is returned when the
// test ends.
func acquire(t *testing.T, l *cluster.WebTerminalLeases, identity string, max int) (release func(), ok bool) {
	t.Helper()
	return take(t, l.Acquire, identity, max)
}

// acquireSession is acquire for a browser session's leases.
func acquireSession(t *testing.T, l *cluster.WebTerminalLeases, session string, max int) (release func(), ok bool) {
	t.Helper()
	return take(t, l.AcquireSession, session, max)
}

func take(t *testing.T, acquire func(context.Context, string, int) (func(), bool, error), name string, max int) (release func(), ok bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	release, ok, err := acquire(ctx, name, max)
	require.NoError(t, err)
	if ok {
		t.Cleanup(release)
	}
	return release, ok
}

// TestWebTerminalLeasesHoldOnAllEdges: an identity's cap counts its
// terminals on every edge, a returned lease frees its place at once, and
// identities are counted apart.
func TestWebTerminalLeasesHoldOnAllEdges(t *testing.T) {
	ns := startNATS(t)
	a, _ := leasesOf(t, ns, "edge-a", 0)
	b, _ := leasesOf(t, ns, "edge-b", 0)
	const alice = "CN=alice smith:ops" // a name NATS keys refuse as it is
	first, ok := acquire(t, a, alice, 3)
	require.True(t, ok)
	_, ok = acquire(t, a, alice, 3)
	require.True(t, ok)
	_, ok = acquire(t, b, alice, 3)
	require.True(t, ok)
	_, ok = acquire(t, b, alice, 3)
	require.False(t, ok, "edge b gave alice a fourth terminal, two of them on edge a")
	_, ok = acquire(t, a, alice, 3)
	require.False(t, ok, "edge a gave alice a fourth terminal")
	_, ok = acquire(t, b, "bob", 3)
	require.True(t, ok, "bob was refused for alice's terminals")

	first()
	first() // a second release changes nothing
	_, ok = acquire(t, b, alice, 3)
	require.True(t, ok, "a returned lease did not free its place")
	_, ok = acquire(t, b, alice, 3)
	require.False(t, ok, "the second release of one lease freed a place")
}

// TestWebTerminalLeasesOfSessions: a browser session's cap counts its
// terminals on every edge, apart from the identity's and from other
// sessions', even under the same name.
func TestWebTerminalLeasesOfSessions(t *testing.T) {
	ns := startNATS(t)
	a, _ := leasesOf(t, ns, "edge-a", 0)
	b, _ := leasesOf(t, ns, "edge-b", 0)
	const s1 = "0123456789abcdef0123456789abcdef"
	first, ok := acquireSession(t, a, s1, 2)
	require.True(t, ok)
	_, ok = acquireSession(t, b, s1, 2)
	require.True(t, ok)
	_, ok = acquireSession(t, a, s1, 2)
	require.False(t, ok, "edge a gave the session a third terminal, one of them on edge b")
	_, ok = acquireSession(t, b, s1, 2)
	require.False(t, ok, "edge b gave the session a third terminal")
	_, ok = acquireSession(t, b, "fedcba9876543210fedcba9876543210", 2)
	require.True(t, ok, "another session was refused for the first one's terminals")
	_, ok = acquire(t, b, s1, 1)
	require.True(t, ok, "an identity named like the session was refused for its terminals")
	_, ok = acquire(t, b, "session."+s1, 1)
	require.True(t, ok, "an identity named like the session's key was refused for its terminals")

	first()
	_, ok = acquireSession(t, b, s1, 2)
	require.True(t, ok, "a returned lease did not free its place")
}

// TestWebTerminalLeasesRace: edges racing for an identity's last leases
// never hand out more than the cap between them.
func TestWebTerminalLeasesRace(t *testing.T) {
	ns := startNATS(t)
	a, _ := leasesOf(t, ns, "edge-a", 0)
	b, _ := leasesOf(t, ns, "edge-b", 0)
	const max = 3
	var (
		taken atomic.Int32
		wg    sync.WaitGroup
		mu    sync.Mutex
		rel   []func()
	)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	for i := range 12 {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() {
			release, ok, err := l.Acquire(ctx, "alice", max)
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				taken.Add(1)
				mu.Lock()
				rel = append(rel, release)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, r := range rel {
		r()
	}
	require.EqualValues(t, max, taken.Load(), "leases handed out to racing edges")
}

// TestWebTerminalLeasesLapse: the leases of an edge that lost NATS stop
// counting after their TTL, while the leases an edge renews go on
// counting long past it.
func TestWebTerminalLeasesLapse(t *testing.T) {
	ns := startNATS(t)
	const ttl = 600 * time.Millisecond
	a, _ := leasesOf(t, ns, "edge-a", ttl)
	gone, cut := leasesOf(t, ns, "edge-gone", ttl)
	b, _ := leasesOf(t, ns, "edge-b", ttl)
	_, ok := acquire(t, a, "alice", 2)
	require.True(t, ok)
	_, ok = acquire(t, gone, "alice", 2)
	require.True(t, ok)
	_, ok = acquire(t, b, "alice", 2)
	require.False(t, ok)

	cut() // edge-gone can no longer renew
	require.Eventually(t, func() bool {
		_, ok := acquire(t, b, "alice", 2)
		return ok
	}, waitLong, 100*time.Millisecond, "the lease of an edge cut off from NATS still counts")
	// Both of the places are now renewed: a's for 5 TTLs already.
	time.Sleep(3 * ttl)
	_, ok = acquire(t, b, "alice", 2)
	require.False(t, ok, "a renewed lease lapsed")
}

// TestWebTerminalLeasesComeBackAfterAStoreLoss: NATS that comes back
// without its state gets the leases again from the edges that hold them,
// and terminals are refused while it is away.
func TestWebTerminalLeasesComeBackAfterAStoreLoss(t *testing.T) {
	ns := startNATS(t)
	const ttl = 600 * time.Millisecond
	a, _ := leasesOf(t, ns, "edge-a", ttl)
	b, _ := leasesOf(t, ns, "edge-b", ttl)
	_, ok := acquire(t, a, "alice", 1)
	require.True(t, ok)

	ns.stop()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	_, _, err := b.Acquire(ctx, "alice", 1)
	require.ErrorIs(t, err, edge.ErrClusterUnavailable)

	ns.opts.StoreDir = t.TempDir()
	ns.start()
	// Until a's renewal writes its lease again, b may see a free place;
	// once it has, b is refused for good.
	require.Eventually(t, func() bool {
		release, ok, err := b.Acquire(ctx, "alice", 1)
		if ok {
			release()
		}
		return err == nil && !ok
	}, waitLong, 100*time.Millisecond, "a's lease was not written again after NATS lost it")
	time.Sleep(3 * ttl)
	_, ok = acquire(t, b, "alice", 1)
	require.False(t, ok, "a's lease lapsed after NATS came back")
}
