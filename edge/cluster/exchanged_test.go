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

// TestExchangedTokensAreShared: an ID token claimed on one edge is not
// fresh on another; a bucket that cannot be reached fails the claim
// rather than passing it.
func TestExchangedTokensAreShared(t *testing.T) {
	ns := startNATS(t)
	exchanged := func() *cluster.ExchangedTokens {
		nc, err := nats.Connect(ns.url(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		return &cluster.ExchangedTokens{JetStream: js, TTL: time.Hour}
	}
	a, b := exchanged(), exchanged()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	const key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	until := time.Now().Add(time.Hour)
	fresh, err := a.Claim(ctx, key, until)
	require.NoError(t, err)
	require.True(t, fresh)
	fresh, err = b.Claim(ctx, key, until)
	require.NoError(t, err)
	require.False(t, fresh, "a token exchanged on edge a is fresh on edge b")
	fresh, err = a.Claim(ctx, key, until)
	require.NoError(t, err)
	require.False(t, fresh)

	ns.stop()
	_, err = b.Claim(ctx, "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210", until)
	require.ErrorIs(t, err, edge.ErrClusterUnavailable)
}
