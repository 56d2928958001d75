// Package cluster is the device presence of a cluster of edges, kept in
// NATS JetStream key-value buckets: which edge holds each device, and
// which edges are alive and where their peers dial them. It implements
// edge.Presence.
//
// Two buckets hold the state. tether_devices has one key per device (the
// ID, escaped with KeyFor) whose value names the edge, the session nonce
// and when it began. tether_edges has one key per edge, put every
// Heartbeat; an edge whose key was not refreshed for EdgeTTL is dead, and
// its devices no longer count as present. Every edge watches both buckets
// into a local map, so a lookup never waits on the network; a watcher that
// stops (after a reconnect to NATS) is started again. A bucket that the
// store lost (NATS came back without its state) is created again by the
// first edge to find it missing, and watched from its start.
//
// A third bucket, tether_last_seen, used when LastSeenTTL is set, keeps
// the devices that disconnected (edge.LastSeen): one put per disconnect,
// expired by the bucket's TTL, read on demand by the device list.
//
// The package does not start NATS: the caller connects (to an embedded
// server or an external cluster) and hands over the JetStream context.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/logx"
)

// Bucket names.
const (
	DevicesBucket  = "tether_devices"
	EdgesBucket    = "tether_edges"
	LastSeenBucket = "tether_last_seen"
)

// Defaults of a Presence.
const (
	// DefaultHeartbeat is how often an edge refreshes its own key.
	DefaultHeartbeat = 2 * time.Second
	// DefaultEdgeTTL is how long an edge's key lives without a refresh:
	// three heartbeats, so one lost or late put does not kill an edge.
	DefaultEdgeTTL = 6 * time.Second
	// DefaultCleanupAfter is how long a dead edge's device records are
	// kept before the cluster deletes them. Devices re-home sooner and
	// overwrite their records; this only clears the rest.
	DefaultCleanupAfter = 2 * time.Minute
	// opTimeout bounds one NATS operation.
	opTimeout = 3 * time.Second
	// bindTimeout bounds the binding of a bucket on first use: creating
	// it forms a stream (a Raft group, when replicated), which takes
	// longer than an operation on a busy cluster.
	bindTimeout = 10 * time.Second
	// cleanupEvery is how often, at most, the lowest live edge clears dead
	// records (a quarter of CleanupAfter when that is shorter).
	cleanupEvery = 30 * time.Second
)

// Presence keeps this edge's view of the cluster. Fill in the fields, then
// Start; Close stops it. It implements edge.Presence.
type Presence struct {
	// JetStream is the JetStream context of a NATS connection. Required.
	JetStream jetstream.JetStream
	// Conn is the NATS connection under JetStream, for Health. Optional.
	Conn *nats.Conn
	// EdgeID names this edge. Required.
	EdgeID string
	// Advertise is the base URL other edges dial for the peer session.
	Advertise string
	// Replicas is the replica count of the buckets when they are created:
	// 1 for a single NATS server, 3 for a cluster of three or more. Zero
	// means 1.
	Replicas int
	// Heartbeat, EdgeTTL and CleanupAfter: zero means the defaults.
	Heartbeat, EdgeTTL, CleanupAfter time.Duration
	// LastSeenTTL is how long the record of a device that disconnected
	// is kept in the tether_last_seen bucket (its TTL), for the device
	// list. Zero keeps none: the bucket is not used. Every edge of a
	// cluster should have the same: an edge that starts with another one
	// sets the bucket's TTL to its own.
	LastSeenTTL time.Duration
	// Logger receives state changes; nil discards them.
	Logger *slog.Logger

	log     *slog.Logger
	bound   atomic.Pointer[buckets]
	started time.Time
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu sync.RWMutex
	// mu guards the following.
	restart    chan struct{}          // closed to make both watchers start again
	orphans    []jetstream.KeyWatcher // watchers that stopped while NATS was away
	reconnects uint64                 // the connection's reconnect count at the last check
	ownSeen    time.Time              // when the edges watcher last delivered this edge's own key, or the watchers started again
	ownLast    time.Time              // when the edges watcher last delivered this edge's own key; zero before the first
	judgedFrom time.Time              // the end of the last gap in the view: no edge's silence counts from before it
	delivered  uint64                 // the highest devices-bucket revision the watcher delivered
	checked    uint64                 // delivered at the last check
	behind     int                    // checks in a row that found the watcher behind the bucket, and delivering nothing
	view       map[string]record      // by device ID
	edgeView   map[string]edgeState   // by edge ID
	listeners  []func(edge.PresenceRecord)
	watching   [2]bool   // devices, edges watchers have their initial values
	lastBeat   time.Time // last successful heartbeat put
	beatErr    error
	lost       error // why the buckets must be bound again (one went missing), or nil
	suspect    bool  // an operation got no answer: the next heartbeat checks the buckets
}

