package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/internal/testutil"
)

// clusterSys is three tether-edge processes with embedded NATS on
// loopback, an in-test round-robin balancer in front, and agents that dial
// the balancer. Clients are pinned to one edge.
type clusterSys struct {
	t       testing.TB
	pki     *certstest.PKI
	dir     string
	token   string
	edges   []*clusterEdge
	lb      *balancer
	natsURL string           // external NATS, when the cluster uses one
	agents  map[string]*proc // by device ID
	peerCA  *certs.KeyPair   // issues the edges' peer certificates
}

type clusterEdge struct {
	id      string
	addr    string // public listen address
	metrics string // metrics listen address
	peer    string // peer listen address
	route   string // embedded NATS's route address
	cfg     string // config path
	proc    *proc
}

// clusterOpts shape a test cluster.
type clusterOpts struct {
	edges     int
	natsURL   string // external NATS instead of embedded servers
	natsCreds string // its credentials file
	keepalive string // the edges' keepalive section; empty is 200ms/2s
	pki       *certstest.PKI
	extra     string // more YAML for every edge; {{edge}} stands for its ID
	clients   string // more entries of every edge's clients list
}

func newClusterSys(t testing.TB, o clusterOpts) *clusterSys {
	t.Helper()
	if o.edges == 0 {
		o.edges = 3
	}
	pki := o.pki
	if pki == nil {
		pki = certstest.New(t)
	}
	c := &clusterSys{t: t, pki: pki, dir: pki.Dir, natsURL: o.natsURL, agents: map[string]*proc{}}
	var sum string
	c.token, sum = testutil.NewToken(t)
	peerCA, err := certs.NewCA("test peer CA", certs.Options{})
	require.NoError(t, err)
	require.NoError(t, certs.WriteFile(filepath.Join(c.dir, "peer-ca.crt"), peerCA.CertPEM(), 0o644, true))
	c.peerCA = peerCA
	type ports struct{ pub, peer, route int }
	ps := make([]ports, o.edges)
	for i := range ps {
		ps[i] = ports{freePort(t), freePort(t), freePort(t)}
	}
	for i := range o.edges {
		id := fmt.Sprintf("edge-%d", i+1)
		kp, err := peerCA.IssuePeer(id, []string{"127.0.0.1"}, certs.Options{})
		require.NoError(t, err)
		require.NoError(t, kp.Save(filepath.Join(c.dir, id+"-peer.crt"), filepath.Join(c.dir, id+"-peer.key"), true))
		nats := ""
		if o.natsURL != "" {
			nats = fmt.Sprintf("    url: %q\n    creds: %q\n    ca: ca.crt\n", o.natsURL, o.natsCreds)
		} else {
			var routes []string
			for j := range o.edges {
				if j != i {
					routes = append(routes, fmt.Sprintf("%q", fmt.Sprintf("127.0.0.1:%d", ps[j].route)))
				}
			}
			nats = fmt.Sprintf("    embedded: {listen: \"127.0.0.1:%d\", routes: [%s], store: nats-%s}\n",
				ps[i].route, strings.Join(routes, ", "), id)
		}
		e := &clusterEdge{id: id, addr: fmt.Sprintf("127.0.0.1:%d", ps[i].pub), metrics: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			peer: fmt.Sprintf("127.0.0.1:%d", ps[i].peer), route: fmt.Sprintf("127.0.0.1:%d", ps[i].route),
			cfg: filepath.Join(c.dir, id+".yaml")}
		cfg := fmt.Sprintf(`listen: %q
tls: {cert: edge.crt, key: edge.key}
device_ca: ca.crt
revoked: revoked.txt
clients:
  - name: ops
    token_sha256: %q
    devices: ["*"]
    allow: {tcp: ["127.0.0.1:*"], udp: ["127.0.0.1:*"], pty: true, exec: true, reload: true}
    recordings: read
%saudit_log: audit-%s.jsonl
metrics_listen: %q
keepalive: %s
cluster:
  edge_id: %s
  peer_listen: "127.0.0.1:%d"
  peer_ca: peer-ca.crt
  peer_cert: {cert: %s-peer.crt, key: %s-peer.key}
  nats:
%s%s`, e.addr, sum, o.clients, id, e.metrics, cmp.Or(o.keepalive, "{interval: 200ms, timeout: 2s}"), id, ps[i].peer, id, id, nats, strings.ReplaceAll(o.extra, "{{edge}}", id))
		require.NoError(t, os.WriteFile(e.cfg, []byte(cfg), 0o600))
		c.edges = append(c.edges, e)
	}
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, "revoked.txt"), nil, 0o600))
	for _, e := range c.edges {
		c.startEdge(e)
	}
	for _, e := range c.edges {
		c.waitClusterOK(e)
	}
	var backends []string
	for _, e := range c.edges {
		backends = append(backends, e.addr)
	}
	c.lb = newBalancer(t, pki.Pool(), backends...)
	return c
}

