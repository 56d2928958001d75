package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/edge/cluster"
)

// TestWebRevocationsAreShared: a sign-out on one edge is seen by another;
// a bucket that cannot be reached fails the check rather than passing it.
func TestWebRevocationsAreShared(t *testing.T) {
	ns := startNATS(t)
	revocations := func() *cluster.WebRevocations {
		nc, err := nats.Connect(ns.url(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		return &cluster.WebRevocations{JetStream: js, TTL: time.Hour}
	}
	a, b := revocations(), revocations()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	const id = "0123456789abcdef0123456789abcdef"
	got, err := b.Revoked(ctx, id)
	require.NoError(t, err)
	require.False(t, got)
	require.NoError(t, a.Revoke(ctx, id, time.Now().Add(time.Hour)))
	got, err = b.Revoked(ctx, id)
	require.NoError(t, err)
	require.True(t, got, "a sign-out on edge a is not seen on edge b")

	ns.stop()
	_, err = b.Revoked(ctx, "fedcba9876543210fedcba9876543210")
	require.ErrorIs(t, err, edge.ErrClusterUnavailable)
}