// buckets are the buckets bound, with when the devices and edges buckets
// were created: a bucket created again (the store lost it) is a new
// stream, whose revisions start over, so the watchers start again on it.
type buckets struct {
	devices, edges               jetstream.KeyValue
	lastSeen                     jetstream.KeyValue // nil when LastSeenTTL is zero
	devicesCreated, edgesCreated time.Time
}

// record is one device record with its KV revision.
type record struct {
	edge.PresenceRecord
	rev uint64
}

// edgeState is one edge as seen here: its record and when this edge last
// heard from it (local time, so that clock skew cannot kill an edge).
type edgeState struct {
	rec  edge.EdgeRecord
	seen time.Time
}

var (
	_ edge.Presence = (*Presence)(nil)
	_ edge.LastSeen = (*Presence)(nil)
)

// Start creates the buckets if need be, starts the watchers and the
// heartbeat, and waits until the view holds the buckets' current contents
// (bounded by ctx).
func (p *Presence) Start(ctx context.Context) error {
	if p.JetStream == nil || p.EdgeID == "" {
		return errors.New("cluster: Presence needs JetStream and EdgeID")
	}
	p.log = logx.Or(p.Logger)
	if p.Heartbeat <= 0 {
		p.Heartbeat = DefaultHeartbeat
	}
	if p.EdgeTTL <= 0 {
		p.EdgeTTL = DefaultEdgeTTL
	}
	if p.CleanupAfter <= 0 {
		p.CleanupAfter = DefaultCleanupAfter
	}
	b, err := p.bind(ctx)
	if err != nil {
		return err
	}
	p.bound.Store(b)
	p.view = make(map[string]record)
	p.edgeView = make(map[string]edgeState)
	p.started = time.Now()
	p.restart = make(chan struct{})
	p.ownSeen = p.started
	if err := p.beat(ctx); err != nil {
		return fmt.Errorf("cluster: announce edge %s: %w", p.EdgeID, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(3)
	go p.watchLoop(runCtx, 0)
	go p.watchLoop(runCtx, 1)
	go p.heartbeatLoop(runCtx)
	for {
		if p.Health() == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			p.Close()
			return fmt.Errorf("cluster: the presence view did not load: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// bind binds the buckets, creating those that are missing.
func (p *Presence) bind(ctx context.Context) (*buckets, error) {
	replicas := max(p.Replicas, 1)
	b := &buckets{}
	var err error
	b.devices, b.devicesCreated, err = bindBucket(ctx, p.JetStream, jetstream.KeyValueConfig{
		Bucket: DevicesBucket, Description: "tether: which edge holds each device", History: 1, Replicas: replicas,
	})
	if err != nil {
		return nil, err
	}
	if p.LastSeenTTL > 0 {
		b.lastSeen, _, err = bindBucket(ctx, p.JetStream, jetstream.KeyValueConfig{
			Bucket: LastSeenBucket, Description: "tether: devices that disconnected, and when", History: 1,
			Replicas: replicas, TTL: p.LastSeenTTL, MaxValueSize: maxLastSeenValue,
		})
		if err != nil {
			return nil, err
		}
	}
	// The edges bucket comes last: an edge that waits for the buckets
	// waits for it.
	b.edges, b.edgesCreated, err = bindBucket(ctx, p.JetStream, jetstream.KeyValueConfig{
		Bucket: EdgesBucket, Description: "tether: live edges", History: 1, Replicas: replicas, TTL: p.EdgeTTL,
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// rebind binds the buckets again after an operation found one missing:
// the store lost its state (NATS came back without it, or the bucket was
// deleted), and binding creates it. Another edge may have done so first,
// which binding finds. The watchers start again on a bucket that is not
// the one they watched.
func (p *Presence) rebind(ctx context.Context) {
	if p.Conn != nil && !p.Conn.IsConnected() {
		return // a reconnect restarts the watchers, and the next beat finds out
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	b, err := p.bind(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.lost = err // tried again at the next heartbeat
		return
	}
	old := p.bound.Swap(b)
	p.lost = nil
	if b.devicesCreated.Equal(old.devicesCreated) && b.edgesCreated.Equal(old.edgesCreated) {
		return
	}
	p.log.Warn("the presence buckets were created again (the store lost them); starting the presence watchers again")
	p.delivered, p.checked, p.behind = 0, 0, 0
	close(p.restart)
	p.restart = make(chan struct{})
	p.ownSeen = time.Now()
}

// missing notes err, of an operation on a bucket, when it says that the
// bucket may be gone. "Not found" says so for sure: the next heartbeat
// binds the buckets again, and until then the view is not current. "No
// response" is also what a write gets while NATS elects a new leader for
// the bucket (after an edge died, say): the next heartbeat checks that the
// bucket is there before the view counts as not current.
func (p *Presence) missing(err error) {
	sure := errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
	if !sure && !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) {
		return
	}
	if p.Conn != nil && !p.Conn.IsConnected() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !sure {
		p.suspect = true
		return
	}
	p.markLostLocked(err)
}

// markLostLocked makes the next heartbeat bind the buckets again, and the
// view not current until then.
func (p *Presence) markLostLocked(err error) {
	if p.lost == nil {
		p.lost = fmt.Errorf("a presence bucket is missing: %w", err)
		p.log.Warn("a presence bucket is missing; binding the buckets again", "err", err)
	}
}

// check looks up the buckets an operation found unanswering: one that is
// gone, or that was created again since it was bound, makes them lost. A
// lookup that gets no answer either leaves them as they are: NATS is
// electing a leader, or is away, which Health tells otherwise.
func (p *Presence) check(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	b := p.bound.Load()
	for _, kv := range []struct {
		kv      jetstream.KeyValue
		created time.Time
	}{{b.devices, b.devicesCreated}, {b.edges, b.edgesCreated}, {b.lastSeen, time.Time{}}} {
		if kv.kv == nil {
			continue
		}
		bs, err := kv.kv.Status(ctx)
		gone := errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
		if err != nil && !gone {
			return // no answer: nothing to tell
		}
		if err == nil && !kv.created.IsZero() {
			if info, ok := bs.(*jetstream.KeyValueBucketStatus); ok && info.StreamInfo() != nil && !info.StreamInfo().Created.Equal(kv.created) {
				gone, err = true, jetstream.ErrStreamNotFound
			}
		}
		if gone {
			p.mu.Lock()
			p.markLostLocked(err)
			p.mu.Unlock()
			return
		}
	}
}

// bucket binds the bucket cfg names: it looks it up first and creates it
// only when it is missing, since edges that start together would
// otherwise all create one replicated bucket at once (and such requests
// can go unanswered). An existing bucket whose TTL or largest value
// differs is updated (an older edge may have created it with a smaller
// one); its replica count is left as the operator set it.
func bucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, _, err := bindBucket(ctx, js, cfg)
	return kv, err
}

// bindBucket is bucket, and also returns when the bucket was created
// (zero if the server did not say).
func bindBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, bindTimeout)
	defer cancel()
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, cfg.Bucket) // another edge was first
		}
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("cluster: bind bucket %s: %w", cfg.Bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("cluster: bind bucket %s: %w", cfg.Bucket, err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		bs = nil
	}
	var created time.Time
	if bs != nil {
		created = bs.StreamInfo().Created
	}
	if st.TTL() != cfg.TTL || bs != nil && max(bs.StreamInfo().Config.MaxMsgSize, 0) != cfg.MaxValueSize {
		cfg.Replicas = 0
		if bs != nil {
			cfg.Replicas = bs.StreamInfo().Config.Replicas
		}
		if kv, err = js.UpdateKeyValue(ctx, cfg); err != nil {
			return nil, time.Time{}, fmt.Errorf("cluster: update bucket %s: %w", cfg.Bucket, err)
		}
	}
	return kv, created, nil
}

// Close stops the watchers and the heartbeat and removes this edge's key,
// so the others learn at once that it is gone. It is idempotent.
func (p *Presence) Close() error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	p.wg.Wait()
	p.stopOrphans() // those left while NATS was away go with the connection
	if p.Conn == nil || p.Conn.IsConnected() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		_ = p.bound.Load().edges.Delete(ctx, KeyFor(p.EdgeID))
	}
	p.cancel = nil
	return nil
}

// heartbeatLoop refreshes this edge's key every Heartbeat, and, on the
// lowest live edge, clears the records of long-dead edges.
func (p *Presence) heartbeatLoop(ctx context.Context) {
	defer p.wg.Done()
	t := time.NewTicker(p.Heartbeat)
	defer t.Stop()
	lastCleanup := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.RLock()
		lost := p.lost != nil
		p.mu.RUnlock()
		if lost {
			p.rebind(ctx)
		}
		bctx, cancel := context.WithTimeout(ctx, opTimeout)
		err := p.beat(bctx)
		cancel()
		p.mu.Lock()
		suspect := p.suspect
		p.suspect = false
		p.mu.Unlock()
		if suspect {
			// After the beat, which it must not delay. If a bucket is
			// lost, the next heartbeat binds them again.
			p.check(ctx)
		}
		if err != nil && ctx.Err() == nil {
			p.mu.Lock()
			first := p.beatErr == nil
			p.beatErr = err
			p.mu.Unlock()
			if first {
				p.log.Warn("cannot refresh this edge's presence; other edges will consider it dead after the TTL", "edge_ttl", p.EdgeTTL.String(), "err", err)
			}
			continue
		}
		p.checkWatchers(ctx)
		p.stopOrphans()
		if time.Since(lastCleanup) >= min(cleanupEvery, p.CleanupAfter/4) && p.isLowestLiveEdge() {
			lastCleanup = time.Now()
			p.cleanup(ctx)
		}
	}
}

// checkWatchers starts both watchers again after a reconnect to NATS;
// when the edges watcher has not delivered this edge's own heartbeats for
// two of them and a quarter although they were written; and when the
// devices watcher stayed behind the bucket for two checks without
// delivering anything in between. After a reconnect, or when the node that
// served a watcher dies, a watcher can go quiet without closing; one that
// delivers is only busy (a bucket written without pause is always a little
// ahead of it), and starting it again would replay the whole bucket.
func (p *Presence) checkWatchers(ctx context.Context) {
	behind := p.devicesBehind(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	reconnected := false
	if p.Conn != nil {
		if n := p.Conn.Stats().Reconnects; n != p.reconnects {
			p.reconnects, reconnected = n, true
		}
	}
	if behind && p.delivered == p.checked {
		p.behind++
	} else {
		p.behind = 0
	}
	p.checked = p.delivered
	switch {
	case reconnected:
		p.log.Info("reconnected to NATS; starting the presence watchers again")
	case p.behind >= 2:
		p.log.Warn("the devices watcher fell behind the bucket; starting the presence watchers again")
	case p.beatErr != nil || now.Sub(p.ownSeen) < p.quietAfter():
		return
	default:
		p.log.Warn("the presence watchers went quiet; starting them again", "quiet_for", now.Sub(p.ownSeen).Round(time.Millisecond).String())
	}
	p.behind = 0
	close(p.restart)
	p.restart = make(chan struct{})
	p.ownSeen = now
}

// devicesBehind reports whether the devices bucket holds writes beyond
// the last one its watcher delivered. Behind at two checks in a row (a
// heartbeat apart) with nothing delivered in between, the watcher is
// stuck: a node that served it died.
func (p *Presence) devicesBehind(ctx context.Context) bool {
	sctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	b := p.bound.Load()
	st, err := b.devices.Status(sctx)
	if err != nil {
		p.missing(err)
		return false
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return false
	}
	if !b.devicesCreated.IsZero() && !bs.StreamInfo().Created.Equal(b.devicesCreated) {
		// Another edge created the bucket again: bind it, and watch it
		// from its start.
		p.missing(jetstream.ErrStreamNotFound)
		return false
	}
	p.mu.RLock()
	delivered := p.delivered
	p.mu.RUnlock()
	return bs.StreamInfo().State.LastSeq > delivered
}

// beat puts this edge's key.
func (p *Presence) beat(ctx context.Context) error {
	rec := edge.EdgeRecord{ID: p.EdgeID, Advertise: p.Advertise, Started: p.started, Seen: time.Now()}
	b, _ := json.Marshal(rec)
	if _, err := p.bound.Load().edges.Put(ctx, KeyFor(p.EdgeID), b); err != nil {
		p.missing(err)
		return err
	}
	p.mu.Lock()
	if p.beatErr != nil {
		p.log.Info("this edge's presence is refreshed again")
	}
	p.lastBeat, p.beatErr = time.Now(), nil
	p.mu.Unlock()
	return nil
}

// watchLoop keeps a watcher on kv running: after the watcher stops (the
// connection to NATS was lost and the consumer went with it) it starts a
// new one, which replays the bucket's current contents.
func (p *Presence) watchLoop(ctx context.Context, which int) {
	defer p.wg.Done()
	delay := 50 * time.Millisecond
	for ctx.Err() == nil {
		p.mu.RLock()
		restart := p.restart
		p.mu.RUnlock()
		wctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(ctx, cancel)
		go func() {
			select {
			case <-restart:
				cancel()
			case <-wctx.Done():
			}
		}()
		kv := p.bound.Load().devices
		if which == 1 {
			kv = p.bound.Load().edges
		}
		err := p.watch(wctx, which, kv)
		stop()
		cancel()
		p.mu.Lock()
		p.watching[which] = false
		p.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, context.Canceled) {
			delay = 0 // asked to start again
		}
		p.log.Warn("presence watcher stopped; starting it again", "bucket", kv.Bucket(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-restart: // the bucket was bound again
		case <-time.After(delay):
		}
		delay = min(max(2*delay, 50*time.Millisecond), 2*time.Second)
	}
}

// stopWatcher stops w without holding up the watcher that replaces it:
// stopping asks the server, which may wait out a timeout when the node
// that served the watcher is gone. While NATS is away entirely, w is
// stopped once it is back.
func (p *Presence) stopWatcher(w jetstream.KeyWatcher) {
	if p.Conn == nil || p.Conn.IsConnected() {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			_ = w.Stop()
		}()
		return
	}
	p.mu.Lock()
	p.orphans = append(p.orphans, w)
	p.mu.Unlock()
}

// stopOrphans stops the watchers left while NATS was away, once it is
// back.
func (p *Presence) stopOrphans() {
	if p.Conn != nil && !p.Conn.IsConnected() {
		return
	}
	p.mu.Lock()
	orphans := p.orphans
	p.orphans = nil
	p.mu.Unlock()
	for _, w := range orphans {
		_ = w.Stop()
	}
}

// watch runs one watcher until it stops or ctx ends.
func (p *Presence) watch(ctx context.Context, which int, kv jetstream.KeyValue) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		p.missing(err)
		return err
	}
	defer p.stopWatcher(w)
	fresh := map[string]bool{} // keys replayed before the initial-values marker
	initial := true
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			if e == nil {
				// The bucket's current contents are in: forget what this
				// replay did not mention (deleted while we were away).
				p.mu.Lock()
				if which == 0 {
					for id := range p.view {
						if !fresh[KeyFor(id)] {
							rec := p.view[id]
							delete(p.view, id)
							p.notifyLocked(edge.PresenceRecord{ID: id, Edge: rec.Edge, Nonce: rec.Nonce, Deleted: true})
						}
					}
				} else {
					for id := range p.edgeView {
						if !fresh[KeyFor(id)] && id != p.EdgeID {
							delete(p.edgeView, id)
						}
					}
				}
				p.watching[which] = true
				p.mu.Unlock()
				initial, fresh = false, nil
				continue
			}
			if initial {
				fresh[e.Key()] = true
			}
			if which == 0 {
				p.applyDevice(e)
			} else {
				p.applyEdge(e)
			}
		}
	}
}

