package main

import (
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

	"github.com/nats-io/nats-server/v2/server"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/internal/testutil"
)

// writePeerFiles writes a peer CA and the peer certificates of edges
// edge-1 and edge-2 into dir: peer-ca.crt, edge-1.crt/key, edge-2.crt/key.
func writePeerFiles(t *testing.T, dir string) {
	t.Helper()
	ca, err := certs.NewCA("Test Peer CA", certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteFile(filepath.Join(dir, "peer-ca.crt"), ca.CertPEM(), 0o644, true); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"edge-1", "edge-2"} {
		kp, err := ca.IssuePeer(id, []string{"127.0.0.1"}, certs.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := kp.Save(filepath.Join(dir, id+".crt"), filepath.Join(dir, id+".key"), true); err != nil {
			t.Fatal(err)
		}
	}
}

// getBody GETs url and returns the status and the body.
func getBody(hc *http.Client, url string) (int, string, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// peerGet GETs path on the peer listener at addr, over TLS with cert (none
// when nil), trusting the peer CA in dir.
func peerGet(dir, addr, path string, cert *tls.Certificate) (int, error) {
	pool, err := certs.LoadPool(filepath.Join(dir, "peer-ca.crt"))
	if err != nil {
		return 0, err
	}
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: tr}).Get("https://" + addr + path)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestServeEmbeddedSingleNodeCluster runs the built binary with a cluster
// section, embedded NATS and no routes: it joins its own cluster state,
// serves a device (listed with its edge, a TCP stream through it), /readyz
// and metrics, answers peers on a listener of its own that takes only peer
// certificates, and on SIGTERM drains, leaves the cluster state, then
// stops NATS and exits 0.
func TestServeEmbeddedSingleNodeCluster(t *testing.T) {
	peerAddr, routeAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	section := fmt.Sprintf(`cluster:
  edge_id: edge-1
  peer_listen: %q
  peer_ca: peer-ca.crt
  peer_cert: {cert: edge-1.crt, key: edge-1.key}
  nats:
    embedded: {listen: %q, routes: [], store: nats}
`, peerAddr, routeAddr)
	s := newEdgeSetup(t, "audit.jsonl", section)
	writePeerFiles(t, s.dir)
	p, addr := s.start(t)
	waitFor(t, "the edge to join the cluster state", func() bool {
		return p.Exited() || strings.Contains(p.Stderr(), `msg="joined the cluster state" edge_id=edge-1`)
	})
	if p.Exited() {
		t.Fatalf("the edge exited:\n%s", p.Stderr())
	}
	if _, err := os.Stat(filepath.Join(s.dir, "nats", "jetstream")); err != nil {
		t.Errorf("JetStream store not under the configured store: %v", err)
	}

	// A device and a TCP stream through it.
	s.device(t, addr, "dev-1", make(chan string, 1))
	hc := httpsClient(t, filepath.Join(s.dir, "ca.crt"))
	var listed []struct{ ID, Edge string }
	if err := testutil.GetJSON(hc, "https://"+addr+"/api/devices", s.opsToken, &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].ID != "dev-1" || listed[0].Edge != "edge-1" {
		t.Errorf("/api/devices: got %+v; want dev-1 on edge-1", listed)
	}
	c, err := s.client(t, addr, "dev-1", s.opsToken)
	if err != nil {
		t.Fatal(err)
	}
	echo := testutil.TCPServer(t, testutil.LineEcho)
	if err := echoOnce(c, echo, "through the clustered edge"); err != nil {
		t.Fatalf("TCP stream: %v", err)
	}

	// /readyz: ready, and the cluster state is healthy.
	waitFor(t, "/readyz to report the cluster ok", func() bool {
		code, body, err := getBody(hc, "https://"+addr+"/readyz")
		return err == nil && code == http.StatusOK && strings.Contains(body, "cluster: ok; edge edge-1")
	})

	// Metrics keep working with a cluster.
	code, body, err := getBody(http.DefaultClient, "http://"+s.metricsAddr+"/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("metrics: got %d, %v; want 200", code, err)
	}
	if !regexp.MustCompile(`(?m)^tether_edge_devices_connected 1$`).MatchString(body) {
		t.Errorf("metrics lack tether_edge_devices_connected 1:\n%.2000s", body)
	}

	// The peer listener: a peer certificate is served; anything else is
	// refused at the handshake.
	peerCert, err := tls.LoadX509KeyPair(filepath.Join(s.dir, "edge-2.crt"), filepath.Join(s.dir, "edge-2.key"))
	if err != nil {
		t.Fatal(err)
	}
	if code, err := peerGet(s.dir, peerAddr, "/not-a-peer-path", &peerCert); err != nil || code != http.StatusNotFound {
		t.Errorf("peer listener with a peer certificate: got %d, %v; want 404 from the peer handler", code, err)
	}
	if _, err := peerGet(s.dir, peerAddr, "/peer", nil); err == nil {
		t.Error("peer listener without a client certificate: the request went through; want the handshake refused")
	}
	devCert := s.pki.Device("intruder").TLSCertificate()
	if _, err := peerGet(s.dir, peerAddr, "/peer", &devCert); err == nil {
		t.Error("peer listener with a device certificate: the request went through; want the handshake refused")
	}
	// The public port is not the peer listener.
	if code, _, err := getBody(hc, "https://"+addr+"/peer"); err != nil || code != http.StatusNotFound {
		t.Errorf("GET /peer on the public port: got %d, %v; want 404", code, err)
	}

	// SIGHUP keeps the running cluster settings and says that a change
	// to them needs a restart.
	cfg, err := os.ReadFile(s.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.path, append(cfg, "  takeover_hold: 1m\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.Cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload to warn of the changed cluster section", func() bool {
		return strings.Contains(p.Stderr(), "the cluster section changed; the edge keeps running with the old one until it is restarted")
	})
	if err := echoOnce(c, echo, "after the reload"); err != nil {
		t.Fatalf("TCP stream after the reload: %v", err)
	}

	c.Close()
	if err := stopEdge(t, p); err != nil {
		t.Fatalf("exit %v after SIGTERM; want 0\n%s", err, p.Stderr())
	}
	logs := p.Stderr()
	// The drain (GoAway to the device) comes before leaving the cluster
	// state: the device's record is withdrawn through the presence.
	order := []string{`msg="shutting down: draining"`, `msg="sending GoAway to every device" devices=1`,
		`msg="left the cluster state" edge_id=edge-1`, `msg="edge stopped"`}
	last := -1
	for _, o := range order {
		i := strings.Index(logs, o)
		if i < 0 || i < last {
			t.Fatalf("shutdown logs: %q at %d, after %d; want the drain, then leaving the cluster state, then the stop:\n%s", o, i, last, logs)
		}
		last = i
	}
}

// TestServeStartsWithoutNATS runs the built binary against an external
// NATS that is not there yet: the edge serves its local device meanwhile,
// logs the unavailable cluster state once, and joins once NATS starts.
func TestServeStartsWithoutNATS(t *testing.T) {
	natsAddr := testutil.FreeAddr(t)
	section := fmt.Sprintf(`cluster:
  edge_id: edge-1
  peer_listen: %q
  peer_ca: peer-ca.crt
  peer_cert: {cert: edge-1.crt, key: edge-1.key}
  nats: {url: "nats://%s"}
`, testutil.FreeAddr(t), natsAddr)
	s := newEdgeSetup(t, "audit.jsonl", section)
	writePeerFiles(t, s.dir)
	p, addr := s.start(t)
	waitFor(t, "the first failed start of the presence", func() bool {
		return strings.Contains(p.Stderr(), "cluster state unavailable; serving local devices")
	})
	if !strings.Contains(p.Stderr(), `msg="NATS is not reachable yet; serving local devices and retrying"`) {
		t.Errorf("no word that NATS is unreachable:\n%s", p.Stderr())
	}

	// The local device works without the cluster state.
	s.device(t, addr, "dev-1", make(chan string, 1))
	c, err := s.client(t, addr, "dev-1", s.opsToken)
	if err != nil {
		t.Fatal(err)
	}
	echo := testutil.TCPServer(t, testutil.LineEcho)
	if err := echoOnce(c, echo, "without NATS"); err != nil {
		t.Fatalf("TCP stream without NATS: %v", err)
	}
	hc := httpsClient(t, filepath.Join(s.dir, "ca.crt"))
	code, body, err := getBody(hc, "https://"+addr+"/readyz")
	if err != nil || code != http.StatusOK || !strings.Contains(body, "cluster: cluster state unavailable") {
		t.Errorf("/readyz without NATS: got %d %q, %v; want 200 saying the cluster state is unavailable", code, body, err)
	}

	// NATS comes up: the edge joins.
	host, portStr, _ := net.SplitHostPort(natsAddr)
	port, _ := strconv.Atoi(portStr)
	ns, err := server.NewServer(&server.Options{Host: host, Port: port, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	waitFor(t, "the edge to join the cluster state", func() bool {
		return strings.Contains(p.Stderr(), `msg="joined the cluster state" edge_id=edge-1`)
	})
	if n := strings.Count(p.Stderr(), "cluster state unavailable; serving local devices"); n != 1 {
		t.Errorf("the unavailable cluster state was logged %d times at warning level; want once", n)
	}
	waitFor(t, "/readyz to report the cluster ok", func() bool {
		code, body, err := getBody(hc, "https://"+addr+"/readyz")
		return err == nil && code == http.StatusOK && strings.Contains(body, "cluster: ok")
	})
	c.Close()
	if err := stopEdge(t, p); err != nil {
		t.Fatalf("exit %v after SIGTERM; want 0\n%s", err, p.Stderr())
	}
	if !strings.Contains(p.Stderr(), "left the cluster state") {
		t.Errorf("the edge did not leave the cluster state on SIGTERM:\n%s", p.Stderr())
	}
}

// TestServeEmbeddedRoutePortTaken: an embedded NATS server that cannot
// listen for routes stops the edge at once, saying which key to check.
func TestServeEmbeddedRoutePortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	section := fmt.Sprintf(`cluster:
  edge_id: edge-1
  peer_listen: %q
  peer_ca: peer-ca.crt
  peer_cert: {cert: edge-1.crt, key: edge-1.key}
  nats:
    embedded: {listen: %q, routes: [%q, %q], store: nats}
`, testutil.FreeAddr(t), taken.Addr().String(), testutil.ClosedAddr(t), testutil.ClosedAddr(t))
	s := newEdgeSetup(t, "audit.jsonl", section)
	writePeerFiles(t, s.dir)
	p := startEdge(t, "--config", s.path, "--listen", testutil.FreeAddr(t))
	if err := p.Wait(t, 60*time.Second); err == nil {
		t.Fatal("the edge exited 0; want an error")
	}
	want := "tether-edge: embedded NATS: Error listening on router port"
	if !strings.Contains(p.Stderr(), want) || !strings.Contains(p.Stderr(), "check cluster.nats.embedded.listen") {
		t.Errorf("got:\n%s\nwant %q and the key to check", p.Stderr(), want)
	}
}
