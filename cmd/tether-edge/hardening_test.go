package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
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

	"golang.org/x/sys/unix"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

// edgeSetup is a PKI and an edge.yaml in its directory, with clients ops
// and peer allowed TCP to loopback and PTY everywhere.
type edgeSetup struct {
	pki         *certstest.PKI
	dir, path   string
	opsToken    string
	peerToken   string
	peerSum     string
	metricsAddr string
}

const setupConfig = `listen: "127.0.0.1:1"
tls: {cert: edge.crt, key: edge.key}
device_ca: ca.crt
clients:
  - name: ops
    token_sha256: "%s"
    devices: ["*"]
    allow: {tcp: ["127.0.0.1:*"], udp: ["127.0.0.1:*"], pty: true}
  - name: peer
    token_sha256: "%s"
    devices: ["*"]
    allow: {tcp: ["127.0.0.1:*"], pty: true}
audit_log: %s
metrics_listen: "%s"
%s`

func newEdgeSetup(t *testing.T, auditLog, extra string) *edgeSetup {
	t.Helper()
	s := &edgeSetup{pki: certstest.New(t), metricsAddr: testutil.FreeAddr(t)}
	s.dir = s.pki.Dir
	s.path = filepath.Join(s.dir, "edge.yaml")
	var opsSum string
	s.opsToken, opsSum = testutil.NewToken(t)
	s.peerToken, s.peerSum = testutil.NewToken(t)
	s.write(t, opsSum, s.peerSum, auditLog, extra)
	return s
}

func (s *edgeSetup) write(t *testing.T, opsSum, peerSum, auditLog, extra string) {
	t.Helper()
	cfg := fmt.Sprintf(setupConfig, opsSum, peerSum, auditLog, s.metricsAddr, extra)
	if err := os.WriteFile(s.path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// start runs the edge and waits until it serves; it returns the process
// and its address.
func (s *edgeSetup) start(t *testing.T) (*testutil.Proc, string) {
	t.Helper()
	addr := testutil.FreeAddr(t)
	p := startEdge(t, "--config", s.path, "--listen", addr)
	hc := httpsClient(t, filepath.Join(s.dir, "ca.crt"))
	waitFor(t, "the edge to be healthy", func() bool { return p.Exited() || testutil.Healthy(hc, "https://"+addr) })
	if p.Exited() {
		t.Fatalf("the edge exited:\n%s", p.Stderr())
	}
	return p, addr
}

// device connects a device with id whose TCP streams reach their target
// and whose PTY streams are answered OK and reported on ptys.
func (s *edgeSetup) device(t *testing.T, addr, id string, ptys chan<- string) {
	t.Helper()
	dc := &device.Client{URL: "https://" + addr + "/device", TLSConfig: s.pki.DeviceTLS(s.pki.Device(id)), Config: nil, Logger: nil}
	dc.BackoffInitial, dc.BackoffMax = 50*time.Millisecond, 500*time.Millisecond
	dc.Handle(wire.MsgTCP, func(ctx context.Context, st *transport.Stream, p []byte) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", string(p))
		if err != nil {
			_ = wire.WriteError(st, err.Error())
			return nil
		}
		_ = wire.WriteOK(st, nil)
		_, _, _ = transport.Splice(ctx, st, c, nil)
		return nil
	})
	dc.Handle(wire.MsgPTY, func(ctx context.Context, st *transport.Stream, p []byte) error {
		ptys <- string(p)
		_ = wire.WriteOK(st, nil)
		return nil
	})
	if err := dc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Close() })
	hc := httpsClient(t, filepath.Join(s.dir, "ca.crt"))
	waitFor(t, "the device to be listed", func() bool {
		ids, err := listDevices(hc, addr, s.opsToken)
		return err == nil && len(ids) == 1 && ids[0] == id
	})
}

