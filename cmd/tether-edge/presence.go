package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/edge/cluster"
	"github.com/tetherhq/tether/transport"
)

// Presence start-up: each attempt is bounded by presenceStartTimeout; the
// attempts are spaced by a transport.Backoff with these bounds.
const (
	presenceStartTimeout = 5 * time.Second
	presenceRetryInitial = time.Second
	presenceRetryMax     = 10 * time.Second
)

// clusterRuntime is what a clustered edge runs beside edge.Server: NATS
// (embedded or a connection to an external cluster) and the device
// presence, which it starts in the background and keeps retrying until
// the cluster state is reachable. The edge serves its local devices
// meanwhile. Close stops all of it.
type clusterRuntime struct {
	settings *clusterSettings
	peerCert *certs.FileCert
	lastSeen time.Duration // devices.last_seen_ttl: the last-seen bucket's TTL
	log      *slog.Logger
	presence *lazyPresence
	js       jetstream.JetStream
	stopNATS func()
	cancel   context.CancelFunc
	done     chan struct{} // closed when the start loop has returned

	closeOnce sync.Once
}

// startCluster starts NATS and, in the background, the presence. It fails
// only when NATS itself cannot be set up (an embedded server that cannot
// listen); an unreachable cluster is retried.
func startCluster(c *clusterSettings, lastSeenTTL time.Duration, log *slog.Logger) (*clusterRuntime, error) {
	// The peer certificate's files are read again at the first handshake
	// after they change, for the peer sessions and the NATS routes alike:
	// a renewal needs no restart, and what is connected stays.
	peerCert, err := certs.NewFileCert(c.PeerCertFile, c.PeerKeyFile, "peer certificate", log)
	if err != nil {
		return nil, fmt.Errorf("%w (check cluster.peer_cert)", err)
	}
	if err := peerCert.Verify(peerCertCheck(c.PeerCA, c.EdgeID)); err != nil {
		return nil, fmt.Errorf("%w (check cluster.peer_cert)", err)
	}
	n, err := startNATS(c, peerCert, log)
	if err != nil {
		return nil, err
	}
	// A request that a dead node would have answered times out in 2 s,
	// not the library's 5 s: presence must move on quickly.
	js, err := jetstream.New(n.conn, jetstream.WithDefaultTimeout(2*time.Second))
	if err != nil {
		n.stop()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &clusterRuntime{
		settings: c,
		peerCert: peerCert,
		lastSeen: lastSeenTTL,
		log:      log,
		presence: &lazyPresence{created: time.Now()},
		js:       js,
		stopNATS: n.stop,
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	go r.startPresence(ctx, js, n)
	return r, nil
}

// edgeCluster is the edge.Cluster for edge.Server.
func (r *clusterRuntime) edgeCluster() *edge.Cluster {
	c := r.settings
	return &edge.Cluster{
		EdgeID:       c.EdgeID,
		Presence:     r.presence,
		PeerCA:       c.PeerCA,
		PeerCert:     c.PeerCert,
		TakeoverHold: c.TakeoverHold,

		GetPeerCertificate: r.peerCert.Certificate,
	}
}

// webRevocations is the web terminal's sign-outs, shared by the edges of
// the cluster; lifetime is the sessions' (web.session_lifetime).
func (r *clusterRuntime) webRevocations(lifetime time.Duration) edge.WebRevocations {
	return &cluster.WebRevocations{JetStream: r.js, Replicas: r.settings.Replicas, TTL: lifetime}
}

// webTickets is the web terminal's used tickets, shared by the edges of
// the cluster.
func (r *clusterRuntime) webTickets() edge.WebTickets {
	return &cluster.WebTickets{JetStream: r.js, Replicas: r.settings.Replicas}
}

// webLeases counts each identity's web terminals on all the edges of the
// cluster.
func (r *clusterRuntime) webLeases() edge.WebTerminalLeases {
	return &cluster.WebTerminalLeases{JetStream: r.js, Replicas: r.settings.Replicas, Edge: r.settings.EdgeID}
}

// startPresence starts a cluster.Presence, again and again until one
// starts or ctx ends. The first failure is logged as a warning, the rest
// at debug level. Each attempt first waits for JetStream to answer (see
// natsConn.current) and, the first time, for the buckets (see
// awaitBuckets); each wait and the start itself are bounded by
// presenceStartTimeout.
func (r *clusterRuntime) startPresence(ctx context.Context, js jetstream.JetStream, n *natsConn) {
	defer close(r.done)
	c := r.settings
	bo := transport.Backoff{Initial: presenceRetryInitial, Max: presenceRetryMax}
	for attempt := 1; ; attempt++ {
		p := &cluster.Presence{JetStream: js, Conn: n.conn, EdgeID: c.EdgeID, Advertise: c.Advertise,
			Replicas: c.Replicas, LastSeenTTL: r.lastSeen, Logger: r.log}
		registered := r.presence.prepare(p)
		wctx, cancel := context.WithTimeout(ctx, presenceStartTimeout)
		err := waitCurrent(wctx, n.current)
		if err == nil && attempt == 1 && c.Embedded != nil && len(c.Embedded.Routes) > 0 {
			awaitBuckets(wctx, js, n, c.Replicas)
		}
		cancel()
		if err == nil {
			sctx, cancel := context.WithTimeout(ctx, presenceStartTimeout)
			err = p.Start(sctx)
			cancel()
		}
		if err == nil {
			if !r.presence.set(p, registered) {
				_ = p.Close() // the edge is shutting down
				return
			}
			r.log.Info("joined the cluster state", "edge_id", c.EdgeID, "advertise", c.Advertise,
				"replicas", c.Replicas, "attempts", attempt)
			return
		}
		if ctx.Err() != nil {
			return
		}
		r.presence.failed(err)
		if attempt == 1 {
			r.log.Warn("cluster state unavailable; serving local devices and retrying in the background", "err", err)
		} else {
			r.log.Debug("cluster state still unavailable", "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(bo.Next()):
		}
	}
}

// waitCurrent waits until current reports true.
func waitCurrent(ctx context.Context, current func() bool) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !current() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the embedded NATS servers have not elected a JetStream leader (are enough of the other edges running? see cluster.nats.embedded.routes): %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// awaitBuckets lets the edge whose embedded server leads JetStream create
// the buckets first, once replicas servers are up to hold them: when edges
// that start together create the same replicated bucket at once, NATS
// answers none of the requests, and every edge waits out its timeout. The
// others wait until the edges bucket (created last) exists. Either wait
// ends with ctx; the edge then goes on regardless.
func awaitBuckets(ctx context.Context, js jetstream.JetStream, n *natsConn, replicas int) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if n.leads() {
			if n.serversUp() >= replicas {
				return
			}
		} else if _, err := js.KeyValue(ctx, cluster.EdgesBucket); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close stops the start loop, closes the presence (which deletes this
// edge's key, so the other edges learn at once that it left) and then
// NATS. It is idempotent. The edge must be drained first: its devices'
// records are withdrawn through the presence.
func (r *clusterRuntime) Close() {
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.done
		if p := r.presence.close(); p != nil {
			_ = p.Close()
			r.log.Info("left the cluster state", "edge_id", r.settings.EdgeID)
		}
		r.stopNATS()
	})
}

// errShuttingDown is why a presence that was closed before it started
// never will.
var errShuttingDown = errors.New("the edge is shutting down")

// lazyPresence is the edge's Presence while the real one may not have
// started yet: until it has, the cluster state is unavailable (lookups find
// nothing, announcements fail with edge.ErrClusterUnavailable and Health
// says why), and callbacks registered meanwhile are handed on to it.
type lazyPresence struct {
	created time.Time
	cur     atomic.Pointer[cluster.Presence] // nil until started

	mu sync.Mutex
	// mu guards the following.
	listeners []func(edge.PresenceRecord)
	lastErr   error // why the last start failed
	closed    bool
}

var (
	_ edge.Presence = (*lazyPresence)(nil)
	_ edge.LastSeen = (*lazyPresence)(nil)
)

// prepare registers the callbacks known so far on p, before p starts, and
// returns how many it registered.
func (l *lazyPresence) prepare(p *cluster.Presence) int {
	l.mu.Lock()
	fns := slices.Clone(l.listeners)
	l.mu.Unlock()
	for _, fn := range fns {
		p.OnRecord(fn)
	}
	return len(fns)
}

// set makes p, started, the presence, after registering the callbacks
// added since prepare. It reports false once close was called.
func (l *lazyPresence) set(p *cluster.Presence, registered int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	for _, fn := range l.listeners[registered:] {
		p.OnRecord(fn)
	}
	l.cur.Store(p)
	l.lastErr = nil
	return true
}

func (l *lazyPresence) failed(err error) {
	l.mu.Lock()
	l.lastErr = err
	l.mu.Unlock()
}

// close marks l closed and returns the started presence, if any.
func (l *lazyPresence) close() *cluster.Presence {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.lastErr == nil {
		l.lastErr = errShuttingDown
	}
	return l.cur.Load()
}

// unavailable is the error of every call made before the presence started.
func (l *lazyPresence) unavailable() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lastErr != nil {
		return fmt.Errorf("%w: not joined yet: %v", edge.ErrClusterUnavailable, l.lastErr)
	}
	return fmt.Errorf("%w: joining the cluster", edge.ErrClusterUnavailable)
}

// Announce implements edge.Presence.
func (l *lazyPresence) Announce(ctx context.Context, rec edge.PresenceRecord) (uint64, error) {
	if p := l.cur.Load(); p != nil {
		return p.Announce(ctx, rec)
	}
	return 0, l.unavailable()
}

// Reannounce implements edge.Presence.
func (l *lazyPresence) Reannounce(ctx context.Context, rec edge.PresenceRecord, prev uint64) (uint64, error) {
	if p := l.cur.Load(); p != nil {
		return p.Reannounce(ctx, rec, prev)
	}
	return 0, l.unavailable()
}

// Withdraw implements edge.Presence.
func (l *lazyPresence) Withdraw(ctx context.Context, id, nonce string) error {
	if p := l.cur.Load(); p != nil {
		return p.Withdraw(ctx, id, nonce)
	}
	return l.unavailable()
}

// Lookup implements edge.Presence.
func (l *lazyPresence) Lookup(id string) (edge.PresenceRecord, bool) {
	if p := l.cur.Load(); p != nil {
		return p.Lookup(id)
	}
	return edge.PresenceRecord{}, false
}

// List implements edge.Presence.
func (l *lazyPresence) List() []edge.PresenceRecord {
	if p := l.cur.Load(); p != nil {
		return p.List()
	}
	return nil
}

// Edges implements edge.Presence.
func (l *lazyPresence) Edges() []edge.EdgeRecord {
	if p := l.cur.Load(); p != nil {
		return p.Edges()
	}
	return []edge.EdgeRecord{}
}

// Health implements edge.Presence.
func (l *lazyPresence) Health() error {
	if p := l.cur.Load(); p != nil {
		return p.Health()
	}
	return l.unavailable()
}

// Age implements edge.Presence: before the presence started, the view has
// not heard from the store since the edge started.
func (l *lazyPresence) Age() time.Duration {
	if p := l.cur.Load(); p != nil {
		return p.Age()
	}
	return time.Since(l.created)
}

// OnRecord implements edge.Presence.
func (l *lazyPresence) OnRecord(fn func(edge.PresenceRecord)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listeners = append(l.listeners, fn)
	if p := l.cur.Load(); p != nil {
		p.OnRecord(fn)
	}
}

// RecordLastSeen implements edge.LastSeen.
func (l *lazyPresence) RecordLastSeen(ctx context.Context, rec edge.LastSeenRecord) error {
	if p := l.cur.Load(); p != nil {
		return p.RecordLastSeen(ctx, rec)
	}
	return l.unavailable()
}

// ListLastSeen implements edge.LastSeen.
func (l *lazyPresence) ListLastSeen(ctx context.Context) ([]edge.LastSeenRecord, error) {
	if p := l.cur.Load(); p != nil {
		return p.ListLastSeen(ctx)
	}
	return nil, l.unavailable()
}