func (c *clusterSys) startEdge(e *clusterEdge) {
	c.t.Helper()
	e.proc = &proc{Proc: testutil.StartWith(c.t, testutil.Options{KillAtCleanup: false}, bin("tether-edge"), "--config", e.cfg)}
	e.proc.cmd = e.proc.Cmd
}

func (c *clusterSys) httpClient() *http.Client {
	return (&system{pki: c.pki}).httpClient()
}

// readyz returns edge e's /readyz body.
func (c *clusterSys) readyz(e *clusterEdge) string {
	resp, err := c.httpClient().Get("https://" + e.addr + "/readyz")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// waitClusterOK waits until e serves and sees the cluster state.
func (c *clusterSys) waitClusterOK(e *clusterEdge) {
	c.t.Helper()
	require.Eventually(c.t, func() bool { return strings.Contains(c.readyz(e), "cluster: ok") }, 60*time.Second, 50*time.Millisecond,
		"%s does not see the cluster state: %s\n%s", e.id, c.readyz(e), e.proc.Output())
}

// devices returns what edge e lists: device ID to edge ID.
func (c *clusterSys) devices(e *clusterEdge) (map[string]string, error) {
	var list []struct {
		ID   string `json:"id"`
		Edge string `json:"edge"`
	}
	if err := testutil.GetJSON(c.httpClient(), "https://"+e.addr+"/api/devices", c.token, &list); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, d := range list {
		out[d.ID] = d.Edge
	}
	return out, nil
}

// waitListed waits until every edge in es lists every device in ids, on
// an edge other than those in not, and returns where the first edge says
// each is.
func (c *clusterSys) waitListed(ids []string, es ...*clusterEdge) map[string]string {
	c.t.Helper()
	return c.waitListedOff(ids, nil, es...)
}

func (c *clusterSys) waitListedOff(ids []string, not *clusterEdge, es ...*clusterEdge) map[string]string {
	c.t.Helper()
	if len(es) == 0 {
		es = c.edges
	}
	var where map[string]string
	require.Eventually(c.t, func() bool {
		for i, e := range es {
			got, err := c.devices(e)
			if err != nil {
				return false
			}
			for _, id := range ids {
				if got[id] == "" || not != nil && got[id] == not.id {
					return false
				}
			}
			if i == 0 {
				where = got
			}
		}
		return true
	}, 60*time.Second, 20*time.Millisecond, "devices %v not listed on every edge", ids)
	return where
}

// addAgents starts agents dev-1..n dialing the balancer.
func (c *clusterSys) addAgents(n int) []string {
	c.t.Helper()
	s := &system{t: c.t, pki: c.pki, dir: c.dir, addr: c.lb.addr()}
	var ids []string
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("dev-%d", i)
		ids = append(ids, id)
		c.agents[id] = s.startAgent(agentOpts{id: id, extra: "keepalive: {interval: 200ms, timeout: 2s}\n"})
	}
	return ids
}

// edge returns the edge with id.
func (c *clusterSys) edge(id string) *clusterEdge {
	for _, e := range c.edges {
		if e.id == id {
			return e
		}
	}
	c.t.Fatalf("no edge %s", id)
	return nil
}

// other returns an edge other than those named.
func (c *clusterSys) other(not ...string) *clusterEdge {
	for _, e := range c.edges {
		skip := false
		for _, n := range not {
			skip = skip || e.id == n
		}
		if !skip {
			return e
		}
	}
	c.t.Fatalf("no edge other than %v", not)
	return nil
}

// cliArgs are the tether flags for a client pinned to edge e.
func (c *clusterSys) cliArgs(e *clusterEdge, args ...string) []string {
	return append([]string{"--edge", "https://" + e.addr, "--ca", c.pki.CAFile, "--token", c.token}, args...)
}

func (c *clusterSys) cli(e *clusterEdge, stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	return run(c.t, stdin, "tether", c.cliArgs(e, args...)...)
}

