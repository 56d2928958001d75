package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/edge/cluster"
	"github.com/tetherhq/tether/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitLong = 20 * time.Second

// natsServer runs a JetStream-enabled NATS server on a loopback port.
type natsServer struct {
	t    testing.TB
	srv  *server.Server
	opts *server.Options
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	ns := &natsServer{t: t, opts: &server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	}}
	ns.start()
	t.Cleanup(ns.stop)
	return ns
}

func (ns *natsServer) start() {
	ns.t.Helper()
	srv, err := server.NewServer(ns.opts)
	require.NoError(ns.t, err)
	srv.Start()
	require.True(ns.t, srv.ReadyForConnections(10*time.Second), "NATS did not start")
	ns.srv = srv
	ns.opts.Port = srv.Addr().(*net.TCPAddr).Port // a restart listens on the same port
}

func (ns *natsServer) stop() {
	if ns.srv != nil {
		ns.srv.Shutdown()
		ns.srv.WaitForShutdown()
		ns.srv = nil
	}
}

func (ns *natsServer) url() string {
	return "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ns.opts.Port))
}

// newPresence connects to ns and starts a Presence for edgeID.
func newPresence(t testing.TB, ns *natsServer, edgeID string, tune func(*cluster.Presence)) *cluster.Presence {
	t.Helper()
	return newPresenceAt(t, ns.url(), edgeID, tune)
}

