package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/internal/workers"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// peerSet keeps one session with every other live edge. Of each pair, the
// edge with the lower ID dials the other; both open streams on the one
// session (smux lets either side open), and both accept them.
type peerSet struct {
	s   *Server
	cfg *transport.Config

	mu sync.Mutex
	// mu guards the following.
	sessions map[string]*transport.Session // by edge ID
	dialing  map[string]bool
	backoff  map[string]*peerBackoff
	lost     map[string]time.Time // when the session with an edge ended, until a new one
}

// peerBackoff spaces the dials to one edge that does not answer.
type peerBackoff struct {
	bo   transport.Backoff
	next time.Time
}

// peerTick is how often the set compares its sessions with the live edges;
// peerWait how long an open waits for the session with an edge that has
// none yet.
// lostForget is how long an edge whose session ended is remembered as
// lost (an open does not wait for it).
const (
	peerTick   = 250 * time.Millisecond
	peerWait   = 3 * time.Second
	lostForget = 10 * time.Minute
)

func newPeerSet(s *Server) *peerSet {
	cfg := s.Cluster.PeerTransport
	if cfg == nil {
		cfg = DefaultPeerTransport()
	}
	return &peerSet{s: s, cfg: cfg, sessions: make(map[string]*transport.Session),
		dialing: make(map[string]bool), backoff: make(map[string]*peerBackoff), lost: make(map[string]time.Time)}
}

// session returns the live session with edge id, or nil.
func (p *peerSet) session(id string) *transport.Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	sess := p.sessions[id]
	if sess == nil {
		return nil
	}
	select {
	case <-sess.Done():
		return nil
	default:
		return sess
	}
}

// await returns the live session with edge id, waiting within ctx and
// peerWait for one: a peer that just joined may not be dialed yet. It
// does not wait for an edge whose session ended: that edge died or hangs.
func (p *peerSet) await(ctx context.Context, id string) *transport.Session {
	if sess := p.session(id); sess != nil {
		return sess
	}
	p.mu.Lock()
	_, lost := p.lost[id]
	p.mu.Unlock()
	if lost {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, peerWait)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if sess := p.session(id); sess != nil {
				return sess
			}
		}
	}
}