// TestClusterConvergesAndCrossesEdges: three edges, six agents behind the
// balancer: every device is listed on every edge, and a client on one
// edge reaches a device on another with a shell, a half-closed TCP stream
// with a 10 MB answer, UDP and a reload.
func TestClusterConvergesAndCrossesEdges(t *testing.T) {
	c := newClusterSys(t, clusterOpts{})
	start := time.Now()
	ids := c.addAgents(6)
	where := c.waitListed(ids)
	t.Logf("six devices listed on all three edges %v after the agents started", time.Since(start).Round(time.Millisecond))
	crossEdgeChecks(t, c, where)
}

// crossEdgeChecks runs the cross-edge stream checks from a client pinned
// to an edge that does not hold the device.
func crossEdgeChecks(t *testing.T, c *clusterSys, where map[string]string) {
	t.Helper()
	dev := "dev-1"
	from := c.other(where[dev])
	t.Logf("client on %s, device %s on %s", from.id, dev, where[dev])

	out, errOut, code := c.cli(from, "", "shell", dev, "--", "echo $((6*7))")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "42")

	const answer = 10 << 20
	target := testutil.TCPServer(t, func(conn *net.TCPConn) {
		req, _ := io.ReadAll(conn)
		if string(req) != "send it" {
			return
		}
		_, _ = conn.Write(bytes.Repeat([]byte("x"), answer))
	})
	out, errOut, code = c.cli(from, "send it", "nc", dev, target)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, answer, len(out), "bytes of the answer after the request's half-close")

	echo := testutil.UDPEcho(t)
	fwd := start(t, "tether", c.cliArgs(from, "udp", dev, "127.0.0.1:0:"+echo)...)
	local := forwardAddr(t, fwd)
	uc, err := net.Dial("udp", local)
	require.NoError(t, err)
	defer uc.Close()
	buf := make([]byte, 64)
	require.Eventually(t, func() bool {
		_, _ = uc.Write([]byte("ping"))
		_ = uc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := uc.Read(buf)
		return err == nil && string(buf[:n]) == "udp:ping"
	}, 30*time.Second, 10*time.Millisecond, "no UDP echo across the edges:\n%s", fwd.Output())

	_, errOut, code = c.cli(from, "", "reload", dev)
	require.Equal(t, 0, code, errOut)
}

// TestClusterExternalNATS: the edges point at a NATS server of their own
// (a separate process, TLS, a credentials file) instead of embedding one:
// the same convergence and cross-edge checks hold.
func TestClusterExternalNATS(t *testing.T) {
	dir := t.TempDir()
	pki := certstest.New(t)
	creds, ready := filepath.Join(dir, "edges.creds"), filepath.Join(dir, "url")
	ns := start(t, "natsd", "-store", filepath.Join(dir, "js"), "-cert", filepath.Join(pki.Dir, "edge.crt"),
		"-key", filepath.Join(pki.Dir, "edge.key"), "-creds", creds, "-ready", ready)
	var url []byte
	require.Eventually(t, func() bool {
		var err error
		url, err = os.ReadFile(ready)
		return err == nil && len(url) > 0
	}, 20*time.Second, 10*time.Millisecond, "natsd did not start:\n%s", ns.Output())

	c := newClusterSys(t, clusterOpts{natsURL: string(url), natsCreds: creds, pki: pki})
	t0 := time.Now()
	ids := c.addAgents(6)
	where := c.waitListed(ids)
	t.Logf("six devices listed on all three edges %v after the agents started", time.Since(t0).Round(time.Millisecond))
	crossEdgeChecks(t, c, where)

	// NATS goes away: each edge keeps listing the whole cluster as it last
	// saw it, past the 6 s in which it would find a silent edge dead, and
	// tether devices says that the list may be out of date.
	_ = ns.Stop()
	require.True(t, ns.Exited(), "natsd did not stop")
	e := c.edges[0]
	require.Eventually(t, func() bool { return !strings.Contains(c.readyz(e), "cluster: ok") }, 20*time.Second, 50*time.Millisecond)
	time.Sleep(7 * time.Second)
	out, errOut, code := c.cli(e, "", "devices")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, errOut, "tether: warning: cluster: unavailable: cluster state unavailable")
	for _, id := range ids {
		require.Contains(t, out, id, "an edge cut off from NATS stopped listing another edge's device")
	}
}