// newPresenceAt is newPresence through the NATS URL url.
func newPresenceAt(t testing.TB, url, edgeID string, tune func(*cluster.Presence)) *cluster.Presence {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	p := &cluster.Presence{JetStream: js, Conn: nc, EdgeID: edgeID, Advertise: "https://" + edgeID + ":8443"}
	if tune != nil {
		tune(p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	require.NoError(t, p.Start(ctx))
	t.Cleanup(func() { p.Close() })
	return p
}

func TestAnnounceIsSeenByOtherEdges(t *testing.T) {
	ns := startNATS(t)
	a := newPresence(t, ns, "edge-a", nil)
	b := newPresence(t, ns, "edge-b", nil)
	seen := make(chan edge.PresenceRecord, 10)
	b.OnRecord(func(r edge.PresenceRecord) { seen <- r })

	rec := edge.PresenceRecord{ID: "gw 1:eth0", Nonce: "n1", Since: time.Now().UTC().Truncate(time.Millisecond)}
	require.NoError(t, announce(a, context.Background(), rec))
	select {
	case got := <-seen:
		require.Equal(t, "gw 1:eth0", got.ID)
		require.Equal(t, "edge-a", got.Edge, "the record names the announcing edge")
	case <-time.After(waitLong):
		t.Fatal("edge-b never saw the record")
	}
	got, ok := b.Lookup("gw 1:eth0")
	require.True(t, ok)
	require.Equal(t, "n1", got.Nonce)
	require.Equal(t, rec.Since, got.Since.UTC())
	require.Len(t, b.List(), 1)
	require.Equal(t, []string{"edge-a", "edge-b"}, ids(b.Edges()))

	// Withdraw with a stale nonce leaves the record; with the right one, it
	// goes. The watchers deliver in the bucket's order, so once edge-b sees
	// a later write, it would have seen a delete made before it.
	require.NoError(t, a.Withdraw(context.Background(), "gw 1:eth0", "old"))
	require.NoError(t, announce(a, context.Background(), edge.PresenceRecord{ID: "later", Nonce: "n2"}))
	require.Eventually(t, func() bool { _, ok := b.Lookup("later"); return ok }, waitLong, 5*time.Millisecond)
	_, ok = b.Lookup("gw 1:eth0")
	require.True(t, ok, "a withdraw with a stale nonce deleted the record")
	require.NoError(t, a.Withdraw(context.Background(), "gw 1:eth0", "n1"))
	require.Eventually(t, func() bool { _, ok := b.Lookup("gw 1:eth0"); return !ok }, waitLong, 5*time.Millisecond)
}

// A dead edge's devices stop counting as present once its key expires.
func TestDeadEdgesDevicesAreNotPresent(t *testing.T) {
	ns := startNATS(t)
	fast := func(p *cluster.Presence) { p.Heartbeat, p.EdgeTTL = 50*time.Millisecond, 300*time.Millisecond }
	a := newPresence(t, ns, "edge-a", fast)
	b := newPresence(t, ns, "edge-b", fast)
	require.NoError(t, announce(a, context.Background(), edge.PresenceRecord{ID: "d1", Nonce: "n"}))
	require.Eventually(t, func() bool { _, ok := b.Lookup("d1"); return ok }, waitLong, 5*time.Millisecond)

	// edge-a stops refreshing without saying goodbye: kill its heartbeat by
	// closing its NATS connection under it.
	a.Conn.Close()
	require.Eventually(t, func() bool { _, ok := b.Lookup("d1"); return !ok }, waitLong, 10*time.Millisecond,
		"a dead edge's device still counts as present")
	require.Equal(t, []string{"edge-b"}, ids(b.Edges()))
}

func ids(es []edge.EdgeRecord) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

// After NATS restarts, the watchers start again, the view reloads and new
// records propagate; meanwhile Health says the view is not current.
func TestWatchersRecoverAfterNATSRestart(t *testing.T) {
	ns := startNATS(t)
	a := newPresence(t, ns, "edge-a", nil)
	b := newPresence(t, ns, "edge-b", nil)
	require.NoError(t, announce(a, context.Background(), edge.PresenceRecord{ID: "before", Nonce: "n"}))
	require.Eventually(t, func() bool { _, ok := b.Lookup("before"); return ok }, waitLong, 5*time.Millisecond)

	ns.stop()
	require.Eventually(t, func() bool { return b.Health() != nil }, waitLong, 5*time.Millisecond)
	require.ErrorIs(t, b.Health(), edge.ErrClusterUnavailable)
	_, err := a.Announce(context.Background(), edge.PresenceRecord{ID: "during", Nonce: "n"})
	require.ErrorIs(t, err, edge.ErrClusterUnavailable, "an announce while NATS is down fails fast with a reason")

	ns.start()
	require.Eventually(t, func() bool { return a.Health() == nil && b.Health() == nil }, waitLong, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		_, err := a.Announce(context.Background(), edge.PresenceRecord{ID: "after", Nonce: "n"})
		return err == nil
	}, waitLong, 50*time.Millisecond)
	require.Eventually(t, func() bool { _, ok := b.Lookup("after"); return ok }, waitLong, 5*time.Millisecond,
		"a record announced after the restart did not reach the other edge")
	_, ok := b.Lookup("before")
	require.True(t, ok, "the view reloaded what the bucket kept")
}

// The lowest live edge removes the records of an edge that stayed dead,
// and leaves records that a live edge holds.
func TestDeadEdgesRecordsAreRemoved(t *testing.T) {
	ns := startNATS(t)
	fast := func(p *cluster.Presence) {
		p.Heartbeat, p.EdgeTTL, p.CleanupAfter = 50*time.Millisecond, 300*time.Millisecond, time.Second
	}
	a := newPresence(t, ns, "edge-a", fast)
	z := newPresence(t, ns, "edge-z", fast)
	require.NoError(t, announce(z, context.Background(), edge.PresenceRecord{ID: "orphan", Nonce: "n"}))
	require.NoError(t, announce(a, context.Background(), edge.PresenceRecord{ID: "kept", Nonce: "n"}))
	z.Conn.Close()

	nc, err := nats.Connect(ns.url())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.KeyValue(context.Background(), cluster.DevicesBucket)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := kv.Get(context.Background(), cluster.KeyFor("orphan"))
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}, waitLong, 20*time.Millisecond, "the dead edge's record was never removed")
	_, err = kv.Get(context.Background(), cluster.KeyFor("kept"))
	require.NoError(t, err)
	_, ok := a.Lookup("kept")
	require.True(t, ok)
}

