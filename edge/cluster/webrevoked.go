package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tetherhq/tether/edge"
)

// WebRevokedBucket keeps the IDs of the web sessions that signed out, so
// that every edge of the cluster refuses their cookies. Its TTL is the
// sessions' lifetime: a revocation outlives the cookie it revokes.
const WebRevokedBucket = "tether_web_revoked"

// WebRevocations is the edge.WebRevocations of a cluster, in the
// WebRevokedBucket. It binds the bucket on first use (and again after a
// failure), so that an edge whose cluster state is not reachable yet
// starts anyway; until then sign-outs fail and sessions cannot be checked,
// which refuses them.
type WebRevocations struct {
	// JetStream is the JetStream context of a NATS connection. Required.
	JetStream jetstream.JetStream
	// Replicas is the bucket's replica count when it is created; zero
	// means 1.
	Replicas int
	// TTL is the web sessions' lifetime (edge.WebConfig.SessionLifetime);
	// zero means edge.DefaultWebSessionLifetime.
	TTL time.Duration

	mu sync.Mutex
	// mu guards the following.
	kv jetstream.KeyValue
}

var (
	_ edge.WebRevocations       = (*WebRevocations)(nil)
	_ edge.WebRevocationWatcher = (*WebRevocations)(nil)
)

func (w *WebRevocations) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.kv != nil {
		return w.kv, nil
	}
	ttl := w.TTL
	if ttl <= 0 {
		ttl = edge.DefaultWebSessionLifetime
	}
	kv, err := bucket(ctx, w.JetStream, jetstream.KeyValueConfig{
		Bucket: WebRevokedBucket, Description: "tether: web sessions that signed out", History: 1,
		Replicas: max(w.Replicas, 1), TTL: ttl, MaxValueSize: 64,
	})
	if err != nil {
		return nil, err
	}
	w.kv = kv
	return kv, nil
}

// forget drops kv after an operation on it failed, so that the next use
// binds the bucket again: it may have gone with the store (NATS came back
// without its state), and binding creates it.
func (w *WebRevocations) forget(kv jetstream.KeyValue) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.kv == kv {
		w.kv = nil
	}
}

// Revoke implements edge.WebRevocations. until is not used: the bucket's
// TTL, the sessions' lifetime, expires the record.
func (w *WebRevocations) Revoke(ctx context.Context, id string, _ time.Time) error {
	kv, err := w.bucket(ctx)
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		if _, err = kv.Put(ctx, id, []byte{1}); err != nil {
			w.forget(kv)
		}
	}
	if err != nil {
		return fmt.Errorf("%w: record the sign-out: %v", edge.ErrClusterUnavailable, err)
	}
	return nil
}

// Revoked implements edge.WebRevocations.
func (w *WebRevocations) Revoked(ctx context.Context, id string) (bool, error) {
	kv, err := w.bucket(ctx)
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		_, err = kv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return false, nil
		}
		if err != nil {
			w.forget(kv)
		}
	}
	if err != nil {
		return false, fmt.Errorf("%w: check for a sign-out: %v", edge.ErrClusterUnavailable, err)
	}
	return true, nil
}

// watchRetryMax bounds the wait between attempts to watch the sign-outs.
const watchRetryMax = 5 * time.Second

// WatchRevocations implements edge.WebRevocationWatcher: it watches the
// bucket, from its present records on, and binds and watches it again
// after a failure and after each reconnect to NATS. A watch carried over
// a reconnect can go quiet without closing: a restarted server lost its
// consumer, and the client notices only when its heartbeats stay away.
func (w *WebRevocations) WatchRevocations(ctx context.Context, revoked func(id string)) {
	var reconnected chan nats.Status
	if nc := w.JetStream.Conn(); nc != nil {
		reconnected = nc.StatusChanged(nats.CONNECTED)
		defer nc.RemoveStatusListener(reconnected)
	}
	delay := 100 * time.Millisecond
	for {
		kv, err := w.bucket(ctx)
		if err == nil {
			start := time.Now()
			if watchKeys(ctx, kv, reconnected, revoked) != nil {
				w.forget(kv)
			}
			if time.Since(start) > watchRetryMax {
				delay = 100 * time.Millisecond
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, watchRetryMax)
	}
}

// watchKeys calls fn with the key of every record of kv, present and to
// come, until ctx ends, the watch fails or a value comes on reconnected.
// It returns the error of a watch that could not start.
func watchKeys(ctx context.Context, kv jetstream.KeyValue, reconnected <-chan nats.Status, fn func(key string)) error {
	kw, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer func() { _ = kw.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reconnected:
			return nil
		case e, ok := <-kw.Updates():
			if !ok {
				return nil
			}
			if e != nil { // nil marks the end of the present records
				fn(e.Key())
			}
		}
	}
}
