package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/edge/cluster"
)

// The presence buckets that went away while the edges run (deleted, or NATS
// came back without its store) are created again: writes, lookups and the
// edge listing work again without restarting the edges, and meanwhile
// Health says the view is not current.
func TestPresenceBucketsAreCreatedAgain(t *testing.T) {
	for _, how := range []string{"deleted", "store wiped", "created again elsewhere"} {
		t.Run(how, func(t *testing.T) {
			ns := startNATS(t)
			tune := func(p *cluster.Presence) {
				p.Heartbeat, p.EdgeTTL, p.LastSeenTTL = 200*time.Millisecond, 2*time.Second, time.Hour
			}
			a := newPresence(t, ns, "edge-a", tune)
			b := newPresence(t, ns, "edge-b", tune)
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
			require.Eventually(t, func() bool { return b.Health() != nil }, waitLong, time.Millisecond,
				"the view counted as current without its buckets")
			require.ErrorIs(t, b.Health(), edge.ErrClusterUnavailable)

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