func TestKeyFor(t *testing.T) {
	tests := []struct{ id, key string }{
		{"gw-17", "gw-17"},
		{"gw_17", "gw_17"},
		{"a:b c", "a=3Ab=20c"},
		{"x.y=z", "x=2Ey=3Dz"},
		{"ünï", "=C3=BCn=C3=AF"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.key, cluster.KeyFor(tt.id), "KeyFor(%q)", tt.id)
		back, err := cluster.IDFromKey(tt.key)
		require.NoError(t, err)
		require.Equal(t, tt.id, back)
	}
	for _, bad := range []string{"=", "=4", "=4G", "a=zz"} {
		_, err := cluster.IDFromKey(bad)
		require.Error(t, err, "IDFromKey(%q)", bad)
	}
}

func FuzzKeyFor(f *testing.F) {
	for _, s := range []string{"", "gw-1", "a:b c", "=", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		key := cluster.KeyFor(id)
		for i := 0; i < len(key); i++ {
			c := key[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=') {
				t.Fatalf("KeyFor(%q) = %q holds %q, which NATS keys refuse", id, key, c)
			}
		}
		back, err := cluster.IDFromKey(key)
		if err != nil || back != id {
			t.Fatalf("IDFromKey(KeyFor(%q)) = %q, %v", id, back, err)
		}
	})
}

// announce announces rec and drops the revision.
func announce(p *cluster.Presence, ctx context.Context, rec edge.PresenceRecord) error {
	_, err := p.Announce(ctx, rec)
	return err
}

// TestBucketsAreBoundNotRecreated: an edge that starts where the buckets
// exist binds them, and a changed edge TTL updates the bucket's TTL.
func TestBucketsAreBoundNotRecreated(t *testing.T) {
	ns := startNATS(t)
	first := newPresence(t, ns, "e1", func(p *cluster.Presence) { p.EdgeTTL = 3 * time.Second })
	require.NoError(t, announce(first, context.Background(), edge.PresenceRecord{ID: "d-1", Nonce: "n1"}))
	require.NoError(t, first.Close())

	second := newPresence(t, ns, "e2", func(p *cluster.Presence) { p.EdgeTTL = 5 * time.Second })
	_, ok := second.Lookup("d-1")
	require.False(t, ok, "d-1's edge is gone, so d-1 is not present")

	nc, err := nats.Connect(ns.url())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	kv, err := js.KeyValue(ctx, cluster.EdgesBucket)
	require.NoError(t, err)
	st, err := kv.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, 5*time.Second, st.TTL())
	devs, err := js.KeyValue(ctx, cluster.DevicesBucket)
	require.NoError(t, err)
	e, err := devs.Get(ctx, cluster.KeyFor("d-1"))
	require.NoError(t, err, "binding keeps the records already stored")
	require.Contains(t, string(e.Value()), `"nonce":"n1"`)
}

// warnCounter counts the warnings logged through it.
type warnCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (h warnCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h warnCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return warnCounter{h.Handler.WithAttrs(as), h.n}
}

func (h warnCounter) WithGroup(g string) slog.Handler {
	return warnCounter{h.Handler.WithGroup(g), h.n}
}

// A devices watcher that keeps up with a bucket written without pause is
// not started again: a watcher is stuck only when it delivers nothing
// while the bucket holds more.
func TestBusyBucketKeepsItsWatchers(t *testing.T) {
	ns := startNATS(t)
	var warnings atomic.Int64
	p := newPresence(t, ns, "edge-a", func(p *cluster.Presence) {
		p.Heartbeat = 50 * time.Millisecond
		p.Logger = slog.New(warnCounter{slog.NewTextHandler(io.Discard, nil), &warnings})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				_, _ = p.Announce(ctx, edge.PresenceRecord{ID: fmt.Sprintf("d%d-%d", w, i%500), Nonce: "n"})
			}
		}()
	}
	wg.Wait()
	require.Zero(t, warnings.Load(), "the watchers were started again while they kept up")
}

