package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tetherhq/tether/edge"
)

// WebTerminalsBucket holds the leases of the web terminals open on the
// edges of the cluster: one key per identity (KeyFor) and one per browser
// session ("session." and KeyFor of its ID; KeyFor never writes a dot),
// whose value maps each lease to when it lapses.
const WebTerminalsBucket = "tether_web_terminals"

// DefaultWebLeaseTTL is how long a web terminal's lease counts without
// being renewed. An edge renews its leases every third of it, so the
// leases of an edge that died, or that lost NATS, stop counting after it.
const DefaultWebLeaseTTL = 30 * time.Second

// Bounds of the lease records.
const (
	// maxLeaseRecord bounds one record, in bytes: about 1,000 leases, far
	// beyond any cap on terminals.
	maxLeaseRecord = 64 << 10
	// leaseAttempts bounds the conditional writes of one change, each
	// refused because another edge wrote the record first.
	leaseAttempts = 8
	// releaseTimeout bounds the removal of a lease; one that is not
	// removed lapses.
	releaseTimeout = time.Second
)

// WebTerminalLeases is the edge.WebTerminalLeases of a cluster, in the
// WebTerminalsBucket, so that the caps on an identity's web terminals
// (web.max_terminals_per_identity) and on a browser session's
// (web.max_terminals_per_session) hold on all the edges together.
//
// An edge adds and removes its leases with conditional writes: edges
// that race for the last lease of an identity or a session never both
// get it. It renews the leases it holds every third of LeaseTTL; those of
// an edge that died or lost NATS lapse after LeaseTTL, and an edge that
// comes back renews its own again, even beyond the cap. Until the bucket
// is reachable, terminals are refused. Like WebTickets, it binds the
// bucket on first use and again after a failure.
type WebTerminalLeases struct {
	// JetStream is the JetStream context of a NATS connection. Required.
	JetStream jetstream.JetStream
	// Replicas is the bucket's replica count when it is created; zero
	// means 1.
	Replicas int
	// Edge is this edge's ID, which names its leases. Required.
	Edge string
	// LeaseTTL is how long a lease counts unless renewed; zero means
	// DefaultWebLeaseTTL.
	LeaseTTL time.Duration

	once onceKeys // its bucket only: leases are not claimed once

	mu sync.Mutex
	// mu guards the following.
	held  map[string]map[string]struct{} // key: the leases this edge holds under it
	renew *time.Timer                    // runs while held is not empty
}

var _ edge.WebTerminalLeases = (*WebTerminalLeases)(nil)

// leaseRecord is a key's value in the bucket: each lease's ID
// (edge/random) and when it lapses, in Unix milliseconds.
type leaseRecord map[string]int64

// decodeLeases reads a record; an empty value is no leases.
func decodeLeases(b []byte) (leaseRecord, error) {
	rec := leaseRecord{}
	if len(b) == 0 {
		return rec, nil
	}
	if len(b) > maxLeaseRecord {
		return nil, fmt.Errorf("cluster: a lease record of %d bytes, more than %d", len(b), maxLeaseRecord)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("cluster: a lease record: %w", err)
	}
	if rec == nil { // "null"
		rec = leaseRecord{}
	}
	return rec, nil
}

// live drops the leases that lapsed by now and returns how many are left.
func (r leaseRecord) live(now time.Time) int {
	for id, until := range r {
		if until <= now.UnixMilli() {
			delete(r, id)
		}
	}
	return len(r)
}

func (w *WebTerminalLeases) ttl() time.Duration {
	if w.LeaseTTL > 0 {
		return w.LeaseTTL
	}
	return DefaultWebLeaseTTL
}

// Acquire implements edge.WebTerminalLeases.
func (w *WebTerminalLeases) Acquire(ctx context.Context, identity string, max int) (func(), bool, error) {
	return w.acquire(ctx, KeyFor(identity), max)
}

// AcquireSession implements edge.WebTerminalLeases.
func (w *WebTerminalLeases) AcquireSession(ctx context.Context, session string, max int) (func(), bool, error) {
	return w.acquire(ctx, sessionKey(session), max)
}

// sessionKey is the bucket's key of a browser session's leases.
func sessionKey(session string) string { return "session." + KeyFor(session) }