func (p *Presence) applyDevice(e jetstream.KeyValueEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delivered = max(p.delivered, e.Revision())
	id, err := IDFromKey(e.Key())
	if err != nil {
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		if old, ok := p.view[id]; ok {
			delete(p.view, id)
			p.notifyLocked(edge.PresenceRecord{ID: id, Edge: old.Edge, Nonce: old.Nonce, Revision: e.Revision(), Deleted: true})
		}
		return
	}
	var rec edge.PresenceRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.ID != id {
		p.log.Warn("ignoring a malformed device record", "key", e.Key())
		return
	}
	rec.Revision = e.Revision()
	p.view[id] = record{PresenceRecord: rec, rev: e.Revision()}
	p.notifyLocked(rec)
}

func (p *Presence) applyEdge(e jetstream.KeyValueEntry) {
	id, err := IDFromKey(e.Key())
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(p.edgeView, id)
		return
	}
	var rec edge.EdgeRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.ID != id {
		return
	}
	now := time.Now()
	p.edgeView[id] = edgeState{rec: rec, seen: now}
	if id == p.EdgeID {
		if !p.ownLast.IsZero() && now.Sub(p.ownLast) > p.quietAfter() {
			// This edge's own heartbeats did not arrive for a while: the
			// process was stopped, or the view was cut off. The other
			// edges' silence meanwhile proves nothing.
			p.judgedFrom = now
		}
		p.ownSeen, p.ownLast = now, now
	}
}

