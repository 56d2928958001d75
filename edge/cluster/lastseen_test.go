package cluster_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/edge/cluster"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/labels"
)

func withLastSeen(ttl time.Duration) func(*cluster.Presence) {
	return func(p *cluster.Presence) { p.LastSeenTTL = ttl }
}

// TestLastSeenIsSharedByTheEdges: a record one edge writes is listed by
// the others, the newest record of a device replaces its older one, and
// agent information travels with presence records both ways.
func TestLastSeenIsSharedByTheEdges(t *testing.T) {
	ns := startNATS(t)
	a := newPresence(t, ns, "edge-a", withLastSeen(time.Hour))
	b := newPresence(t, ns, "edge-b", withLastSeen(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()

	agent := transport.AgentInfo{Version: "1.4.0", Platform: "linux/arm64", OS: "Debian GNU/Linux 12 (bookworm)"}
	seen := time.Now().UTC().Truncate(time.Millisecond)
	require.NoError(t, a.RecordLastSeen(ctx, edge.LastSeenRecord{ID: "gw.1", Edge: "edge-a", LastSeen: seen, Since: seen.Add(-time.Hour),
		RemoteAddr: "198.51.100.7:4000", AgentInfo: agent}))
	require.NoError(t, b.RecordLastSeen(ctx, edge.LastSeenRecord{ID: "d/2", Edge: "edge-b", LastSeen: seen}))
	recs, err := b.ListLastSeen(ctx)
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.Equal(t, "d/2", recs[0].ID, "sorted by ID; IDs outside the key alphabet survive")
	require.Equal(t, edge.LastSeenRecord{ID: "gw.1", Edge: "edge-a", LastSeen: seen, Since: seen.Add(-time.Hour),
		RemoteAddr: "198.51.100.7:4000", AgentInfo: agent}, recs[1])

	later := seen.Add(time.Minute)
	require.NoError(t, b.RecordLastSeen(ctx, edge.LastSeenRecord{ID: "gw.1", Edge: "edge-b", LastSeen: later}))
	recs, err = a.ListLastSeen(ctx)
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.Equal(t, "edge-b", recs[1].Edge)
	require.True(t, recs[1].LastSeen.Equal(later))

	// Agent information in the presence record.
	_, err = a.Announce(ctx, edge.PresenceRecord{ID: "gw.3", Nonce: "n1", Since: seen, AgentInfo: agent})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		rec, ok := b.Lookup("gw.3")
		return ok && rec.AgentInfo == agent
	}, waitLong, 5*time.Millisecond)
}

// TestLastSeenBucketTTL: records go after the bucket's TTL; an edge that
// starts with another TTL updates the bucket's.
func TestLastSeenBucketTTL(t *testing.T) {
	ns := startNATS(t)
	a := newPresence(t, ns, "edge-a", withLastSeen(time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	require.NoError(t, a.RecordLastSeen(ctx, edge.LastSeenRecord{ID: "d1", LastSeen: time.Now()}))
	recs, err := a.ListLastSeen(ctx)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Eventually(t, func() bool {
		recs, err := a.ListLastSeen(ctx)
		return err == nil && len(recs) == 0
	}, waitLong, 50*time.Millisecond, "the record outlived the bucket's TTL")

	newPresence(t, ns, "edge-b", withLastSeen(time.Hour))
	nc, err := nats.Connect(ns.url())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.KeyValue(ctx, cluster.LastSeenBucket)
	require.NoError(t, err)
	st, err := kv.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, time.Hour, st.TTL())
}

// TestNoLastSeen: a presence without LastSeenTTL keeps no records and
// says so.
func TestNoLastSeen(t *testing.T) {
	ns := startNATS(t)
	p := newPresence(t, ns, "edge-a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	require.ErrorContains(t, p.RecordLastSeen(ctx, edge.LastSeenRecord{ID: "d1"}), "keeps no last-seen records")
	_, err := p.ListLastSeen(ctx)
	require.ErrorContains(t, err, "last_seen_ttl is 0")
}

// TestLastSeenRecordOfTheLargestDevice: the record of a device with the
// longest ID, agent information and the most labels that the edge admits
// is kept, also in a bucket that an older edge created.
func TestLastSeenRecordOfTheLargestDevice(t *testing.T) {
	ns := startNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	_, err := jetStreamOf(t, ns).CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: cluster.LastSeenBucket, History: 1,
		TTL: time.Hour, MaxValueSize: 2048})
	require.NoError(t, err)
	p := newPresence(t, ns, strings.Repeat("e", 128), withLastSeen(time.Hour))

	lbls := map[string]string{}
	for i := range labels.MaxLabels {
		lbls[fmt.Sprintf("%02d%s", i, strings.Repeat("k", labels.MaxKeyLen-2))] = strings.Repeat("v", labels.MaxValueLen)
	}
	rec := edge.LastSeenRecord{ID: strings.Repeat("d", 128), Edge: strings.Repeat("e", 128),
		LastSeen: time.Now().UTC().Truncate(time.Millisecond), Since: time.Now().UTC().Truncate(time.Millisecond),
		RemoteAddr: "[2001:db8:1234:5678:9abc:def0:1234:5678%eth0]:65535",
		AgentInfo: transport.AgentInfo{Version: strings.Repeat("<", transport.MaxAgentVersion),
			Platform: strings.Repeat(">", transport.MaxAgentPlatform), OS: strings.Repeat("&", transport.MaxAgentOS)},
		Labels: lbls}
	require.NoError(t, p.RecordLastSeen(ctx, rec))
	recs, err := p.ListLastSeen(ctx)
	require.NoError(t, err)
	require.Equal(t, []edge.LastSeenRecord{rec}, recs)
}
