package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// TestNoAnswerIsNotALostBucket: a write that gets no answer (as writes do
// while NATS elects a bucket's leader after an edge died) leaves the view
// current while the bucket is there; the next heartbeat's check finds a
// bucket that is really gone, and the view counts as not current until
// the buckets are bound again.
func TestNoAnswerIsNotALostBucket(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	require.True(t, ns.ReadyForConnections(10*time.Second))
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	p := &Presence{JetStream: js, Conn: nc, EdgeID: "e1", Heartbeat: 50 * time.Millisecond, EdgeTTL: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, p.Start(ctx))
	t.Cleanup(func() { p.Close() })

	p.missing(jetstream.ErrNoStreamResponse)
	require.NoError(t, p.Health(), "no answer made the view not current at once")
	require.Eventually(t, func() bool {
		p.mu.RLock()
		defer p.mu.RUnlock()
		return !p.suspect
	}, 10*time.Second, 5*time.Millisecond, "the heartbeat did not check the buckets")
	require.NoError(t, p.Health(), "the check lost buckets that are there")

	// Gone for real: the heartbeat binds it again, which the deleted
	// bucket's watcher would never learn by itself.
	require.NoError(t, js.DeleteKeyValue(ctx, DevicesBucket))
	p.missing(jetstream.ErrNoStreamResponse)
	require.Eventually(t, func() bool { return p.Health() != nil }, 10*time.Second, time.Millisecond,
		"a bucket that is gone left the view current")
	require.Eventually(t, func() bool { return p.Health() == nil }, 10*time.Second, 5*time.Millisecond)
	_, err = js.KeyValue(ctx, DevicesBucket)
	require.NoError(t, err, "the bucket was not created again")
}