// TestClusterEdgeCrash: the edge holding a device is killed with -9 in the
// middle of a download and of a shell. The clients get an error naming
// that edge and never hang; the devices re-home through the balancer and
// new streams reach them; the surviving edges keep quorum and grow
// neither goroutines nor descriptors.
func TestClusterEdgeCrash(t *testing.T) {
	c := newClusterSys(t, clusterOpts{})
	ids := c.addAgents(6)
	where := c.waitListed(ids)
	dev := "dev-1"
	victim := c.edge(where[dev])
	from := c.other(victim.id)
	survivors := []*clusterEdge{}
	for _, e := range c.edges {
		if e != victim {
			survivors = append(survivors, e)
		}
	}
	before := map[string][2]int{}
	for _, e := range survivors {
		before[e.id] = [2]int{fdsOf(t, e.proc.Pid()), usualGoroutines(t, c, e)}
	}

	// A download that never ends, and a shell that waits.
	target := testutil.TCPServer(t, func(conn *net.TCPConn) {
		chunk := make([]byte, 32<<10)
		for {
			if _, err := conn.Write(chunk); err != nil {
				return
			}
		}
	})
	nc := testutil.StartWith(t, testutil.Options{SplitOutput: true, Stdin: true}, bin("tether"), c.cliArgs(from, "nc", dev, target)...)
	sh := testutil.StartWith(t, testutil.Options{SplitOutput: true, Stdin: true}, bin("tether"), c.cliArgs(from, "shell", dev, "--", "echo ready; exec sleep 100")...)
	require.Eventually(t, func() bool { return len(nc.Stdout()) > 1<<20 && strings.Contains(sh.Stdout(), "ready") },
		30*time.Second, 10*time.Millisecond, "the streams did not start:\n%s\n%s", nc.Stderr(), sh.Stderr())

	victim.proc.Kill9()
	killed := time.Now()
	for name, p := range map[string]*testutil.Proc{"nc": nc, "shell": sh} {
		select {
		case <-p.Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("tether %s hangs after the device's edge died", name)
		}
		require.NotEqual(t, 0, p.ExitCode(), "tether %s exited 0 after its stream was cut", name)
		require.Contains(t, p.Stderr(), victim.id, "tether %s does not name the lost edge", name)
		t.Logf("tether %s exited %d %v after the kill: %s", name, p.ExitCode(), time.Since(killed).Round(time.Millisecond), strings.TrimSpace(p.Stderr()))
	}

	// The devices come back through the balancer, and new streams reach
	// them at once, before presence shows the move (NATS elects new
	// leaders for what the dead edge led meanwhile).
	require.Eventually(t, func() bool {
		out, _, code := c.cli(from, "", "shell", dev, "--", "echo back")
		return code == 0 && strings.Contains(out, "back")
	}, 20*time.Second, 100*time.Millisecond, "no new shell reaches %s after its edge died", dev)
	t.Logf("a new shell reached %s %v after the kill", dev, time.Since(killed).Round(time.Millisecond))
	c.waitListedOff(ids, victim, survivors...)
	t.Logf("all devices listed on the survivors %v after the kill", time.Since(killed).Round(time.Millisecond))
	// NATS keeps quorum with two of three. A survivor's watcher that the
	// dead node served goes quiet or falls behind, and is started again
	// once NATS has elected new leaders: its edge is briefly not ready
	// while it does, so ready is checked within a bound.
	for _, e := range survivors {
		c.waitClusterOK(e)
	}

	// No growth on the survivors once the dust settles.
	for _, e := range survivors {
		b := before[e.id]
		require.Eventually(t, func() bool {
			return fdsOf(t, e.proc.Pid()) <= b[0]+4 && goroutinesOf(t, c, e) <= b[1]+10
		}, 30*time.Second, 200*time.Millisecond, "%s grows: fds %d -> %d, goroutines %d -> %d",
			e.id, b[0], fdsOf(t, e.proc.Pid()), b[1], goroutinesOf(t, c, e))
	}
}

