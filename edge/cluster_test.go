package edge_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/edge/cluster"
	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

// clusterRig is several real edges in this process, sharing a NATS server
// with JetStream, each with its public listener and its peer listener on
// loopback, as tether-edge runs them.
type clusterRig struct {
	t      testing.TB
	pki    *certstest.PKI
	peerCA *certs.KeyPair
	ns     *server.Server
	edges  map[string]*rigEdge
	// wrap, when set for an edge ID, wraps that edge's presence.
	wrap map[string]func(edge.Presence) edge.Presence
	// log is where the edges and devices log; nil is the test's log.
	log *slog.Logger
	// web, when set, turns the web terminal on, each edge's public URL
	// its own, sign-outs shared in the cluster's bucket.
	web *edge.WebConfig
	// server, when set, finishes each edge's Server before it serves.
	server func(id string, srv *edge.Server)
	// policy, when set, is every edge's policy; nil is testPolicy.
	policy edge.Policy
}

func (rig *clusterRig) logger() *slog.Logger {
	if rig.log != nil {
		return rig.log
	}
	return testLogger(rig.t)
}

type rigEdge struct {
	id       string
	srv      *edge.Server
	presence *cluster.Presence
	nc       *nats.Conn
	audit    *edge.MemoryAuditor
	url      string // public base URL
	stop     func()
}

func newClusterRig(t testing.TB, ids ...string) *clusterRig {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	peerCA, err := certs.NewCA("test peer CA", certs.Options{})
	require.NoError(t, err)
	rig := &clusterRig{t: t, pki: certstest.New(t), peerCA: peerCA, ns: ns, edges: map[string]*rigEdge{}}
	t.Cleanup(func() {
		for _, e := range rig.edges {
			e.stop()
		}
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	for _, id := range ids {
		rig.start(id)
	}
	return rig
}

// start runs edge id.
func (rig *clusterRig) start(id string) *rigEdge {
	t := rig.t
	t.Helper()
	peerKP, err := rig.peerCA.IssuePeer(id, []string{"127.0.0.1"}, certs.Options{})
	require.NoError(t, err)
	peerLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	nc, err := nats.Connect(rig.ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	p := &cluster.Presence{JetStream: js, Conn: nc, EdgeID: id, Advertise: "https://" + peerLn.Addr().String(),
		Heartbeat: 200 * time.Millisecond, EdgeTTL: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, p.Start(ctx))
	audit := &edge.MemoryAuditor{}
	var presence edge.Presence = p
	if w := rig.wrap[id]; w != nil {
		presence = w(p)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var web *edge.WebConfig
	if rig.web != nil {
		w := *rig.web
		w.PublicURL = "https://" + ln.Addr().String()
		w.Revoked = &cluster.WebRevocations{JetStream: js}
		web = &w
	}
	var policy edge.Policy = testPolicy(t)
	if rig.policy != nil {
		policy = rig.policy
	}
	srv := &edge.Server{
		Web:      web,
		DeviceCA: rig.pki.Pool(),
		Policy:   policy,
		Auditor:  audit,
		Limits:   edge.Limits{UpgradeRate: 1e6, UpgradeBurst: 1e6},
		Logger:   rig.logger().With("edge", id),
		Cluster: &edge.Cluster{EdgeID: id, Presence: presence, PeerCA: certs.PoolOf(rig.peerCA.Cert),
			PeerCert: peerKP.TLSCertificate()},
	}
	if rig.server != nil {
		rig.server(id, srv)
	}
	hs := srv.HTTPServer(rig.pki.EdgeTLS())
	ps := &http.Server{Handler: srv.PeerHandler(), ErrorLog: hs.ErrorLog}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = hs.Serve(srv.Listener(ln, hs.TLSConfig)) }()
	go func() { defer wg.Done(); _ = ps.Serve(srv.PeerListener(peerLn)) }()
	e := &rigEdge{id: id, srv: srv, presence: p, nc: nc, audit: audit, url: "https://" + ln.Addr().String()}
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			hs.Close()
			ps.Close()
			wg.Wait()
			srv.Close()
			p.Close()
			nc.Close()
		})
	}
	rig.edges[id] = e
	return e
}