// live returns the edges with a live session, but for except, by ID.
func (p *peerSet) live(except string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for id, sess := range p.sessions {
		select {
		case <-sess.Done():
		default:
			if id != except {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// lostSince reports whether a peer session ended within d: its edge's
// devices are re-homing, and presence may not show it yet.
func (p *peerSet) lostSince(d time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.lost {
		if time.Since(t) < d {
			return true
		}
	}
	return false
}

// up returns how many peer sessions are live.
func (p *peerSet) up() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, sess := range p.sessions {
		select {
		case <-sess.Done():
		default:
			n++
		}
	}
	return n
}

// run dials the edges this one must dial until ctx ends.
func (p *peerSet) run(ctx context.Context) {
	t := time.NewTicker(peerTick)
	defer t.Stop()
	for {
		p.dialMissing(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// dialMissing starts a dial to every live edge with a higher ID that has
// no session and none being dialed.
func (p *peerSet) dialMissing(ctx context.Context) {
	self := p.s.Cluster.EdgeID
	p.mu.Lock()
	for id, t := range p.lost {
		if time.Since(t) > lostForget {
			delete(p.lost, id)
		}
	}
	p.mu.Unlock()
	for _, e := range p.s.Cluster.Presence.Edges() {
		if e.ID <= self || e.Advertise == "" {
			continue
		}
		p.mu.Lock()
		bo := p.backoff[e.ID]
		if bo == nil {
			bo = &peerBackoff{bo: transport.Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second}}
			p.backoff[e.ID] = bo
		}
		skip := p.dialing[e.ID] || p.sessions[e.ID] != nil || time.Now().Before(bo.next)
		if !skip {
			p.dialing[e.ID] = true
		}
		p.mu.Unlock()
		if skip {
			continue
		}
		p.s.wg.Add(1)
		go func() {
			defer p.s.wg.Done()
			p.dial(ctx, e, bo)
		}()
	}
}

// dial opens the session with edge e and serves it until it ends.
func (p *peerSet) dial(ctx context.Context, e EdgeRecord, bo *peerBackoff) {
	c := p.s.Cluster
	var served *x509.Certificate // the peer's certificate, for the log
	tc := &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.peerCertificate()
		},
		RootCAs:    c.PeerCA,
		ServerName: e.ID, // a peer certificate names its edge ID
		VerifyConnection: func(cs tls.ConnectionState) error {
			served = cs.PeerCertificates[0] // verified already
			return nil
		},
	}
	u := strings.TrimSuffix(e.Advertise, "/") + "/peer"
	sess, err := transport.Dial(ctx, u, "", tc, p.cfg)
	p.mu.Lock()
	delete(p.dialing, e.ID)
	if err != nil {
		bo.next = time.Now().Add(bo.bo.Next())
		p.mu.Unlock()
		if ctx.Err() == nil {
			p.s.log.Warn("cannot reach a peer edge; retrying", "edge", e.ID, "url", u, "err", err)
		}
		return
	}
	bo.bo.Reset()
	p.mu.Unlock()
	p.serve(e.ID, served, sess)
}

// serve registers sess as the session with edge id (closing an older
// one), accepts the streams the peer opens on it, and unregisters it when
// it ends. cert is the certificate the peer presented.
func (p *peerSet) serve(id string, cert *x509.Certificate, sess *transport.Session) {
	sess.SetPeerName("edge " + id)
	if !p.s.track(sess) {
		sess.Close()
		return
	}
	defer p.s.untrack(sess)
	p.mu.Lock()
	old := p.sessions[id]
	p.sessions[id] = sess
	delete(p.lost, id)
	p.mu.Unlock()
	if old != nil {
		old.Close()
	}
	p.s.log.Info("peer session up", "edge", id, "remote", sess.RemoteAddr().String(),
		"peer_cert_serial", certs.SerialHex(cert), "peer_cert_not_after", cert.NotAfter.UTC().Format(time.RFC3339))
	// The session's streams end with it: an open that waits for its
	// device's answer gives up once the client's edge is gone, as a
	// client's own stream does with its session.
	ctx, cancel := context.WithCancel(p.s.ctx)
	defer cancel()
	stop := context.AfterFunc(sess.Context(), cancel)
	defer stop()
	// The session's streams run on goroutines that serve one after
	// another (workers.Pool): a goroutine of its own per stream started
	// small and grew, copying its stack several times, on every open, on
	// the open's critical path (about a tenth of the device's edge's CPU
	// time in BenchmarkClusterCrossEdge).
	streams := &workers.Pool[*transport.Stream]{Idle: peerWorkerIdle, Run: func(st *transport.Stream) {
		defer p.s.active.Add(-1)
		p.s.servePeerStream(ctx, id, st)
	}}
	for {
		st, err := sess.Accept()
		if err != nil {
			break
		}
		p.s.active.Add(1)
		streams.Go(st)
	}
	sess.Close()
	p.mu.Lock()
	if p.sessions[id] == sess {
		delete(p.sessions, id)
		p.lost[id] = time.Now()
	}
	p.mu.Unlock()
	streams.Close()
	reason := "closed"
	if err := sess.Err(); err != nil {
		reason = err.Error()
	}
	p.s.log.Warn("peer session down", "edge", id, "reason", reason)
}

// peerWorkerIdle is how long a peer stream's goroutine waits for the
// session's next stream before it ends.
const peerWorkerIdle = 5 * time.Second

// servePeer upgrades another edge's peer session: the peer listener has
// verified its certificate against PeerCA; the edge ID is its CN.
func (s *Server) servePeer(w http.ResponseWriter, r *http.Request) {
	s.init()
	if s.Cluster == nil || r.URL.Path != "/peer" {
		http.NotFound(w, r)
		return
	}
	var chain []*x509.Certificate
	if r.TLS != nil {
		chain = r.TLS.PeerCertificates
	}
	id, err := certs.VerifyPeer(chain, s.Cluster.PeerCA, time.Now())
	if err != nil {
		s.refuse(w, r, http.StatusForbidden, "bad_peer", "peer certificate rejected: "+err.Error())
		return
	}
	if id == s.Cluster.EdgeID {
		s.refuse(w, r, http.StatusConflict, "bad_peer", "a peer presented this edge's own ID "+id)
		return
	}
	if s.isDraining() {
		s.refuse(w, r, http.StatusServiceUnavailable, "draining", "the edge is shutting down")
		return
	}
	sess, err := transport.Upgrade(w, r, s.peers.cfg)
	if err != nil {
		s.log.Warn("peer upgrade failed", "edge", id, "remote", r.RemoteAddr, "err", err)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.peers.serve(id, chain[0], sess)
	}()
}

// servePeerStream serves a stream another edge opened for its client: the
// edge checks the policy again, applies its own per-device limits and
// audit, and opens the device's stream. A device that is not here (it
// moved, or this edge is draining) is answered GoAway, so the client's
// edge looks again. ctx ends with the peer session.
func (s *Server) servePeerStream(ctx context.Context, peer string, st *transport.Stream) {
	defer st.Close()
	start := time.Now()
	ev := Event{Kind: EventStreamDeny, Peer: peer}
	deny := func(result, reason string, moved bool) {
		s.answerRefusal(st, ev, &refusal{result: result, reason: reason, moved: moved}, true)
	}
	_ = st.SetReadDeadline(time.Now().Add(s.tcfg.OpenTimeout))
	m, err := wire.ReadMessage(st)
	if err == nil && m.Type == wire.MsgPeerRecordings {
		s.servePeerRecordings(peer, st, m.Payload)
		return
	}
	if err != nil || m.Type != wire.MsgPeerOpen {
		s.log.Debug("peer stream without a peer open", "edge", peer, "err", err, "type", m.Type.String())
		return
	}
	hdr, err := wire.DecodePeerOpen(m.Payload)
	if err != nil {
		ev.Type = "unknown"
		deny("invalid", err.Error(), false)
		return
	}
	ev.Client, ev.Device, ev.RemoteAddr = hdr.Client, hdr.Device, hdr.Remote
	inner, err := wire.ReadMessage(st)
	if err != nil {
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	ev.Type = typeWord(inner.Type)
	switch {
	case hdr.Via != peer:
		deny("invalid", fmt.Sprintf("edge %s sent a stream on behalf of edge %s", peer, hdr.Via), false)
		return
	case !knownMethod(hdr.Method):
		deny("invalid", fmt.Sprintf("edge %s sent a stream of a client signed in by %q, a method this edge does not know", peer, hdr.Method), false)
		return
	case s.isDraining():
		deny("draining", fmt.Sprintf("edge %s is shutting down; device %s is moving", s.Cluster.EdgeID, hdr.Device), true)
		return
	}
	req, payload, err := canonical(inner)
	if err != nil {
		deny("invalid", err.Error(), false)
		return
	}
	if err := describeRequest(&ev, req, inner); err != nil {
		deny("invalid", err.Error(), false)
		return
	}
	id := Identity{Name: hdr.Client, Method: hdr.Method, Groups: hdr.Groups}
	ev.Auth = id.method()
	pol := s.auth.Load().policy
	dev := s.deviceRef(pol, hdr.Device)
	if err := pol.Authorize(id, dev, req); err != nil {
		deny("denied", err.Error(), false)
		return
	}
	ev.Role = grantingRole(pol, id, dev, req)
	o, ref := s.open(ctx, &openRequest{id: id, device: hdr.Device, req: req,
		msg: wire.Message{Type: inner.Type, Payload: payload}, ev: &ev, hops: hdr.Hops, from: st})
	if ref != nil {
		s.answerRefusal(st, ev, ref, true)
		return
	}
	s.relay(ctx, st, o, ev, start)
}