func (s *edgeSetup) client(t *testing.T, addr, id, token string) (*client.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := (&client.Dialer{Edge: "https://" + addr, Token: token, TLSConfig: s.pki.ClientTLS(), Config: nil}).Dial(ctx, id)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// echoOnce sends msg through a TCP stream to echo and checks the answer.
func echoOnce(c *client.Client, echo, msg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := tcp.Dial(ctx, c, echo)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, msg+"\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != msg+"\n" {
		return fmt.Errorf("got %q; want %q", line, msg+"\n")
	}
	return nil
}

// scrape returns the value of the metric sample whose line starts with
// prefix, or -1.
func scrape(t *testing.T, addr, prefix string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == prefix {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return -1
}

// The audit log is a named pipe whose reader stopped. Before, every
// upgrade, refusal and stream hung on it; now TCP streams, refusals and
// SIGHUP go on, a PTY open fails closed with a clear error without
// reaching the device, the stuck sink is logged once and counted, and
// SIGTERM still ends the edge.
func TestStuckAuditPipeDoesNotFreezeTheEdge(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "audit.fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The reader end, opened first so that the edge's open succeeds;
	// shrunk to one page so that it fills after a few records.
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	_ = rc.Control(func(fd uintptr) { _, err = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 4096) })
	if err != nil {
		t.Fatal(err)
	}

	s := newEdgeSetup(t, fifo, "")
	p, addr := s.start(t)
	ptys := make(chan string, 10)
	s.device(t, addr, "dev-1", ptys)
	c, err := s.client(t, addr, "dev-1", s.opsToken)
	if err != nil {
		t.Fatal(err)
	}
	// The reader reads until the client's session is on record, then
	// stops reading (but keeps the pipe open).
	var seen bytes.Buffer
	buf := make([]byte, 4096)
	_ = r.SetReadDeadline(time.Now().Add(30 * time.Second))
	for !strings.Contains(seen.String(), `"event":"client_open"`) {
		n, err := r.Read(buf)
		seen.Write(buf[:n])
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("read the audit pipe: %v (so far: %s)", err, seen.String())
		}
	}

	echo := testutil.TCPServer(t, testutil.LineEcho)
	waitFor(t, "the stuck audit sink to be logged", func() bool {
		if err := echoOnce(c, echo, "through"); err != nil {
			t.Fatalf("a TCP stream failed while the audit pipe was stuck: %v", err)
		}
		return strings.Contains(p.Stderr(), "audit log sink is stuck")
	})
	if v := scrape(t, s.metricsAddr, "tether_edge_audit_sink_stuck"); v != 1 {
		t.Errorf("tether_edge_audit_sink_stuck = %v; want 1", v)
	}
	if v := scrape(t, s.metricsAddr, "tether_edge_audit_records_blocked_total"); v <= 0 {
		t.Errorf("tether_edge_audit_records_blocked_total = %v; want more than 0", v)
	}

	// A refusal answers at once.
	if _, err := s.client(t, addr, "dev-1", "not-a-token"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("dial with a bad token: got %v; want a 401 refusal", err)
	}
	// A shell fails closed and never reaches the device.
	payload, _ := wire.PTYCommand{Cols: 80, Rows: 24, Command: "uptime"}.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	_, _, err = c.OpenStream(ctx, wire.MsgPTY, payload)
	cancel()
	var re *wire.RemoteError
	if !errors.As(err, &re) || !strings.HasPrefix(re.Reason, "audit log unavailable: ") {
		t.Errorf("PTY open with the audit pipe stuck: got %v; want an Error starting \"audit log unavailable: \"", err)
	}
	select {
	case got := <-ptys:
		t.Errorf("an unaudited shell reached the device: %s", got)
	default:
	}
	// SIGHUP (reopen the audit log, reload) is not held up either.
	_ = p.Cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload to be logged", func() bool { return strings.Contains(p.Stderr(), "reloaded clients") })
	if err := echoOnce(c, echo, "after the reload"); err != nil {
		t.Errorf("after SIGHUP: %v", err)
	}
	if n := strings.Count(p.Stderr(), "audit log sink is stuck"); n != 1 {
		t.Errorf("the stuck sink was logged %d times; want once per episode:\n%s", n, p.Stderr())
	}

	// The edge stops on SIGTERM, audit pipe stuck or not.
	if err := stopEdge(t, p); err != nil {
		t.Fatalf("exit %v after SIGTERM; want 0", err)
	}
	if !strings.Contains(p.Stderr(), "audit log not flushed") {
		t.Errorf("the records lost at exit were not reported:\n%s", p.Stderr())
	}
}