// TestClusterClientEdgeCrash: the edge a running tether tcp forward is
// connected to is killed with -9; the forward redials through the balancer
// and serves new connections.
func TestClusterClientEdgeCrash(t *testing.T) {
	c := newClusterSys(t, clusterOpts{})
	ids := c.addAgents(1)
	c.waitListed(ids)
	target := echoServer(t)
	fwd := start(t, "tether", "--edge", "https://"+c.lb.addr(), "--ca", c.pki.CAFile, "--token", c.token,
		"tcp", ids[0], "127.0.0.1:0:"+target)
	local := forwardAddr(t, fwd)
	got, err := roundTrip(local, "first")
	require.NoError(t, err)
	require.Equal(t, "echo:FIRST", got)

	// Which edge holds the forward's session: the one whose audit log has
	// the client session open.
	var victim *clusterEdge
	for _, e := range c.edges {
		b, _ := os.ReadFile(filepath.Join(c.dir, "audit-"+e.id+".jsonl"))
		if strings.Contains(string(b), `"client_open"`) {
			victim = e
		}
	}
	require.NotNil(t, victim, "no edge holds the forward's session")
	victim.proc.Kill9()
	require.Eventually(t, func() bool {
		got, err := roundTrip(local, "after")
		return err == nil && got == "echo:AFTER"
	}, 60*time.Second, 100*time.Millisecond, "the forward did not come back:\n%s", fwd.Output())
	require.False(t, fwd.Exited(), "the forward exited instead of redialing")
}