// quietAfter is how long this edge's own heartbeats may fail to arrive
// before the view counts as stale.
func (p *Presence) quietAfter() time.Duration {
	return 2*p.Heartbeat + p.Heartbeat/4
}

// silentLocked returns how long edge st has not been heard from, as far
// as the view can tell: not counting a gap in the view, and zero while
// the view is stale. Edges are judged by the view's own clock, so that a
// view that stopped (its process stopped, its watchers cut off) does not
// find every other edge dead, and remove their records, when it resumes.
func (p *Presence) silentLocked(st edgeState, now time.Time) time.Duration {
	if !p.ownLast.IsZero() && now.Sub(p.ownLast) > p.quietAfter() {
		return 0
	}
	if st.seen.Before(p.judgedFrom) {
		return now.Sub(p.judgedFrom)
	}
	return now.Sub(st.seen)
}

func (p *Presence) notifyLocked(rec edge.PresenceRecord) {
	for _, fn := range p.listeners {
		fn(rec)
	}
}

// aliveLocked reports whether edge id announced itself within EdgeTTL,
// as silentLocked counts.
func (p *Presence) aliveLocked(id string, now time.Time) bool {
	if id == p.EdgeID {
		return true
	}
	st, ok := p.edgeView[id]
	return ok && p.silentLocked(st, now) < p.EdgeTTL
}