// SIGHUP with a client's token rotated closes that client's live
// sessions, with an audit record; other clients' sessions go on, the old
// token is refused and the new one accepted.
func TestSIGHUPTokenRotationClosesLiveSessions(t *testing.T) {
	s := newEdgeSetup(t, "audit.jsonl", "")
	p, addr := s.start(t)
	s.device(t, addr, "dev-1", make(chan string, 10))
	echo := testutil.TCPServer(t, testutil.LineEcho)
	ops, err := s.client(t, addr, "dev-1", s.opsToken)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := s.client(t, addr, "dev-1", s.peerToken)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{ops, peer} {
		if err := echoOnce(c, echo, "before"); err != nil {
			t.Fatal(err)
		}
	}

	newToken, newSum := testutil.NewToken(t)
	s.write(t, newSum, s.peerSum, "audit.jsonl", "")
	_ = p.Cmd.Process.Signal(syscall.SIGHUP)
	select {
	case <-ops.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the session of the rotated token outlived the reload")
	}
	if err := echoOnce(peer, echo, "after"); err != nil {
		t.Errorf("another client's session after the reload: %v", err)
	}
	if _, err := s.client(t, addr, "dev-1", s.opsToken); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("dial with the old token: got %v; want 401", err)
	}
	c, err := s.client(t, addr, "dev-1", newToken)
	if err != nil {
		t.Fatalf("dial with the new token: %v", err)
	}
	if err := echoOnce(c, echo, "new token"); err != nil {
		t.Errorf("with the new token: %v", err)
	}
	revoked := regexp.MustCompile(`"event":"client_close".*"client":"ops".*"result":"revoked","reason":"the token it authenticated with was removed or replaced"`)
	waitFor(t, "the closing to be audited", func() bool {
		b, _ := os.ReadFile(filepath.Join(s.dir, "audit.jsonl"))
		return revoked.Match(b)
	})
	b, _ := os.ReadFile(filepath.Join(s.dir, "audit.jsonl"))
	for _, tok := range []string{s.opsToken, s.peerToken, newToken} {
		if bytes.Contains(b, []byte(tok)) {
			t.Error("a token leaked into the audit log")
		}
	}
	if err := stopEdge(t, p); err != nil {
		t.Fatalf("exit %v after SIGTERM; want 0", err)
	}
}

// keepalive in edge.yaml reaches the sessions: a device that upgrades and
// then goes silent is dropped after keepalive.timeout, not after the
// transport's default.
func TestKeepAliveFromTheConfig(t *testing.T) {
	s := newEdgeSetup(t, "audit.jsonl", "keepalive: {interval: 200ms, timeout: 1s}\n")
	p, addr := s.start(t)
	tc := s.pki.DeviceTLS(s.pki.Device("silent"))
	conn, err := tls.Dial("tcp", addr, tc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The peer announces a short interval of its own (our extension), so
	// that the edge does not grant it the 120 s of a qbee-v1 peer.
	_, err = io.WriteString(conn, "GET /device HTTP/1.1\r\nHost: edge\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Protocol: qbee-v1\r\nTether-Keepalive: 200\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	// Silence: read (and drop) what the edge sends until it hangs up.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the edge kept a silent device past its keep-alive timeout")
	}
	if err := stopEdge(t, p); err != nil {
		t.Fatalf("exit %v after SIGTERM; want 0", err)
	}
}
