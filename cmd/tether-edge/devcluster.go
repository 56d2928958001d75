package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/internal/shellquote"
)

// The cluster trial's port plan on 127.0.0.1: the balancer, then per edge
// i (1-based) its public port, peer listener, NATS route listener and
// metrics port.
const (
	trialHost         = "127.0.0.1"
	trialBalancerPort = 8440
	trialEdgePort     = 8440 // + i
	trialPeerPort     = 8450 // + i
	trialNATSPort     = 6220 // + i
	trialMetricsPort  = 9090 // + i
	maxTrialEdges     = 5
)

func trialAddr(base, i int) string { return fmt.Sprintf("%s:%d", trialHost, base+i) }

// trialEdgeConfig is the name of edge i's configuration in a trial.
func trialEdgeConfig(i int) string { return fmt.Sprintf("edge-%d.yaml", i) }

// runDevCluster writes a trial of n edges behind HAProxy in dir once, and
// prints how to start and use it. It serves nothing itself: each edge is
// a process of its own.
func runDevCluster(dir string, n int, deviceID string, stdout io.Writer) error {
	if n < 1 || n > maxTrialEdges {
		return fmt.Errorf("--cluster %d: want 1 to %d edges (3 is the usual: it survives the loss of one)", n, maxTrialEdges)
	}
	if _, err := os.Stat(filepath.Join(dir, "edge.yaml")); err == nil {
		return fmt.Errorf("%s holds a single-edge dev set-up (edge.yaml); pick another --dir for the cluster trial", dir)
	}
	have := 0
	for i := 1; i <= maxTrialEdges; i++ {
		if _, err := os.Stat(filepath.Join(dir, trialEdgeConfig(i))); err != nil {
			break
		}
		have = i
	}
	switch {
	case have == 0:
		if err := createDevCluster(dir, n, deviceID); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Created a trial of %d edges in %s (device %q).\n", n, dir, deviceID)
	case have != n:
		return fmt.Errorf("%s holds a trial of %d edges; run with --cluster %d, or pick another --dir", dir, have, have)
	default:
		var missing []string
		for _, f := range trialFiles(n) {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("the trial in %s is incomplete (missing %s); remove the directory and run again", dir, strings.Join(missing, ", "))
		}
		fmt.Fprintf(stdout, "Using the trial of %d edges in %s.\n", n, dir)
	}
	printTrial(stdout, dir, n)
	return nil
}

// trialFiles lists the files of a trial of n edges.
func trialFiles(n int) []string {
	files := []string{"ca.crt", "ca.key", "edge.crt", "edge.key", "device-ca.crt", "device-ca.key",
		"device.crt", "device.key", "peer-ca.crt", "peer-ca.key", "client.token", "revoked.txt",
		"agent.yaml", "haproxy.cfg"}
	for i := 1; i <= n; i++ {
		files = append(files, fmt.Sprintf("peer-%d.crt", i), fmt.Sprintf("peer-%d.key", i), trialEdgeConfig(i))
	}
	return files
}

func printTrial(w io.Writer, dir string, n int) {
	p := func(name string) string { return filepath.Join(dir, name) }
	q := func(name string) string { return shellquote.Quote(p(name)) } // in a command
	balancer := trialAddr(trialBalancerPort, 0)
	fmt.Fprintf(w, "\nStart each edge in a terminal of its own:\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, "  tether-edge --config %s\n", q(trialEdgeConfig(i)))
	}
	fmt.Fprintf(w, `
Start the load balancer (Debian: apt-get install haproxy):
  haproxy -f %s

Start the agent; it dials the balancer:
  tether-agent --config %s

Use the CLI through the balancer:
  tether --edge https://%s --ca %s --token-file %s devices
`, q("haproxy.cfg"), q("agent.yaml"), balancer, q("ca.crt"), q("client.token"))
	// A trial made before it had one has no files directory.
	if files := p(devFilesDir); isDir(files) {
		fmt.Fprintf(w, "File transfers (tether cp) reach %s on the device, and nothing else.\n", files)
	}
	fmt.Fprintf(w, `
Ports on %s: balancer %d; edges %s; peer listeners %s; NATS routes %s; metrics %s.
Stop an edge with Ctrl-C: it drains, and its devices reconnect through the balancer to another edge.
`, trialHost, trialBalancerPort, portRange(trialEdgePort, n), portRange(trialPeerPort, n), portRange(trialNATSPort, n), portRange(trialMetricsPort, n))
}

func portRange(base, n int) string {
	if n == 1 {
		return fmt.Sprint(base + 1)
	}
	return fmt.Sprintf("%d-%d", base+1, base+n)
}