// device connects a device client for id to edge at, serving TCP tunnels
// and handlers.
func (rig *clusterRig) device(at, id string, handlers map[wire.MsgType]device.Handler) *device.Client {
	rig.t.Helper()
	return rig.deviceWith(at, id, rig.pki.DeviceTLS(rig.pki.Device(id)), handlers)
}

// deviceWith is device with the device's TLS configuration, whose
// certificate is issued beforehand.
func (rig *clusterRig) deviceWith(at, id string, tlsConf *tls.Config, handlers map[wire.MsgType]device.Handler) *device.Client {
	t := rig.t
	t.Helper()
	dc := &device.Client{URL: rig.edges[at].url + "/device", TLSConfig: tlsConf,
		BackoffInitial: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Logger: rig.logger().With("device", id)}
	dc.Handle(wire.MsgTCP, (&tcp.Handler{}).Serve)
	for typ, h := range handlers {
		dc.Handle(typ, h)
	}
	require.NoError(t, dc.Start(context.Background()))
	t.Cleanup(func() { dc.Close() })
	return dc
}

// waitEverywhere waits until every running edge sees device id on edge at.
func (rig *clusterRig) waitEverywhere(id, at string) {
	rig.t.Helper()
	require.Eventually(rig.t, func() bool {
		for _, e := range rig.edges {
			rec, ok := e.presence.Lookup(id)
			if !ok || rec.Edge != at {
				return false
			}
		}
		return true
	}, 20*time.Second, 5*time.Millisecond, "device %s was not seen on %s by every edge", id, at)
}

// client dials device id through edge at as ops.
func (rig *clusterRig) client(at, id string) *client.Client {
	rig.t.Helper()
	d := &client.Dialer{Edge: rig.edges[at].url, Token: opsToken, TLSConfig: rig.pki.ClientTLS()}
	c, err := d.Dial(ctxT(rig.t), id)
	require.NoError(rig.t, err)
	rig.t.Cleanup(func() { c.Close() })
	return c
}

// TestClusterCrossEdgeStreams: a client on one edge reaches a device held
// by another, with half-close and a large answer, and both edges audit the
// stream, each naming the other.
func TestClusterCrossEdgeStreams(t *testing.T) {
	rig := newClusterRig(t, "e1", "e2")
	rig.device("e1", "d-1", map[wire.MsgType]device.Handler{
		wire.MsgReload: func(ctx context.Context, st *transport.Stream, _ []byte) error { return wire.WriteOK(st, nil) },
	})
	rig.waitEverywhere("d-1", "e1")

	cl := rig.client("e2", "d-1")
	target := testutil.TCPServer(t, func(c *net.TCPConn) {
		req, _ := io.ReadAll(c)
		_, _ = c.Write([]byte(strings.Repeat(string(req), 100_000)))
	})
	conn, err := tcp.Dial(ctxT(t), cl, target)
	require.NoError(t, err)
	_, err = conn.Write([]byte("0123456789"))
	require.NoError(t, err)
	require.NoError(t, conn.(*transport.Stream).CloseWrite())
	got, err := io.ReadAll(conn)
	require.NoError(t, err)
	require.Equal(t, 1_000_000, len(got), "the whole answer crosses the hop after the request's half-close")
	conn.Close()
	require.NoError(t, cl.Reload(ctxT(t)))

	var e1Open, e2Open bool
	require.Eventually(t, func() bool {
		for _, ev := range rig.edges["e2"].audit.Events() {
			e2Open = e2Open || ev.Kind == edge.EventStreamOpen && ev.Type == "tcp" && ev.Peer == "e1" && ev.Result == "ok" && ev.Client == "ops"
		}
		for _, ev := range rig.edges["e1"].audit.Events() {
			e1Open = e1Open || ev.Kind == edge.EventStreamOpen && ev.Type == "tcp" && ev.Peer == "e2" && ev.Result == "ok" && ev.Client == "ops"
		}
		return e1Open && e2Open
	}, 10*time.Second, 10*time.Millisecond, "audit on e2 %v, on e1 %v", e2Open, e1Open)
}