// acquire takes one of max leases under key.
func (w *WebTerminalLeases) acquire(ctx context.Context, key string, max int) (func(), bool, error) {
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	id := w.Edge + "/" + hex.EncodeToString(nonce[:])
	ok, err := w.change(ctx, key, "take a terminal's lease", func(rec leaseRecord, now time.Time) bool {
		if rec.live(now) >= max {
			return false
		}
		rec[id] = now.Add(w.ttl()).UnixMilli()
		return true
	})
	if err != nil || !ok {
		return nil, false, err
	}
	w.hold(key, id)
	return sync.OnceFunc(func() { w.release(key, id) }), true, nil
}

// hold notes a lease this edge holds, and starts renewing.
func (w *WebTerminalLeases) hold(key, id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.held == nil {
		w.held = map[string]map[string]struct{}{}
	}
	if w.held[key] == nil {
		w.held[key] = map[string]struct{}{}
	}
	w.held[key][id] = struct{}{}
	if w.renew == nil {
		w.renew = time.AfterFunc(w.ttl()/3, w.renewAll)
	}
}

// release forgets a lease, then removes it from the record: a renewal
// that writes after it finds the lease no longer held.
func (w *WebTerminalLeases) release(key, id string) {
	w.mu.Lock()
	delete(w.held[key], id)
	if len(w.held[key]) == 0 {
		delete(w.held, key)
	}
	if len(w.held) == 0 && w.renew != nil && w.renew.Stop() {
		w.renew = nil // else the renewal under way sees none held
	}
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	_, _ = w.change(ctx, key, "return a terminal's lease", func(rec leaseRecord, now time.Time) bool {
		if _, ok := rec[id]; !ok {
			return false
		}
		delete(rec, id)
		rec.live(now)
		return true
	})
}

// renewAll extends every lease this edge holds, writing back any that
// the record lost (NATS came back without its state), and runs again
// while any is held.
func (w *WebTerminalLeases) renewAll() {
	w.mu.Lock()
	keys := make([]string, 0, len(w.held))
	for key := range w.held {
		keys = append(keys, key)
	}
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), w.ttl()/3)
	defer cancel()
	for _, key := range keys {
		// A failure leaves the leases to lapse, or to the next renewal.
		_, _ = w.change(ctx, key, "renew terminal leases", func(rec leaseRecord, now time.Time) bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			for id := range w.held[key] {
				rec[id] = now.Add(w.ttl()).UnixMilli()
			}
			rec.live(now)
			return len(w.held[key]) > 0
		})
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.held) > 0 {
		w.renew.Reset(w.ttl() / 3)
	} else {
		w.renew = nil
	}
}

// change applies f to key's record and writes it back if f reports a
// change, with a conditional write, again while other edges write first.
// It reports whether it wrote; what names the change in errors. A record
// that cannot be read is replaced: the bucket is this edge's and its
// peers' alone, so it is a record this edge's leases then rebuild.
func (w *WebTerminalLeases) change(ctx context.Context, key, what string, f func(leaseRecord, time.Time) bool) (bool, error) {
	kv, err := w.once.bucket(ctx, w.JetStream, jetstream.KeyValueConfig{
		Bucket: WebTerminalsBucket, Description: "tether: web terminals open, by identity and by browser session", History: 1,
		Replicas: max(w.Replicas, 1), TTL: 10 * w.ttl(), MaxValueSize: maxLeaseRecord,
	})
	if err != nil {
		return false, fmt.Errorf("%w: %s: %v", edge.ErrClusterUnavailable, what, err)
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	for range leaseAttempts {
		var rev uint64
		rec := leaseRecord{}
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			w.once.forget(kv)
			return false, fmt.Errorf("%w: %s: %v", edge.ErrClusterUnavailable, what, err)
		default:
			rev = e.Revision()
			if r, err := decodeLeases(e.Value()); err == nil {
				rec = r
			}
		}
		if !f(rec, time.Now()) {
			return false, nil
		}
		b, _ := json.Marshal(rec)
		if rev == 0 {
			_, err = kv.Create(ctx, key, b)
		} else {
			_, err = kv.Update(ctx, key, b, rev)
		}
		switch {
		case err == nil:
			return true, nil
		case !conflict(err):
			w.once.forget(kv)
			return false, fmt.Errorf("%w: %s: %v", edge.ErrClusterUnavailable, what, err)
		}
	}
	return false, fmt.Errorf("%w: %s: its record changed under %d writes in a row", edge.ErrClusterUnavailable, what, leaseAttempts)
}