// createDevCluster writes the trial: an edge CA and the server certificate
// all edges present (the balancer passes TLS through), a device CA and one
// device, a peer CA with one peer certificate per edge, a client token,
// the edges' configurations, the agent's and HAProxy's. edge-1.yaml is
// written last: its presence marks a complete trial.
func createDevCluster(dir string, n int, deviceID string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	edgeCA, err := certs.NewCA("Tether Trial Edge CA", certs.Options{})
	if err != nil {
		return err
	}
	server, err := edgeCA.IssueServer([]string{"127.0.0.1", "::1", "localhost"}, certs.Options{})
	if err != nil {
		return err
	}
	deviceCA, err := certs.NewCA("Tether Trial Device CA", certs.Options{})
	if err != nil {
		return err
	}
	dev, err := deviceCA.IssueDevice(deviceID, certs.Options{})
	if err != nil {
		return err
	}
	peerCA, err := certs.NewCA("Tether Trial Peer CA", certs.Options{})
	if err != nil {
		return err
	}
	for _, kp := range []struct {
		kp   *certs.KeyPair
		name string
	}{{edgeCA, "ca"}, {server, "edge"}, {deviceCA, "device-ca"}, {dev, "device"}, {peerCA, "peer-ca"}} {
		if err := kp.kp.Save(p(kp.name+".crt"), p(kp.name+".key"), false); err != nil {
			return err
		}
	}
	for i := 1; i <= n; i++ {
		peer, err := peerCA.IssuePeer(fmt.Sprintf("edge-%d", i), []string{trialHost, "localhost"}, certs.Options{})
		if err != nil {
			return err
		}
		if err := peer.Save(p(fmt.Sprintf("peer-%d.crt", i)), p(fmt.Sprintf("peer-%d.key", i)), false); err != nil {
			return err
		}
	}
	tok, sum, err := newToken()
	if err != nil {
		return err
	}
	if err := certs.WriteFile(p("client.token"), []byte(tok+"\n"), 0o600, false); err != nil {
		return err
	}
	if err := certs.WriteFile(p("revoked.txt"), []byte("# revoked device certificate serials, one per line (hex)\n"), 0o644, false); err != nil {
		return err
	}
	agentYAML := fmt.Sprintf(`# Trial agent created by tether-edge dev --cluster. Paths are relative to this file.
# It dials the balancer, which passes TLS through to one of the edges.
edge: "https://%s/device"
cert: device.crt
key: device.key
ca: ca.crt
allow:
  tcp: ["127.0.0.1:*", "localhost:*", "[::1]:*"]
  udp: ["127.0.0.1:*", "localhost:*", "[::1]:*"]
pty: {enabled: true}
exec: {enabled: true}
%s`, trialAddr(trialBalancerPort, 0), devFilesSection(dir))
	if err := os.Mkdir(p(devFilesDir), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := certs.WriteFile(p("agent.yaml"), []byte(agentYAML), 0o600, false); err != nil {
		return err
	}
	if err := certs.WriteFile(p("haproxy.cfg"), []byte(haproxyConfig(dir, n)), 0o644, false); err != nil {
		return err
	}
	for i := n; i >= 1; i-- {
		if err := certs.WriteFile(p(trialEdgeConfig(i)), []byte(trialEdgeYAML(i, n, sum)), 0o600, false); err != nil {
			return err
		}
	}
	return nil
}

// trialEdgeYAML is edge i's configuration in a trial of n edges.
func trialEdgeYAML(i, n int, tokenSum string) string {
	var routes []string
	for j := 1; j <= n; j++ {
		if j != i {
			routes = append(routes, trialAddr(trialNATSPort, j))
		}
	}
	return fmt.Sprintf(`# Edge %[1]d of %[2]d of the trial created by tether-edge dev --cluster. Paths are
# relative to this file. docs/cluster.md describes the cluster section.
listen: %[3]q
tls: {cert: edge.crt, key: edge.key}   # the same server certificate on every edge
device_ca: device-ca.crt
revoked: revoked.txt
clients:
  - name: dev
    token_sha256: %[4]q   # SHA-256 of client.token
    devices: ["*"]
    allow:
      tcp: ["127.0.0.1:*", "localhost:*", "[::1]:*"]
      udp: ["127.0.0.1:*", "localhost:*", "[::1]:*"]
      pty: true
      exec: true
      reload: true
      files: true   # what the agent's files section admits
audit_log: audit-%[1]d.jsonl
metrics_listen: %[5]q
cluster:
  edge_id: edge-%[1]d
  peer_listen: %[6]q   # advertised as https://%[6]s
  peer_ca: peer-ca.crt
  peer_cert: {cert: peer-%[1]d.crt, key: peer-%[1]d.key}
  nats:
    embedded:
      listen: %[7]q
      routes: [%[8]s]
      store: nats/edge-%[1]d
`, i, n, trialAddr(trialEdgePort, i), tokenSum, trialAddr(trialMetricsPort, i), trialAddr(trialPeerPort, i),
		trialAddr(trialNATSPort, i), quoteJoin(routes))
}

func quoteJoin(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// haproxyConfig is the balancer of a trial of n edges: TCP mode, so that
// TLS (and the devices' client certificates) reach the edges untouched,
// round robin, and a health check of each edge's /readyz over TLS that
// verifies the edge's certificate against the edge CA: a draining edge
// answers 503 and gets no new connections.
func haproxyConfig(dir string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# HAProxy in front of the trial's %[1]d edges; created by tether-edge dev --cluster.
# Run: haproxy -f %[2]s
global
    maxconn 4096

defaults
    mode tcp
    timeout connect 5s
    # Sessions carry keep-alives every 10 s (edge.yaml keepalive.interval),
    # so an idle tunnel is not cut; keep these above keepalive.timeout.
    timeout client 5m
    timeout server 5m
    timeout check 5s
    # A connection refused by an edge that is stopping goes to another one.
    retries 3
    option redispatch

frontend tether
    bind %[3]s
    default_backend edges

backend edges
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    # TLS health checks that verify the edge's certificate; the traffic
    # itself passes through (mode tcp).
    default-server check check-ssl verify required ca-file %[4]s verifyhost localhost check-sni localhost inter 2s fall 2 rise 2
`, n, filepath.Join(dir, "haproxy.cfg"), trialAddr(trialBalancerPort, 0), filepath.Join(dir, "ca.crt"))
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "    server edge-%d %s\n", i, trialAddr(trialEdgePort, i))
	}
	return b.String()
}

// errTrialListen: --listen does not apply to a trial, whose ports are fixed.
var errTrialListen = errors.New("--listen is for a single dev edge; the cluster trial listens on fixed ports on 127.0.0.1 (the balancer on 8440), which it prints")