// The presence buckets that went away while the edges run (deleted, or NATS
// came back without its store) are created again: each edge notices and
// binds the new buckets (and says so), and writes, lookups and the edge
// listing work again without restarting the edges.
func TestPresenceBucketsAreCreatedAgain(t *testing.T) {
	for _, how := range []string{"deleted", "store wiped", "created again elsewhere"} {
		t.Run(how, func(t *testing.T) {
			ns := startNATS(t)
			var logB testutil.Buffer
			tune := func(p *cluster.Presence) {
				p.Heartbeat, p.EdgeTTL, p.LastSeenTTL = 200*time.Millisecond, 2*time.Second, time.Hour
			}
			a := newPresence(t, ns, "edge-a", tune)
			b := newPresence(t, ns, "edge-b", func(p *cluster.Presence) {
				tune(p)
				p.Logger = slog.New(slog.NewTextHandler(&logB, nil))
			})
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			require.NoError(t, announce(a, ctx, edge.PresenceRecord{ID: "before", Nonce: "n"}))
			require.Eventually(t, func() bool { _, ok := b.Lookup("before"); return ok }, waitLong, 5*time.Millisecond)

			switch how {
			case "deleted":
				js := jetStreamOf(t, ns)
				for _, name := range []string{cluster.DevicesBucket, cluster.EdgesBucket, cluster.LastSeenBucket} {
					require.NoError(t, js.DeleteKeyValue(ctx, name))
				}
			case "created again elsewhere":
				// As another edge does at once: this edge's writes never
				// fail, but its devices watcher follows a stream that is
				// gone.
				js := jetStreamOf(t, ns)
				require.NoError(t, js.DeleteKeyValue(ctx, cluster.DevicesBucket))
				_, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: cluster.DevicesBucket, History: 1})
				require.NoError(t, err)
			default:
				ns.stop()
				ns.opts.StoreDir = t.TempDir()
				ns.start()
			}
			// Writes that get no answer make the next heartbeat look the
			// buckets up; one that is gone, or new (another edge created it
			// again first), is bound again, and the watchers start again on
			// it. (Where another edge recreated them at once, the writes
			// succeed, and the check of the devices bucket finds it new.)
			require.Eventually(t, func() bool {
				if how != "created again elsewhere" {
					_, _ = b.Announce(ctx, edge.PresenceRecord{ID: "during", Nonce: "n"})
				}
				return strings.Contains(logB.String(), "the presence buckets were created again")
			}, waitLong, 10*time.Millisecond, "edge-b did not bind the new buckets:\n%s", logB.String())

			require.Eventually(t, func() bool {
				_, err := a.Announce(ctx, edge.PresenceRecord{ID: "after", Nonce: "n"})
				return err == nil
			}, waitLong, 50*time.Millisecond, "announcements fail for good once the buckets went away")
			require.Eventually(t, func() bool { _, ok := b.Lookup("after"); return ok }, waitLong, 5*time.Millisecond,
				"a record announced after the buckets came back did not reach the other edge")
			require.Eventually(t, func() bool {
				return a.Health() == nil && b.Health() == nil && len(a.Edges()) == 2 && len(b.Edges()) == 2
			}, waitLong, 10*time.Millisecond, "health %v, %v; edges %v, %v", a.Health(), b.Health(), ids(a.Edges()), ids(b.Edges()))
			_, ok := b.Lookup("before")
			require.False(t, ok, "the view kept a record the store lost")

			require.NoError(t, b.Withdraw(ctx, "after", "other"))
			require.NoError(t, a.Withdraw(ctx, "after", "n"))
			require.Eventually(t, func() bool { _, ok := b.Lookup("after"); return !ok }, waitLong, 5*time.Millisecond)
			require.Eventually(t, func() bool {
				return a.RecordLastSeen(ctx, edge.LastSeenRecord{ID: "gone", Edge: "edge-a"}) == nil
			}, waitLong, 50*time.Millisecond)
			seen, err := b.ListLastSeen(ctx)
			require.NoError(t, err)
			require.Len(t, seen, 1)
			require.Equal(t, "gone", seen[0].ID)
		})
	}
}