// Announce implements edge.Presence.
func (p *Presence) Announce(ctx context.Context, rec edge.PresenceRecord) (uint64, error) {
	rec.Edge = p.EdgeID
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	rev, err := p.bound.Load().devices.Put(ctx, KeyFor(rec.ID), b)
	if err != nil {
		p.missing(err)
		return 0, fmt.Errorf("%w: announce device %s: %v", edge.ErrClusterUnavailable, rec.ID, err)
	}
	return rev, nil
}

// Reannounce implements edge.Presence. The write is conditional on the
// key: it must still hold revision prev, or have been deleted since (or
// be absent: the bucket was created again).
func (p *Presence) Reannounce(ctx context.Context, rec edge.PresenceRecord, prev uint64) (uint64, error) {
	rec.Edge = p.EdgeID
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	devices := p.bound.Load().devices
	rev, err := devices.Update(ctx, KeyFor(rec.ID), b, prev)
	if conflict(err) {
		// Not at prev: Create succeeds where the last write is a delete.
		rev, err = devices.Create(ctx, KeyFor(rec.ID), b)
		if conflict(err) {
			return 0, fmt.Errorf("reannounce device %s: %w", rec.ID, edge.ErrRecordReplaced)
		}
	}
	if err != nil {
		p.missing(err)
		return 0, fmt.Errorf("%w: announce device %s: %v", edge.ErrClusterUnavailable, rec.ID, err)
	}
	return rev, nil
}