// TestClusterDeviceRefusalCrossesTheHop: the client's edge refuses what its
// policy refuses; what the device refuses reaches the client through the
// hop with the device's reason.
func TestClusterDeviceRefusalCrossesTheHop(t *testing.T) {
	rig := newClusterRig(t, "e1", "e2")
	rig.device("e1", "d-1", nil)
	rig.waitEverywhere("d-1", "e1")
	cl := rig.client("e2", "d-1")
	_, err := tcp.Dial(ctxT(t), cl, "10.1.2.3:80") // outside the ops rule: refused at e2
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "10.1.2.3:80")
	_, err = tcp.Dial(ctxT(t), cl, testutil.ClosedAddr(t)) // allowed, but the device cannot connect
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "refused")
}

// TestClusterNewestConnectionWins: a device that connects to another edge
// takes over, and its old session closes; a second device with the same
// certificate does not push it off in a loop: it is refused within the
// takeover hold.
func TestClusterNewestConnectionWins(t *testing.T) {
	rig := newClusterRig(t, "e1", "e2")
	first := rig.device("e1", "d-1", nil)
	rig.waitEverywhere("d-1", "e1")
	second := rig.device("e2", "d-1", nil)
	rig.waitEverywhere("d-1", "e2")
	require.Eventually(t, func() bool {
		for _, ev := range rig.edges["e1"].audit.Events() {
			if ev.Kind == edge.EventDeviceDisconnect && strings.Contains(ev.Reason, "newer connection on edge e2") {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "e1 kept the replaced session")

	// The first device keeps redialing; every attempt within the hold is
	// refused, and e2's session stays.
	time.Sleep(time.Second)
	rec, ok := rig.edges["e1"].presence.Lookup("d-1")
	require.True(t, ok)
	require.Equal(t, "e2", rec.Edge, "no flapping: the second connection holds")
	refusals := 0
	for _, ev := range append(rig.edges["e1"].audit.Events(), rig.edges["e2"].audit.Events()...) {
		if ev.Kind == edge.EventDeviceRejected && ev.Result == "takeover_hold" {
			refusals++
		}
	}
	require.Positive(t, refusals, "the clone's redials were not refused")
	require.True(t, second.Connected())
	require.False(t, first.Connected())
}

// TestClusterStateUnavailable: without NATS, local devices keep working
// and a cross-edge open fails at once with a reason.
func TestClusterStateUnavailable(t *testing.T) {
	rig := newClusterRig(t, "e1", "e2")
	rig.device("e1", "d-1", nil)
	rig.device("e2", "d-2", nil)
	rig.waitEverywhere("d-1", "e1")
	rig.waitEverywhere("d-2", "e2")
	target := testutil.TCPServer(t, testutil.EchoAfterEOF)

	rig.ns.Shutdown()
	rig.ns.WaitForShutdown()
	require.Eventually(t, func() bool { return rig.edges["e2"].presence.Health() != nil }, 10*time.Second, 5*time.Millisecond)

	local := rig.client("e2", "d-2")
	conn, err := tcp.Dial(ctxT(t), local, target)
	require.NoError(t, err, "a local device keeps working")
	conn.Close()

	d := &client.Dialer{Edge: rig.edges["e2"].url, Token: opsToken, TLSConfig: rig.pki.ClientTLS()}
	_, err = d.Dial(ctxT(t), "d-1")
	var se *transport.StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, http.StatusServiceUnavailable, se.StatusCode)
	require.Contains(t, se.Reason, "cluster state unavailable")
	require.Contains(t, se.Reason, "device d-1 is not on this edge")

	// A qbee-v1 client's /edge/ prefix cannot be checked against the
	// edges now: it passes, and the device's lookup answers.
	addr := strings.TrimPrefix(rig.edges["e2"].url, "https://")
	p, status, body := testbroker.DialQbee(t, addr, rig.pki.ClientTLS(), "/edge/e1/device/d-2", opsToken)
	require.Equal(t, http.StatusSwitchingProtocols, status, body)
	qbeeTunnel(t, p, 1, lineEcho(t))
	_, status, body = testbroker.DialQbee(t, addr, rig.pki.ClientTLS(), "/edge/e9/device/d-1", opsToken)
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Contains(t, body, "cluster state unavailable")
}

// TestClusterLostEdgeResetsItsStreams: when the device's edge goes away
// mid-stream, the client's stream ends in a reset that names that edge,
// never in a clean end.
func TestClusterLostEdgeResetsItsStreams(t *testing.T) {
	rig := newClusterRig(t, "e1", "e2")
	rig.device("e1", "d-1", nil)
	rig.waitEverywhere("d-1", "e1")
	cl := rig.client("e2", "d-1")
	target := testutil.TCPServer(t, func(c *net.TCPConn) {
		chunk := make([]byte, 32<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	conn, err := tcp.Dial(ctxT(t), cl, target)
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.ReadFull(conn, make([]byte, 100_000))
	require.NoError(t, err)

	rig.edges["e1"].stop()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = io.Copy(io.Discard, conn)
	var re *transport.ResetError
	require.ErrorAs(t, err, &re, "got %v; want a reset", err)
	require.Contains(t, re.Reason, "edge e1")
}

// TestClusterLostClientEdgeEndsItsOpens: when the client's edge goes away
// while the device has not answered a forwarded open, the device's edge
// resets the device's stream at once, not at the open timeout.
func TestClusterLostClientEdgeEndsItsOpens(t *testing.T) {
	rig := newClusterRig(t)
	rig.server = func(_ string, srv *edge.Server) { srv.Transport = &transport.Config{OpenTimeout: time.Minute} }
	rig.start("e1")
	rig.start("e2")
	h, started, ended := unanswered()
	rig.device("e1", "d-1", map[wire.MsgType]device.Handler{wire.MsgReload: h})
	rig.waitEverywhere("d-1", "e1")
	cl := rig.client("e2", "d-1")
	done := make(chan error, 1)
	go func() { done <- cl.Reload(context.Background()) }()
	waitFor(t, started, 20*time.Second, "the device's handler did not start")

	rig.edges["e2"].stop()
	err := waitFor(t, ended, 20*time.Second, "the device's stream did not end after the client's edge went away")
	require.ErrorIs(t, err, transport.ErrStreamReset)
	require.Error(t, waitFor(t, done, 20*time.Second, "Reload did not return"))
	require.Eventually(t, func() bool {
		for _, ev := range rig.edges["e1"].audit.Events() {
			if ev.Kind == edge.EventStreamDeny && ev.Type == "reload" && ev.Peer == "e2" && ev.Result == "closed" {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "e1 did not audit the forwarded open as closed: %v", rig.edges["e1"].audit.Events())
}

// stalePresence is a view that stopped changing, as one does while NATS
// elects a new leader after an edge died: its lookups answer what they
// answered when it froze.
type stalePresence struct {
	edge.Presence
	mu     sync.Mutex
	frozen map[string]edge.PresenceRecord // nil until frozen
}

func (p *stalePresence) freeze(ids ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = map[string]edge.PresenceRecord{}
	for _, id := range ids {
		if rec, ok := p.Presence.Lookup(id); ok {
			p.frozen[id] = rec
		}
	}
}

func (p *stalePresence) Lookup(id string) (edge.PresenceRecord, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen == nil {
		return p.Presence.Lookup(id)
	}
	rec, ok := p.frozen[id]
	return rec, ok
}

// blindPresence is a view that lags the store for one device: it never
// shows that device's records of other edges, as a view does that judges
// their edges dead (it has not heard their heartbeats yet after a stop
// of its process) or that has not been delivered them yet.
type blindPresence struct {
	edge.Presence
	id, self string
}

func (p *blindPresence) Lookup(id string) (edge.PresenceRecord, bool) {
	rec, ok := p.Presence.Lookup(id)
	if ok && id == p.id && rec.Edge != p.self {
		return edge.PresenceRecord{}, false
	}
	return rec, ok
}

func (p *blindPresence) OnRecord(fn func(edge.PresenceRecord)) {
	p.Presence.OnRecord(func(rec edge.PresenceRecord) {
		if rec.ID != p.id || rec.Edge == p.self {
			fn(rec)
		}
	})
}

// TestClusterLaggingViewKeepsANewerRecord: an edge whose view lost a
// device's record, and does not show the record that replaced it (a newer
// session of the device on another edge), writes its own record again
// only where none took its place: the newer session's record, and the
// session, stay.
func TestClusterLaggingViewKeepsANewerRecord(t *testing.T) {
	rig := newClusterRig(t)
	rig.wrap = map[string]func(edge.Presence) edge.Presence{"e1": func(p edge.Presence) edge.Presence {
		return &blindPresence{Presence: p, id: "d-1", self: "e1"}
	}}
	rig.start("e1")
	rig.start("e2")
	rig.device("e1", "d-1", nil)
	rig.waitEverywhere("d-1", "e1")
	second := rig.device("e2", "d-1", nil)
	// The edge holds the session before the device has read the edge's
	// answer to its upgrade: wait for both.
	require.Eventually(t, func() bool {
		rec, ok := rig.edges["e2"].presence.Lookup("d-1")
		return ok && rec.Edge == "e2" && second.Connected()
	}, 10*time.Second, 5*time.Millisecond)

	// e1's check writes a lost record again after lostRecordAfter (5 s).
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		rec, ok := rig.edges["e2"].presence.Lookup("d-1")
		require.True(t, ok)
		require.Equal(t, "e2", rec.Edge, "an edge with a lagging view replaced the newer session's record")
		require.True(t, second.Connected(), "the newer session was closed")
		time.Sleep(50 * time.Millisecond)
	}
	for _, ev := range rig.edges["e2"].audit.Events() {
		require.False(t, ev.Kind == edge.EventDeviceDisconnect && strings.Contains(ev.Reason, "newer connection"),
			"the newer session was closed: %s", ev.Reason)
	}
}

// TestClusterStalePresenceFindsRehomedDevice: while presence still names
// a dead edge, or does not show a re-homed device yet, an open asks the
// live peers and reaches the device where it is now.
func TestClusterStalePresenceFindsRehomedDevice(t *testing.T) {
	stale := &stalePresence{}
	rig := newClusterRig(t)
	rig.wrap = map[string]func(edge.Presence) edge.Presence{"e3": func(p edge.Presence) edge.Presence {
		stale.Presence = p
		return stale
	}}
	for _, id := range []string{"e1", "e2", "e3"} {
		rig.start(id)
	}
	dc := rig.device("e1", "d-1", nil)
	rig.waitEverywhere("d-1", "e1")
	cl := rig.client("e3", "d-1")
	target := testutil.TCPServer(t, testutil.EchoAfterEOF)
	roundTrip := func(cl *client.Client) {
		t.Helper()
		conn, err := tcp.Dial(ctxT(t), cl, target)
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.Write([]byte("ping"))
		require.NoError(t, err)
		require.NoError(t, conn.(*transport.Stream).CloseWrite())
		got, err := io.ReadAll(conn)
		require.NoError(t, err)
		require.Equal(t, "echo:PING", string(got))
	}
	roundTrip(cl)

	stale.freeze("d-1", "d-2")
	require.NoError(t, dc.Close())
	rig.edges["e1"].stop()
	rig.device("e2", "d-1", nil)
	rig.device("e2", "d-2", nil)
	require.Eventually(t, func() bool {
		r1, ok1 := rig.edges["e2"].presence.Lookup("d-1")
		r2, ok2 := rig.edges["e2"].presence.Lookup("d-2")
		return ok1 && ok2 && r1.Edge == "e2" && r2.Edge == "e2"
	}, 20*time.Second, 5*time.Millisecond, "the devices did not re-home on e2")
	_, ok := stale.Lookup("d-2")
	require.False(t, ok, "the frozen view does not show d-2")

	// d-1: presence names e1, whose session is gone.
	roundTrip(cl)
	// d-2: presence does not know it yet.
	roundTrip(rig.client("e3", "d-2"))
	opened := 0
	for _, ev := range rig.edges["e3"].audit.Events() {
		if ev.Kind == edge.EventStreamOpen && ev.Device == "d-2" {
			require.Equal(t, "e2", ev.Peer)
			opened++
		}
	}
	require.Equal(t, 1, opened, "e3 audits the stream through e2")
	for _, ev := range rig.edges["e2"].audit.Events() {
		require.NotEqual(t, edge.EventStreamDeny, ev.Kind, "a probe that misses leaves no denial: %+v", ev)
	}
}

// TestClusterDeviceMoves: a device that moves to another edge is reached
// there by new streams from a third.
func TestClusterDeviceMoves(t *testing.T) {
	rig := newClusterRig(t, "e1", "e2", "e3")
	dc := rig.device("e1", "d-1", nil)
	rig.waitEverywhere("d-1", "e1")
	cl := rig.client("e3", "d-1")
	target := testutil.TCPServer(t, testutil.EchoAfterEOF)
	roundTrip := func() error {
		conn, err := tcp.Dial(ctxT(t), cl, target)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("ping")); err != nil {
			return err
		}
		if err := conn.(*transport.Stream).CloseWrite(); err != nil {
			return err
		}
		got, err := io.ReadAll(conn)
		if err != nil {
			return err
		}
		if string(got) != "echo:PING" {
			return fmt.Errorf("got %q", got)
		}
		return nil
	}
	require.NoError(t, roundTrip())
	require.NoError(t, dc.Close())
	rig.device("e2", "d-1", nil)
	rig.waitEverywhere("d-1", "e2")
	require.NoError(t, roundTrip())
}

// testLogger sends logs to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tLog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tLog struct{ t testing.TB }

func (w tLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// TestClusterClientCannotSendPeerOpen: a peer open from a client, on its
// own session, is an unknown stream type, refused as one.
func TestClusterClientCannotSendPeerOpen(t *testing.T) {
	rig := newClusterRig(t, "e1", "e2")
	rig.device("e2", "d-1", nil)
	rig.waitEverywhere("d-1", "e2")
	cl := rig.client("e1", "d-1")
	hdr, err := wire.PeerOpen{Device: "d-1", Client: "admin", Via: "e2", Hops: 1}.Encode()
	require.NoError(t, err)
	_, _, err = cl.OpenStream(ctxT(t), wire.MsgPeerOpen, hdr)
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "unknown stream type 0x70")
}

// TestPeerOpenOfAnUnknownMethodIsRefused: a peer's stream for a client
// signed in by a method this edge does not know is refused, not read as a
// person's.
func TestPeerOpenOfAnUnknownMethodIsRefused(t *testing.T) {
	rig := newClusterRig(t, "e1")
	rig.device("e1", "d-1", nil)
	rig.waitEverywhere("d-1", "e1")
	kp, err := rig.peerCA.IssuePeer("e9", []string{"127.0.0.1"}, certs.Options{})
	require.NoError(t, err)
	tc := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{kp.TLSCertificate()},
		RootCAs: certs.PoolOf(rig.peerCA.Cert), ServerName: "e1"}
	sess, err := transport.Dial(ctxT(t), rig.edges["e1"].presence.Advertise+"/peer", "", tc, nil)
	require.NoError(t, err)
	t.Cleanup(func() { sess.Close() })
	for method, want := range map[string]string{"admin": `signed in by "admin", a method this edge does not know`, "oidc": "no role gives"} {
		st, err := sess.Open()
		require.NoError(t, err)
		hdr, err := wire.PeerOpen{Device: "d-1", Client: "ops", Via: "e9", Hops: 1, Method: method}.Encode()
		require.NoError(t, err)
		b, err := wire.AppendMessage(nil, wire.MsgPeerOpen, hdr)
		require.NoError(t, err)
		b, err = wire.AppendMessage(b, wire.MsgTCP, []byte("127.0.0.1:22"))
		require.NoError(t, err)
		_, err = st.Write(b)
		require.NoError(t, err)
		_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, err := wire.ReadMessage(st)
		require.NoError(t, err)
		require.Equal(t, wire.MsgError, m.Type)
		require.Contains(t, string(m.Payload), want, method)
		st.Close()
	}
}

// heldPresence holds the first announcement of one device until release
// closes, as a store that is electing a leader holds a write.
type heldPresence struct {
	edge.Presence
	id      string
	once    sync.Once
	held    chan struct{} // closed when the first announcement is held
	release chan struct{}
	done    chan struct{} // closed when it is written
}

func (p *heldPresence) Announce(ctx context.Context, rec edge.PresenceRecord) (uint64, error) {
	first := false
	if rec.ID == p.id {
		p.once.Do(func() { first = true })
	}
	if !first {
		return p.Presence.Announce(ctx, rec)
	}
	close(p.held)
	<-p.release
	defer close(p.done)
	return p.Presence.Announce(context.Background(), rec)
}

// TestClusterLateAnnouncementOfAReplacedSession: a session's announcement
// that is written after a newer session of the device replaced it leaves
// no record behind: once the device is gone, no edge lists it.
func TestClusterLateAnnouncementOfAReplacedSession(t *testing.T) {
	held := &heldPresence{id: "d-1", held: make(chan struct{}), release: make(chan struct{}), done: make(chan struct{})}
	rig := newClusterRig(t)
	rig.wrap = map[string]func(edge.Presence) edge.Presence{"e1": func(p edge.Presence) edge.Presence {
		held.Presence = p
		return held
	}}
	rig.start("e1")
	rig.start("e2")
	first := rig.device("e1", "d-1", nil)
	<-held.held
	second := rig.device("e1", "d-1", nil)
	rig.waitEverywhere("d-1", "e1")
	require.NoError(t, first.Close())

	close(held.release)
	<-held.done
	require.NoError(t, second.Close())
	require.Eventually(t, func() bool {
		_, ok := rig.edges["e2"].presence.Lookup("d-1")
		return !ok
	}, 10*time.Second, 10*time.Millisecond, "e2 still lists d-1, which left e1")
}

// TestClusterDeviceThatLeftDuringAnOutageIsWithdrawn: a device that
// disconnects while the cluster state is unavailable has its record
// removed once the state is back, so that no edge lists it as connected.
func TestClusterDeviceThatLeftDuringAnOutageIsWithdrawn(t *testing.T) {
	rig := newClusterRig(t, "e1", "e2")
	dc := rig.device("e1", "d-1", nil)
	rig.waitEverywhere("d-1", "e1")

	port, dir := rig.ns.Addr().(*net.TCPAddr).Port, rig.ns.StoreDir()
	rig.ns.Shutdown()
	rig.ns.WaitForShutdown()
	require.Eventually(t, func() bool { return rig.edges["e1"].presence.Health() != nil }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, dc.Close())
	require.Eventually(t, func() bool {
		for _, ev := range rig.edges["e1"].audit.Events() {
			if ev.Kind == edge.EventDeviceDisconnect && ev.Device == "d-1" {
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond)

	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	require.NoError(t, err)
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	require.True(t, ns.ReadyForConnections(10*time.Second))
	require.Eventually(t, func() bool {
		return rig.edges["e1"].presence.Health() == nil && rig.edges["e2"].presence.Health() == nil
	}, 20*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		_, ok := rig.edges["e2"].presence.Lookup("d-1")
		return !ok
	}, 10*time.Second, 10*time.Millisecond, "e2 still lists d-1 on e1, which it left during the outage")
}

// TestClusterRestartedEdgeRemovesTheRecordsItLeft: the records that an
// edge leaves in place when it stops, for its devices to move, are
// removed when it starts again under the same ID for those that did not
// come back to it.
func TestClusterRestartedEdgeRemovesTheRecordsItLeft(t *testing.T) {
	rig := newClusterRig(t, "e1", "e2")
	dc := rig.device("e1", "d-1", nil)
	rig.waitEverywhere("d-1", "e1")
	rig.edges["e1"].stop()
	require.NoError(t, dc.Close())

	rig.start("e1")
	require.Eventually(t, func() bool {
		_, ok := rig.edges["e2"].presence.Lookup("d-1")
		return !ok
	}, 10*time.Second, 10*time.Millisecond, "e2 still lists d-1 on e1, which it left before e1 restarted")
}

// TestClusterStateComesBackWithoutItsStore: when NATS comes back without
// its store, the presence buckets are created again and each edge
// announces its devices again, without a restart: cross-edge opens and
// listings work again.
func TestClusterStateComesBackWithoutItsStore(t *testing.T) {
	rig := newClusterRig(t, "e1", "e2")
	rig.device("e1", "d-1", nil)
	rig.waitEverywhere("d-1", "e1")

	port := rig.ns.Addr().(*net.TCPAddr).Port
	rig.ns.Shutdown()
	rig.ns.WaitForShutdown()
	require.Eventually(t, func() bool { return rig.edges["e2"].presence.Health() != nil }, 10*time.Second, 5*time.Millisecond)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	require.True(t, ns.ReadyForConnections(10*time.Second))

	// e1 writes d-1's record again into the new store.
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := ctxT(t)
	require.Eventually(t, func() bool {
		kv, err := js.KeyValue(ctx, cluster.DevicesBucket)
		if err != nil {
			return false
		}
		e, err := kv.Get(ctx, cluster.KeyFor("d-1"))
		return err == nil && strings.Contains(string(e.Value()), `"edge":"e1"`)
	}, 20*time.Second, 20*time.Millisecond, "d-1's record was not written again")

	rig.device("e2", "d-2", nil)
	rig.waitEverywhere("d-2", "e2")
	rig.waitEverywhere("d-1", "e1")
	require.Eventually(t, func() bool {
		return rig.edges["e1"].presence.Health() == nil && rig.edges["e2"].presence.Health() == nil
	}, 20*time.Second, 10*time.Millisecond, "the cluster state stayed unavailable")
	target := testutil.TCPServer(t, testutil.EchoAfterEOF)
	for at, id := range map[string]string{"e1": "d-2", "e2": "d-1"} {
		conn, err := tcp.Dial(ctxT(t), rig.client(at, id), target)
		require.NoError(t, err, "a cross-edge open from %s failed after the store came back", at)
		conn.Close()
	}
}

// TestPeerCertificateRenewal renews an edge's peer certificate while it
// runs (Cluster.GetPeerCertificate, as certs.FileCert serves it) and
// checks that its next peer sessions present the renewed certificate, the
// one it dials and the one it accepts, and that each side logs the
// certificate its peer presented.
func TestPeerCertificateRenewal(t *testing.T) {
	var logs lockedBuffer
	rig := newClusterRig(t)
	rig.log = slog.New(slog.NewTextHandler(&logs, nil))
	var cur atomic.Pointer[tls.Certificate]
	metrics := &edge.Metrics{}
	rig.server = func(id string, srv *edge.Server) {
		if id == "b" {
			first := srv.Cluster.PeerCert
			cur.Store(&first)
			srv.Cluster.GetPeerCertificate = func() (*tls.Certificate, error) { return cur.Load(), nil }
			srv.Metrics = metrics
		}
	}
	expiry := func(c *x509.Certificate) string {
		return fmt.Sprintf("tether_edge_cluster_peer_certificate_expiry_timestamp_seconds %g\n", float64(c.NotAfter.Unix()))
	}
	// The lower ID dials: a dials b, b dials c.
	for _, id := range []string{"a", "b", "c"} {
		rig.start(id)
	}
	// seen waits until edge at logs a peer session with b that presented
	// the certificate of serial.
	seen := func(at, serial string) {
		t.Helper()
		want := fmt.Sprintf(`msg="peer session up" edge=%s edge=b `, at)
		require.Eventually(t, func() bool {
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, want) && strings.Contains(l, "peer_cert_serial="+serial+" ") {
					return true
				}
			}
			return false
		}, 20*time.Second, 20*time.Millisecond, "edge %s logged no peer session with b's certificate %s:\n%s", at, serial, logs.String())
	}
	first := certs.SerialHex(cur.Load().Leaf)
	seen("a", first)
	seen("c", first)
	require.Contains(t, scrape(t, metrics), expiry(cur.Load().Leaf))

	kp, err := rig.peerCA.IssuePeer("b", []string{"127.0.0.1"}, certs.Options{Lifetime: 48 * time.Hour})
	require.NoError(t, err)
	renewed := kp.TLSCertificate()
	cur.Store(&renewed)
	second := certs.SerialHex(kp.Cert)
	require.NotEqual(t, first, second)
	require.Contains(t, scrape(t, metrics), expiry(kp.Cert), "the metric follows the renewal")

	// A new connection to b's peer listener gets the renewed certificate.
	client, err := rig.peerCA.IssuePeer("z", []string{"127.0.0.1"}, certs.Options{})
	require.NoError(t, err)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", strings.TrimPrefix(rig.edges["b"].presence.Advertise, "https://"), &tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{client.TLSCertificate()}, RootCAs: certs.PoolOf(rig.peerCA.Cert), ServerName: "b"})
	require.NoError(t, err)
	require.Equal(t, second, certs.SerialHex(conn.ConnectionState().PeerCertificates[0]))
	conn.Close()

	// a and c start again: a dials b, which serves the renewed
	// certificate, and b dials c with it.
	rig.edges["a"].stop()
	rig.edges["c"].stop()
	rig.start("a")
	rig.start("c")
	seen("a", second)
	seen("c", second)
}