// TestReannounceKeepsANewerRecord: writing a record again after it went
// missing from the view never replaces another session's record, and
// writes it where the record is still the edge's own or was removed.
func TestReannounceKeepsANewerRecord(t *testing.T) {
	ns := startNATS(t)
	a := newPresence(t, ns, "edge-a", nil)
	b := newPresence(t, ns, "edge-b", nil)
	ctx := context.Background()
	mine := edge.PresenceRecord{ID: "d1", Nonce: "old"}
	rev, err := a.Announce(ctx, mine)
	require.NoError(t, err)
	again, err := a.Reannounce(ctx, mine, rev)
	require.NoError(t, err, "the record is still the edge's own")
	require.Greater(t, again, rev)

	_, err = b.Announce(ctx, edge.PresenceRecord{ID: "d1", Nonce: "new"})
	require.NoError(t, err)
	_, err = a.Reannounce(ctx, mine, again)
	require.ErrorIs(t, err, edge.ErrRecordReplaced)
	// Each edge's view follows the bucket by its own watcher: b's, too,
	// may show its own record a moment after a's does.
	for _, p := range []*cluster.Presence{a, b} {
		require.Eventually(t, func() bool {
			got, ok := p.Lookup("d1")
			return ok && got.Nonce == "new"
		}, waitLong, 5*time.Millisecond)
	}
	got, ok := b.Lookup("d1")
	require.True(t, ok)
	require.Equal(t, "edge-b", got.Edge, "the newer session's record was replaced")

	require.NoError(t, b.Withdraw(ctx, "d1", "new"))
	_, err = a.Reannounce(ctx, mine, again)
	require.NoError(t, err, "a removed record is written again")
	require.Eventually(t, func() bool {
		got, ok := b.Lookup("d1")
		return ok && got.Edge == "edge-a" && got.Nonce == "old"
	}, waitLong, 5*time.Millisecond)
}

// TestAStoppedViewJudgesNoEdgeDead: an edge whose connection to NATS
// stalls (as it does while its process is stopped) cannot hear the other
// edges, and must not take their silence for death: their devices stay
// present in its view, and, being the lowest live edge, it does not clear
// their records when it resumes.
func TestAStoppedViewJudgesNoEdgeDead(t *testing.T) {
	ns := startNATS(t)
	fast := func(p *cluster.Presence) {
		p.Heartbeat, p.EdgeTTL, p.CleanupAfter = 50*time.Millisecond, 300*time.Millisecond, time.Second
	}
	gate := testutil.NewFaultProxy(t, strings.TrimPrefix(ns.url(), "nats://"))
	a := newPresenceAt(t, "nats://"+gate.Addr(), "edge-a", fast)
	b := newPresence(t, ns, "edge-b", fast)
	require.NoError(t, announce(b, context.Background(), edge.PresenceRecord{ID: "d1", Nonce: "n"}))
	require.Eventually(t, func() bool { _, ok := a.Lookup("d1"); return ok }, waitLong, 5*time.Millisecond)
	time.Sleep(time.Second) // past CleanupAfter since edge-a started

	gate.SetMode(testutil.Hold)
	for range 30 { // 3 s: ten edge TTLs, three times CleanupAfter
		_, ok := a.Lookup("d1")
		require.True(t, ok, "a stalled view judged a live edge dead")
		time.Sleep(100 * time.Millisecond)
	}
	gate.SetMode(testutil.Pass)
	for range 20 {
		_, ok := a.Lookup("d1")
		require.True(t, ok, "a resumed view judged a live edge dead before hearing from it")
		time.Sleep(50 * time.Millisecond)
	}
	require.Eventually(t, func() bool { return a.Health() == nil }, waitLong, 10*time.Millisecond)
	time.Sleep(500 * time.Millisecond) // two cleanup rounds of edge-a
	_, ok := b.Lookup("d1")
	require.True(t, ok, "the resumed edge removed a live edge's record")
}