// Age implements edge.Presence.
func (p *Presence) Age() time.Duration {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return time.Since(p.ownSeen)
}

// Withdraw implements edge.Presence: the record is deleted only if it
// still names this edge and nonce, so a newer session's record stays.
func (p *Presence) Withdraw(ctx context.Context, id, nonce string) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	devices := p.bound.Load().devices
	e, err := devices.Get(ctx, KeyFor(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		p.missing(err)
		return fmt.Errorf("%w: withdraw device %s: %v", edge.ErrClusterUnavailable, id, err)
	}
	var rec edge.PresenceRecord
	if json.Unmarshal(e.Value(), &rec) != nil || rec.Edge != p.EdgeID || rec.Nonce != nonce {
		return nil
	}
	err = devices.Delete(ctx, KeyFor(id), jetstream.LastRevision(e.Revision()))
	if err != nil && !conflict(err) {
		p.missing(err)
		return fmt.Errorf("%w: withdraw device %s: %v", edge.ErrClusterUnavailable, id, err)
	}
	return nil
}

// conflict reports whether err is a conditional write's refusal: the key
// is not at the revision the write expected. A replicated bucket answers
// with another error code than a single server's.
func conflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Lookup implements edge.Presence.
func (p *Presence) Lookup(id string) (edge.PresenceRecord, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	r, ok := p.view[id]
	if !ok || !p.aliveLocked(r.Edge, time.Now()) {
		return edge.PresenceRecord{}, false
	}
	return r.PresenceRecord, true
}