// TestClusterStoppedEdge: an edge stopped with SIGSTOP for 10 s: opens to
// its devices from another edge fail within seconds with a reason, not at
// the 15 s open timeout; after SIGCONT the edge does not take back the
// devices that moved meanwhile.
func TestClusterStoppedEdge(t *testing.T) {
	c := newClusterSys(t, clusterOpts{})
	ids := c.addAgents(6)
	where := c.waitListed(ids)
	// The victim is an edge with two devices: one whose agent stops with
	// it (it cannot move), and one that moves.
	held := map[string][]string{}
	for _, id := range ids {
		held[where[id]] = append(held[where[id]], id)
	}
	var victim *clusterEdge
	for _, e := range c.edges {
		if len(held[e.id]) >= 2 && victim == nil {
			victim = e
		}
	}
	require.NotNil(t, victim, "six devices on three edges leave one with two: %v", where)
	stuck, moving := held[victim.id][0], held[victim.id][1]
	from := c.other(victim.id)

	require.NoError(t, c.agents[stuck].Cmd.Process.Signal(syscall.SIGSTOP))
	t.Cleanup(func() { _ = c.agents[stuck].Cmd.Process.Signal(syscall.SIGCONT) })
	require.NoError(t, victim.proc.Cmd.Process.Signal(syscall.SIGSTOP))
	stopped := time.Now()
	t.Cleanup(func() { _ = victim.proc.Cmd.Process.Signal(syscall.SIGCONT) })
	time.Sleep(500 * time.Millisecond)

	// An open to the device that cannot move fails with a reason that
	// names the edge, once the peer session's keep-alive gives up (3 s),
	// not at the 15 s open timeout.
	t0 := time.Now()
	_, errOut, code := c.cli(from, "", "reload", stuck)
	took := time.Since(t0)
	require.NotEqual(t, 0, code, "an open to a device behind a stopped edge succeeded")
	require.Contains(t, errOut, victim.id, "the error does not name the stopped edge")
	require.NotContains(t, errOut, "did not answer", "the open waited for the open timeout: %s", errOut)
	t.Logf("open to %s (behind the stopped edge) failed after %v: %s", stuck, took.Round(time.Millisecond), strings.TrimSpace(errOut))

	// The device whose agent runs notices the dead edge (2 s keep-alive)
	// and reconnects through the balancer; opens reach it before
	// presence shows the move.
	require.Eventually(t, func() bool {
		_, _, code := c.cli(from, "", "reload", moving)
		return code == 0
	}, 20*time.Second, 100*time.Millisecond, "no open reaches %s after it left the stopped edge", moving)
	t.Logf("an open reached %s %v after the SIGSTOP", moving, time.Since(stopped).Round(time.Millisecond))
	var others []string
	for _, id := range ids {
		if id != stuck {
			others = append(others, id)
		}
	}
	// Every other edge sees them off the stopped edge first, so that only
	// a takeover can put them back there. (A watcher served by the stopped
	// edge's NATS node may stall until it is started again.)
	c.waitListedOff(others, victim, from, c.other(victim.id, from.id))

	time.Sleep(time.Until(stopped.Add(10 * time.Second)))
	require.NoError(t, victim.proc.Cmd.Process.Signal(syscall.SIGCONT))
	c.waitClusterOK(victim)
	// The other edges never see the resumed edge take a device back: a
	// takeover would show in presence. Sampled for a second, room for a
	// wrong takeover to show.
	for range 5 {
		for _, e := range c.edges {
			if e == victim {
				continue
			}
			got, err := c.devices(e)
			require.NoError(t, err)
			for _, id := range others {
				require.NotEqual(t, victim.id, got[id], "%s took back device %s after SIGCONT (as %s sees it)", victim.id, id, e.id)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The resumed edge itself lists its dead sessions only until it has
	// read their end, then agrees.
	require.Eventually(t, func() bool {
		got, err := c.devices(victim)
		if err != nil {
			return false
		}
		for _, id := range others {
			if got[id] == victim.id {
				return false
			}
		}
		return true
	}, 15*time.Second, 100*time.Millisecond, "%s still lists devices that moved away while it was stopped", victim.id)
	_, errOut, code = c.cli(from, "", "reload", moving)
	require.Equal(t, 0, code, errOut)

	// The stuck device's agent wakes, finds its session dead, and comes
	// back.
	require.NoError(t, c.agents[stuck].Cmd.Process.Signal(syscall.SIGCONT))
	require.Eventually(t, func() bool {
		_, _, code := c.cli(from, "", "reload", stuck)
		return code == 0
	}, 30*time.Second, 200*time.Millisecond, "%s did not come back after its agent resumed", stuck)
}

// TestClusterPeerCertificateRenewal: an edge's peer certificate renewed on
// disk is presented from the next connection on, with no restart or
// signal: by its peer listener and its NATS routes, and when it dials
// another edge; the metrics say when it expires.
func TestClusterPeerCertificateRenewal(t *testing.T) {
	c := newClusterSys(t, clusterOpts{})
	e2, e3 := c.edge("edge-2"), c.edge("edge-3")
	kp, err := c.peerCA.IssuePeer("edge-2", []string{"127.0.0.1"}, certs.Options{Lifetime: 48 * time.Hour})
	require.NoError(t, err)
	crt, key := filepath.Join(c.dir, "edge-2-peer.crt"), filepath.Join(c.dir, "edge-2-peer.key")
	require.NoError(t, kp.Save(crt, key, true))
	later := time.Now().Add(time.Minute) // a new modification time, however coarse the clock
	require.NoError(t, os.Chtimes(crt, later, later))
	renewed := certs.SerialHex(kp.Cert)

	other, err := c.peerCA.IssuePeer("edge-9", []string{"127.0.0.1"}, certs.Options{})
	require.NoError(t, err)
	tc := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{other.TLSCertificate()},
		RootCAs: certs.PoolOf(c.peerCA.Cert), ServerName: "edge-2"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", e2.peer, tc)
	require.NoError(t, err)
	require.Equal(t, renewed, certs.SerialHex(conn.ConnectionState().PeerCertificates[0]), "the peer listener serves the old certificate")
	conn.Close()
	// NATS's route listener: TLS first, then its INFO.
	rc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", e2.route, tc)
	require.NoError(t, err)
	require.Equal(t, renewed, certs.SerialHex(rc.ConnectionState().PeerCertificates[0]), "the NATS route serves the old certificate")
	require.NoError(t, rc.SetDeadline(time.Now().Add(10*time.Second)))
	info, err := bufio.NewReader(rc).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(info, "INFO "), "the route listener said %q", info)
	rc.Close()
	require.Contains(t, e2.proc.Stderr(), "peer certificate reloaded from disk")

	resp, err := http.Get("http://" + e2.metrics + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Contains(t, string(body), fmt.Sprintf("tether_edge_cluster_peer_certificate_expiry_timestamp_seconds %g\n", float64(kp.Cert.NotAfter.Unix())))

	// edge-3 starts again: edge-2 dials it (the lower ID dials), with the
	// renewed certificate, and the NATS routes form again with it.
	require.NoError(t, e3.proc.Stop())
	c.startEdge(e3)
	for _, e := range c.edges {
		c.waitClusterOK(e)
	}
	up := regexp.MustCompile(`msg="peer session up" edge=edge-2 \S+ peer_cert_serial=` + renewed + ` `)
	require.Eventually(t, func() bool { return up.MatchString(e3.proc.Stderr()) }, 30*time.Second, 50*time.Millisecond,
		"edge-3 logged no peer session with edge-2's renewed certificate %s:\n%s", renewed, e3.proc.Stderr())
}

// TestClusterClonedCertificate: two agents with one device certificate, on
// different edges: one session survives, with no flapping.
func TestClusterClonedCertificate(t *testing.T) {
	c := newClusterSys(t, clusterOpts{})
	s := &system{t: t, pki: c.pki, dir: c.dir}
	s.addr = c.edges[0].addr
	a := s.startAgent(agentOpts{id: "dev-1", edgeAddr: c.edges[0].addr})
	c.waitListed([]string{"dev-1"})
	clone := filepath.Join(c.dir, "dev-1-clone.yaml")
	cfg, err := os.ReadFile(s.agentConfigPath("dev-1"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(clone, bytes.ReplaceAll(cfg, []byte(c.edges[0].addr), []byte(c.edges[1].addr)), 0o600))
	b := start(t, "tether-agent", "--config", clone)

	time.Sleep(5 * time.Second)
	connects := 0
	for _, e := range c.edges {
		raw, _ := os.ReadFile(filepath.Join(c.dir, "audit-"+e.id+".jsonl"))
		connects += strings.Count(string(raw), `"device_connect"`)
	}
	require.LessOrEqual(t, connects, 3, "the clones push each other off: %d connects in 5 s", connects)
	got, err := c.devices(c.edges[2])
	require.NoError(t, err)
	require.NotEmpty(t, got["dev-1"], "one session survives")
	require.False(t, a.Exited())
	require.False(t, b.Exited())
}

// TestClusterDrain: one edge drains (SIGTERM) while a client on another
// edge keeps opening streams to a device the draining edge holds: no new
// stream fails while the device moves.
func TestClusterDrain(t *testing.T) {
	c := newClusterSys(t, clusterOpts{})
	ids := c.addAgents(2)
	where := c.waitListed(ids)
	dev := "dev-1"
	victim := c.edge(where[dev])
	from := c.other(victim.id)
	target := echoServer(t)

	stop := make(chan struct{})
	failures := make(chan string, 100)
	done := make(chan int)
	go func() {
		n := 0
		defer func() { done <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			began := time.Now()
			out, errOut, code := run(t, "drain", "tether", c.cliArgs(from, "nc", dev, target)...)
			if code != 0 || out != "echo:DRAIN" {
				failures <- fmt.Sprintf("exit %d (from %s to %s): %s %s", code,
					began.UTC().Format("15:04:05.000"), time.Now().UTC().Format("15:04:05.000"), out, errOut)
			}
			n++
		}
	}()
	time.Sleep(time.Second)
	require.NoError(t, victim.proc.Cmd.Process.Signal(syscall.SIGTERM))
	c.waitListed([]string{dev}, from)
	require.Eventually(t, func() bool {
		got, err := c.devices(from)
		return err == nil && got[dev] != "" && got[dev] != victim.id
	}, 60*time.Second, 50*time.Millisecond, "the device did not move off the draining edge")
	time.Sleep(time.Second)
	close(stop)
	n := <-done
	close(failures)
	var fails []string
	for f := range failures {
		fails = append(fails, f)
	}
	if len(fails) > 0 {
		for _, e := range c.edges {
			raw, _ := os.ReadFile(filepath.Join(c.dir, "audit-"+e.id+".jsonl"))
			t.Logf("audit log of %s:\n%s", e.id, raw)
		}
	}
	require.Empty(t, fails, "streams failed during the drain (%d opened)", n)
	require.Positive(t, n)
}

// fdsOf counts the open descriptors of process pid.
func fdsOf(t testing.TB, pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	return len(ents)
}

// goroutinesOf reads go_goroutines from edge e's metrics.
// usualGoroutines is e's goroutine count as it usually is: the most of a
// few samples over a second. NATS and the presence watchers start and end
// goroutines of their own all the time, so one sample may fall in a dip
// several goroutines deep, and a bound on growth from it would fail on
// nothing.
func usualGoroutines(t testing.TB, c *clusterSys, e *clusterEdge) int {
	most := 0
	for i := range 5 {
		if i > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		most = max(most, goroutinesOf(t, c, e))
	}
	return most
}

func goroutinesOf(t testing.TB, c *clusterSys, e *clusterEdge) int {
	resp, err := http.Get("http://" + e.metrics + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			n, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return int(n)
		}
	}
	t.Fatalf("no go_goroutines in %s's metrics", e.id)
	return 0
}

// roundTrip sends msg to addr, half-closes, and reads the answer.
func roundTrip(addr, msg string) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}
