package cluster_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/edge/cluster"
	"github.com/tetherhq/tether/internal/testutil"
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

// TestWebTicketsAreShared: a ticket used on one edge is used up on
// another; a bucket that cannot be reached refuses the ticket.
func TestWebTicketsAreShared(t *testing.T) {
	ns := startNATS(t)
	tickets := func() *cluster.WebTickets {
		return &cluster.WebTickets{JetStream: jetStreamOf(t, ns)}
	}
	a, b := tickets(), tickets()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	until := time.Now().Add(edge.WebTicketLifetime)
	fresh, err := a.Use(ctx, "00112233445566778899aabbccddeeff", until)
	require.NoError(t, err)
	require.True(t, fresh)
	fresh, err = b.Use(ctx, "00112233445566778899aabbccddeeff", until)
	require.NoError(t, err)
	require.False(t, fresh, "a ticket used on edge a is used again on edge b")
	fresh, err = b.Use(ctx, "ffeeddccbbaa99887766554433221100", until)
	require.NoError(t, err)
	require.True(t, fresh)

	ns.stop()
	_, err = a.Use(ctx, "0123456789abcdef0123456789abcdef", until)
	require.ErrorIs(t, err, edge.ErrClusterUnavailable)
}

// TestWebRevocationsAreWatched: an edge watching the sign-outs hears of
// those made before it watched and of those made on another edge after.
func TestWebRevocationsAreWatched(t *testing.T) {
	ns := startNATS(t)
	a := &cluster.WebRevocations{JetStream: jetStreamOf(t, ns), TTL: time.Hour}
	b := &cluster.WebRevocations{JetStream: jetStreamOf(t, ns), TTL: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	require.NoError(t, a.Revoke(ctx, "0123456789abcdef0123456789abcdef", time.Now().Add(time.Hour)))

	heard := watchRevocations(t, b)
	require.Equal(t, "0123456789abcdef0123456789abcdef", recv(t, heard), "a sign-out made before the watch")
	require.NoError(t, a.Revoke(ctx, "fedcba9876543210fedcba9876543210", time.Now().Add(time.Hour)))
	require.Equal(t, "fedcba9876543210fedcba9876543210", recv(t, heard), "a sign-out made on another edge")
}

// TestWebRevocationsAreWatchedAgainAfterAReconnect: after NATS restarts,
// the watch starts again at once, from the present records (the sign-out
// made before the restart is heard a second time), and hears sign-outs
// made after it. A watch that only resumed would go quiet until its
// consumer noticed the lost server state, many seconds later.
func TestWebRevocationsAreWatchedAgainAfterAReconnect(t *testing.T) {
	ns := startNATS(t)
	a := &cluster.WebRevocations{JetStream: jetStreamOf(t, ns), TTL: time.Hour}
	b := &cluster.WebRevocations{JetStream: jetStreamOf(t, ns), TTL: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	const before, after = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	require.NoError(t, a.Revoke(ctx, before, time.Now().Add(time.Hour)))

	heard := watchRevocations(t, b)
	require.Equal(t, before, recv(t, heard))

	ns.stop()
	ns.start() // the same store: the record is still there
	require.Equal(t, before, recv(t, heard), "the watch did not start again after the reconnect")
	require.Eventually(t, func() bool {
		return a.Revoke(ctx, after, time.Now().Add(time.Hour)) == nil
	}, waitLong, 50*time.Millisecond)
	require.Equal(t, after, recv(t, heard), "a sign-out made after the reconnect")
}

// watchRevocations watches w's sign-outs until the test ends, and returns
// what it hears.
func watchRevocations(t *testing.T, w *cluster.WebRevocations) <-chan string {
	heard := make(chan string, 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.WatchRevocations(ctx, func(id string) { heard <- id })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return heard
}

func jetStreamOf(t *testing.T, ns *natsServer) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(ns.url(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func recv(t *testing.T, c <-chan string) string {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(waitLong):
		t.Fatal("nothing heard")
		return ""
	}
}

// TestWebBucketsAreBoundAgainAfterAFailure: a bucket that went away with
// the store (NATS came back without its state) is created again on the
// next use, not failed on for as long as the edge runs.
func TestWebBucketsAreBoundAgainAfterAFailure(t *testing.T) {
	ns := startNATS(t)
	js := jetStreamOf(t, ns)
	revocations := &cluster.WebRevocations{JetStream: js, TTL: time.Hour}
	tickets := &cluster.WebTickets{JetStream: js}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	until := time.Now().Add(time.Hour)
	require.NoError(t, revocations.Revoke(ctx, "0123456789abcdef0123456789abcdef", until))
	fresh, err := tickets.Use(ctx, "00112233445566778899aabbccddeeff", until)
	require.NoError(t, err)
	require.True(t, fresh)

	require.NoError(t, js.DeleteKeyValue(ctx, cluster.WebRevokedBucket))
	require.NoError(t, js.DeleteKeyValue(ctx, cluster.WebTicketsBucket))
	require.Eventually(t, func() bool {
		return revocations.Revoke(ctx, "fedcba9876543210fedcba9876543210", until) == nil
	}, waitLong, 50*time.Millisecond, "sign-outs fail for good once the bucket went away")
	got, err := revocations.Revoked(ctx, "fedcba9876543210fedcba9876543210")
	require.NoError(t, err)
	require.True(t, got)
	require.Eventually(t, func() bool {
		fresh, err := tickets.Use(ctx, "ffeeddccbbaa99887766554433221100", until)
		return err == nil && fresh
	}, waitLong, 50*time.Millisecond, "tickets are refused for good once the bucket went away")
}

// TestWebBucketsBindOnASlowLink: binding a bucket on first use takes
// four round trips (look it up, create it, read its status), more than
// one operation's deadline allows on a slow link or a busy cluster; it has
// a deadline of its own, and the first sign-out, ticket and terminal
// lease go through.
func TestWebBucketsBindOnASlowLink(t *testing.T) {
	ns := startNATS(t)
	link := testutil.NewFaultProxy(t, strings.TrimPrefix(ns.url(), "nats://"))
	nc, err := nats.Connect("nats://"+link.Addr(), nats.MaxReconnects(-1))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	link.SetDelay(400 * time.Millisecond) // round trips of 0.8 s: four take more than an operation's 3 s

	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	until := time.Now().Add(time.Hour)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	wg.Go(func() {
		errs[0] = (&cluster.WebRevocations{JetStream: js, TTL: time.Hour}).Revoke(ctx, "0123456789abcdef0123456789abcdef", until)
	})
	wg.Go(func() {
		fresh, err := (&cluster.WebTickets{JetStream: js}).Use(ctx, "00112233445566778899aabbccddeeff", until)
		if err == nil && !fresh {
			err = errors.New("a fresh ticket was taken for one used before")
		}
		errs[1] = err
	})
	wg.Go(func() {
		release, ok, err := (&cluster.WebTerminalLeases{JetStream: js, Edge: "edge-a"}).Acquire(ctx, "alice", 1)
		if err == nil && !ok {
			err = errors.New("the first lease was refused")
		}
		if ok {
			release()
		}
		errs[2] = err
	})
	wg.Wait()
	require.NoError(t, errs[0], "sign-out")
	require.NoError(t, errs[1], "ticket")
	require.NoError(t, errs[2], "terminal lease")
}