// List implements edge.Presence.
func (p *Presence) List() []edge.PresenceRecord {
	p.mu.RLock()
	now := time.Now()
	out := make([]edge.PresenceRecord, 0, len(p.view))
	for _, r := range p.view {
		if p.aliveLocked(r.Edge, now) {
			out = append(out, r.PresenceRecord)
		}
	}
	p.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Edges implements edge.Presence.
func (p *Presence) Edges() []edge.EdgeRecord {
	p.mu.RLock()
	now := time.Now()
	out := []edge.EdgeRecord{}
	for id, st := range p.edgeView {
		if p.aliveLocked(id, now) {
			out = append(out, st.rec)
		}
	}
	p.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Health implements edge.Presence.
func (p *Presence) Health() error {
	if p.Conn != nil && !p.Conn.IsConnected() {
		return fmt.Errorf("%w: not connected to NATS (%v)", edge.ErrClusterUnavailable, p.Conn.Status())
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	switch {
	case p.lost != nil:
		return fmt.Errorf("%w: %v", edge.ErrClusterUnavailable, p.lost)
	case !p.watching[0] || !p.watching[1]:
		return fmt.Errorf("%w: the presence watchers are starting again", edge.ErrClusterUnavailable)
	case p.beatErr != nil && time.Since(p.lastBeat) >= p.EdgeTTL:
		return fmt.Errorf("%w: this edge's presence could not be refreshed for %v: %v", edge.ErrClusterUnavailable,
			time.Since(p.lastBeat).Round(time.Second), p.beatErr)
	}
	return nil
}

// OnRecord implements edge.Presence.
func (p *Presence) OnRecord(fn func(edge.PresenceRecord)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.listeners = append(p.listeners, fn)
}

// isLowestLiveEdge reports whether this edge has the lowest ID among the
// live ones: that edge alone clears dead records, so the cluster does not
// write them several times over.
func (p *Presence) isLowestLiveEdge() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	now := time.Now()
	for id := range p.edgeView {
		if id < p.EdgeID && p.aliveLocked(id, now) {
			return false
		}
	}
	return true
}

// cleanup deletes the records of edges dead for CleanupAfter, unless a
// newer record replaced them meanwhile.
func (p *Presence) cleanup(ctx context.Context) {
	p.mu.RLock()
	now := time.Now()
	var stale []record
	for _, r := range p.view {
		if p.aliveLocked(r.Edge, now) {
			continue
		}
		if st, ok := p.edgeView[r.Edge]; ok && p.silentLocked(st, now) < p.CleanupAfter {
			continue
		}
		if now.Sub(p.started) < p.CleanupAfter { // this edge may not have seen the other's last beats
			continue
		}
		stale = append(stale, r)
	}
	p.mu.RUnlock()
	for _, r := range stale {
		dctx, cancel := context.WithTimeout(ctx, opTimeout)
		err := p.bound.Load().devices.Delete(dctx, KeyFor(r.ID), jetstream.LastRevision(r.rev))
		cancel()
		if err == nil {
			p.log.Info("removed the record of a device whose edge is gone", "device", r.ID, "edge", r.Edge)
		}
	}
}

// KeyFor returns the KV key of an ID. NATS keys allow only letters,
// digits and -/_=. (and the dot separates subject tokens), so every other
// byte, and '=' and '.', is written as '=' and two hex digits. The mapping
// is reversible (IDFromKey) and keeps plain IDs readable.
func KeyFor(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "=%02X", c)
	}
	return b.String()
}

// IDFromKey reverses KeyFor.
func IDFromKey(key string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c != '=' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(key) {
			return "", fmt.Errorf("cluster: malformed key %q", key)
		}
		var v byte
		for _, h := range key[i+1 : i+3] {
			switch {
			case h >= '0' && h <= '9':
				v = v<<4 | byte(h-'0')
			case h >= 'A' && h <= 'F':
				v = v<<4 | byte(h-'A'+10)
			default:
				return "", fmt.Errorf("cluster: malformed key %q", key)
			}
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String(), nil
}
