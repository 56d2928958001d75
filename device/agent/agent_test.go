package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

// testEdge is a minimal edge over real TLS: it verifies the device
// certificate, upgrades /device and hands each device session to the test,
// which then opens streams on it as the edge would.
type testEdge struct {
	t        *testing.T
	url      string
	srv      *http.Server
	sessions chan *transport.Session

	mu  sync.Mutex
	all []*transport.Session
}

func newTestEdge(t *testing.T, pki *certstest.PKI) *testEdge {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.EdgeTLS())
	require.NoError(t, err)
	e := &testEdge{t: t, url: "https://" + ln.Addr().String() + "/device", sessions: make(chan *transport.Session, 8)}
	mux := http.NewServeMux()
	mux.HandleFunc("/device", func(w http.ResponseWriter, r *http.Request) {
		if _, err := certs.VerifyDevice(r.TLS.PeerCertificates, pki.Pool(), time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		s, err := transport.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		e.mu.Lock()
		e.all = append(e.all, s)
		e.mu.Unlock()
		e.sessions <- s
	})
	e.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = e.srv.Serve(ln) }()
	t.Cleanup(func() {
		e.srv.Close()
		<-done
		e.mu.Lock()
		for _, s := range e.all {
			s.Close()
		}
		e.mu.Unlock()
	})
	return e
}

// device waits for the next device session and returns a client that opens
// streams on it.
func (e *testEdge) device(t *testing.T) *client.Client {
	t.Helper()
	select {
	case s := <-e.sessions:
		return client.New(s)
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not connect to the edge")
		return nil
	}
}

// agentEnv is an agent with its files in a temp dir.
type agentEnv struct {
	dir, path string
	pki       *certstest.PKI
	edge      *testEdge
	agent     *Agent
}

// writeConfig writes agent.yaml with the given extra YAML after the
// connection keys.
func (env *agentEnv) writeConfig(t *testing.T, extra string) {
	t.Helper()
	cfg := fmt.Sprintf("edge: %q\ncert: dev.crt\nkey: dev.key\nca: ca.crt\n%s", env.edge.url, extra)
	tmp := env.path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(cfg), 0o600))
	require.NoError(t, os.Rename(tmp, env.path))
}

// startAgent starts an agent with the given extra YAML; each opt may
// change the Agent before Start.
func startAgent(t *testing.T, extra string, opts ...func(*Agent)) (*agentEnv, *client.Client) {
	t.Helper()
	pki := certstest.New(t)
	env := &agentEnv{dir: t.TempDir(), pki: pki, edge: newTestEdge(t, pki)}
	env.path = filepath.Join(env.dir, "agent.yaml")
	kp := pki.Device("dev-1")
	require.NoError(t, kp.Save(filepath.Join(env.dir, "dev.crt"), filepath.Join(env.dir, "dev.key"), true))
	require.NoError(t, certs.WriteFile(filepath.Join(env.dir, "ca.crt"), pki.CA.CertPEM(), 0o644, true))
	env.writeConfig(t, extra)
	env.agent = &Agent{ConfigPath: env.path, TLSConfig: pki.DeviceTLS(kp), Logger: testLogger(t),
		BackoffInitial: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}
	for _, o := range opts {
		o(env.agent)
	}
	require.NoError(t, env.agent.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, env.agent.Close()) })
	return env, env.edge.device(t)
}

func openWithin(t *testing.T, c *client.Client, typ wire.MsgType, payload string) (*transport.Stream, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, _, err := c.OpenStream(ctx, typ, []byte(payload))
	return st, err
}

func TestAgentTCPTunnelCarriesHalfClose(t *testing.T) {
	_, edge := startAgent(t, "")
	addr := testutil.TCPServer(t, testutil.EchoThenBye)
	st, err := openWithin(t, edge, wire.MsgTCP, addr)
	require.NoError(t, err)
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = io.WriteString(st, "hello")
	require.NoError(t, err)
	buf := make([]byte, 5)
	_, err = io.ReadFull(st, buf)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf))
	// Half-close: the server sees EOF, and its answer after that arrives.
	require.NoError(t, st.CloseWrite())
	rest, err := io.ReadAll(st)
	require.NoError(t, err)
	require.Equal(t, "bye", string(rest))
}

func TestAgentTCPRefusals(t *testing.T) {
	_, edge := startAgent(t, "")
	addr := testutil.TCPServer(t, testutil.EchoThenBye)
	_, port, _ := net.SplitHostPort(addr)
	cases := []struct {
		name, payload, want string
	}{
		{"outside the default allow list", "10.0.0.5:25",
			"refused by the device's allow list: tcp 10.0.0.5:25 (allowed: 127.0.0.1:*, [::1]:*, localhost:*)"},
		{"another loopback address", "127.0.0.2:" + port, "refused by the device's allow list: tcp 127.0.0.2:" + port},
		{"not host:port", "no-port", "bad TCP tunnel target"},
		{"junk port", "127.0.0.1:0x16", "bad TCP tunnel target"},
		{"nothing listens", "127.0.0.1:1", "connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := openWithin(t, edge, wire.MsgTCP, tc.payload)
			var re *wire.RemoteError
			require.ErrorAs(t, err, &re)
			require.Contains(t, re.Reason, tc.want)
		})
	}
	t.Run("other spellings of loopback are allowed", func(t *testing.T) {
		for _, host := range []string{"127.1", "0x7f.0.0.1", "localhost", "LOCALHOST."} {
			st, err := openWithin(t, edge, wire.MsgTCP, host+":"+port)
			require.NoError(t, err, host)
			st.Close()
		}
	})
}

func TestAgentUnknownTypeAndDisabledPTY(t *testing.T) {
	_, edge := startAgent(t, "")
	_, err := openWithin(t, edge, wire.MsgType(0x7f), "")
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "unsupported stream type 0x7f")

	// File transfers are served, and refused until agent.yaml allows them.
	_, err = openWithin(t, edge, wire.MsgFileTransfer, `{"direction":0,"path":"/etc"}`)
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "not allowed: download /etc")

	_, err = openWithin(t, edge, wire.MsgPTY, `{"sid":"","type":0,"cols":80,"rows":24}`)
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "shell access is disabled on this device")

	_, err = openWithin(t, edge, wire.MsgPTY, `{"cols":"wide"}`)
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "bad PTY request")
}

func TestAgentUDPAllowList(t *testing.T) {
	_, edge := startAgent(t, "allow:\n  udp: [\"127.0.0.1:53\"]\n")
	_, err := openWithin(t, edge, wire.MsgUDP, "0:127.0.0.1:54")
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "refused by the device's allow list: udp 127.0.0.1:54 (allowed: 127.0.0.1:53)")

	// An allowed target relays a datagram both ways.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	env2, edge2 := startAgent(t, fmt.Sprintf("allow:\n  udp: [%q]\n", pc.LocalAddr().String()))
	_ = env2
	port := pc.LocalAddr().(*net.UDPAddr).Port
	st, err := openWithin(t, edge2, wire.MsgUDP, fmt.Sprintf("0:%s", pc.LocalAddr()))
	require.NoError(t, err)
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(30 * time.Second))
	frame := []byte{byte(port >> 8), byte(port), 0, 4, 'p', 'i', 'n', 'g'}
	_, err = st.Write(frame)
	require.NoError(t, err)
	_ = pc.SetDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 64)
	n, from, err := pc.ReadFrom(buf)
	require.NoError(t, err)
	require.Equal(t, "ping", string(buf[:n]))
	_, err = pc.WriteTo([]byte("pong"), from)
	require.NoError(t, err)
	hdr := make([]byte, 8)
	_, err = io.ReadFull(st, hdr)
	require.NoError(t, err)
	require.Equal(t, "pong", string(hdr[4:]))
}

func TestAgentReload(t *testing.T) {
	env, edge := startAgent(t, "")
	addr := testutil.TCPServer(t, testutil.EchoThenBye)
	_, port, _ := net.SplitHostPort(addr)
	other := "127.0.0.2:" + port // not allowed by default

	reload := func() error {
		st, err := openWithin(t, edge, wire.MsgReload, "")
		if err == nil {
			st.Close()
		}
		return err
	}

	// A good change: the new allow list is in force when OK arrives.
	env.writeConfig(t, "allow:\n  tcp: [\"127.0.0.1:*\", \"127.0.0.2:*\"]\n")
	require.NoError(t, reload())
	require.Equal(t, []string{"127.0.0.1:*", "127.0.0.2:*"}, env.agent.CurrentConfig().TCPAllow())
	_, err := openWithin(t, edge, wire.MsgTCP, other)
	var re *wire.RemoteError
	if err != nil {
		require.ErrorAs(t, err, &re)
		require.NotContains(t, re.Reason, "allow list", "the new rule is not in force")
	}

	// A bad change: Error with the line, and the old config stays.
	env.writeConfig(t, "allow:\n  tcp: [\"127.0.0.1:*\"]\nfoo: 1\n")
	err = reload()
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, `config line 7: unknown key "foo"`)
	require.Contains(t, re.Reason, "previous config stays in force")
	require.Equal(t, []string{"127.0.0.1:*", "127.0.0.2:*"}, env.agent.CurrentConfig().TCPAllow())

	// Changing the edge needs a restart.
	env.writeConfig(t, "")
	require.NoError(t, os.WriteFile(env.path, []byte(strings.Replace(mustRead(t, env.path), env.edge.url, "https://elsewhere.example:8443/device", 1)), 0o600))
	err = reload()
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "config line 1: edge changed; restart the agent")
	require.Equal(t, []string{"127.0.0.1:*", "127.0.0.2:*"}, env.agent.CurrentConfig().TCPAllow())

	// The reload command's failure is the answer; the config is applied.
	env.writeConfig(t, "reload:\n  command: [\"sh\", \"-c\", \"echo service would not restart >&2; exit 3\"]\n")
	err = reload()
	require.ErrorAs(t, err, &re)
	require.Equal(t, "command exited 3: service would not restart", re.Reason)
	require.Equal(t, DefaultAllow, env.agent.CurrentConfig().TCPAllow())
	_, err = openWithin(t, edge, wire.MsgTCP, other)
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "refused by the device's allow list")

	// The same through Agent.Reload, as SIGHUP does it.
	marker := filepath.Join(env.dir, "ran")
	env.writeConfig(t, fmt.Sprintf("reload:\n  command: [\"touch\", %q]\n", marker))
	require.NoError(t, env.agent.Reload(context.Background()))
	require.FileExists(t, marker)
}

// TestAgentReloadCoalescesStreams sends reloads while one holds its command
// open: every stream gets an answer, and the command runs at most twice.
func TestAgentReloadCoalescesStreams(t *testing.T) {
	env, edge := startAgent(t, "")
	gate := filepath.Join(env.dir, "gate")
	runs := filepath.Join(env.dir, "runs")
	script := fmt.Sprintf("echo run >> %q; while [ ! -e %q ]; do sleep 0.05; done", runs, gate)
	env.writeConfig(t, fmt.Sprintf("reload:\n  command: [\"sh\", \"-c\", %q]\n", script))

	errs := make(chan error, 6)
	go func() { errs <- env.agent.Reload(context.Background()) }()
	require.Eventually(t, func() bool { return strings.Count(readOrEmpty(runs), "run") == 1 }, 30*time.Second, 10*time.Millisecond)
	for range 5 {
		go func() {
			st, err := openWithin(t, edge, wire.MsgReload, "")
			if err == nil {
				st.Close()
			}
			errs <- err
		}()
	}
	// Every stream's request is queued behind the held run before it ends.
	require.Eventually(t, func() bool { return env.agent.reloads.waiting() == 5 }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, os.WriteFile(gate, nil, 0o600))
	for range 6 {
		select {
		case err := <-errs:
			require.NoError(t, err)
		case <-time.After(60 * time.Second):
			t.Fatal("a reload was never answered")
		}
	}
	require.Equal(t, 2, strings.Count(readOrEmpty(runs), "run"), "five reloads during one run coalesce into one more run")
}

func TestAgentReconnects(t *testing.T) {
	env, edge := startAgent(t, "")
	require.Eventually(t, env.agent.Connected, 30*time.Second, 10*time.Millisecond)
	edge.Session().Close()
	edge2 := env.edge.device(t)
	addr := testutil.TCPServer(t, testutil.EchoThenBye)
	st, err := openWithin(t, edge2, wire.MsgTCP, addr)
	require.NoError(t, err)
	st.Close()
}

func TestAgentStartErrors(t *testing.T) {
	a := &Agent{ConfigPath: filepath.Join(t.TempDir(), "none.yaml")}
	require.ErrorContains(t, a.Start(context.Background()), "TLSConfig is required")
	a.TLSConfig = &tls.Config{}
	require.ErrorContains(t, a.Start(context.Background()), "no such file")
	require.ErrorContains(t, a.Reload(context.Background()), "not started")
	require.NoError(t, a.Close())
	require.ErrorIs(t, a.Start(context.Background()), ErrAgentClosed)
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func readOrEmpty(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// TestAgentPTYFollowsReload starts with PTY off, turns it on by reload,
// and runs a command on a real pseudo-terminal.
func TestAgentPTYFollowsReload(t *testing.T) {
	env, edge := startAgent(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req := pty.Request{Cols: 100, Rows: 30, Command: "/bin/sh", Args: []string{"-c", "echo cols=$(stty size); exit 7"}}
	_, err := pty.Open(ctx, edge, req)
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "disabled")

	env.writeConfig(t, "pty: {enabled: true, shell: /bin/sh}\n")
	require.NoError(t, env.agent.Reload(ctx))
	sess, err := pty.Open(ctx, edge, req)
	require.NoError(t, err)
	defer sess.Close()
	_ = sess.SetDeadline(time.Now().Add(60 * time.Second))
	out, _ := io.ReadAll(sess)
	require.Contains(t, string(out), "cols=30 100")
	st, err := pty.WaitExit(ctx, edge, sess.ID)
	require.NoError(t, err)
	require.True(t, st.Exited)
	require.Equal(t, 7, st.Code)
}

func TestAgentMaxStreams(t *testing.T) {
	_, edge := startAgent(t, "max_streams: 2\n")
	addr := testutil.TCPServer(t, testutil.EchoThenBye)
	for range 2 {
		st, err := openWithin(t, edge, wire.MsgTCP, addr)
		require.NoError(t, err)
		defer st.Close()
	}
	_, err := openWithin(t, edge, wire.MsgTCP, addr)
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "too many streams: this device allows 2 at once")
}

// TestAgentSurvivesMalformedOpenings writes hand-built opening messages:
// cut short, unknown, and oversized for a TCP target. The agent answers
// or closes each stream and keeps serving.
func TestAgentSurvivesMalformedOpenings(t *testing.T) {
	_, edge := startAgent(t, "")
	addr := testutil.TCPServer(t, testutil.EchoThenBye)
	raw := func(b []byte) ([]byte, error) {
		st, err := edge.Session().Open()
		require.NoError(t, err)
		defer st.Close()
		_ = st.SetDeadline(time.Now().Add(30 * time.Second))
		_, err = st.Write(b)
		require.NoError(t, err)
		require.NoError(t, st.CloseWrite())
		return io.ReadAll(st)
	}
	// A header announcing 65535 bytes, then 3 bytes and EOF: no answer.
	out, _ := raw([]byte{byte(wire.MsgTCP), 0xff, 0xff, 'a', 'b', 'c'})
	require.Empty(t, out)
	// An unknown type gets an Error, never a silent close.
	out, err := raw([]byte{0x7f, 0, 0})
	require.NoError(t, err)
	m, err := wire.ReadMessage(bytesReader(out))
	require.NoError(t, err)
	require.Equal(t, wire.MsgError, m.Type)
	require.Contains(t, string(m.Payload), "unsupported stream type 0x7f")
	// A TCP target of 65535 bytes is refused with a reason.
	long := make([]byte, 0, wire.HeaderSize+wire.MaxPayload)
	long = append(long, byte(wire.MsgTCP), 0xff, 0xff)
	for range wire.MaxPayload {
		long = append(long, 'a')
	}
	out, err = raw(long)
	require.NoError(t, err)
	m, err = wire.ReadMessage(bytesReader(out))
	require.NoError(t, err)
	require.Equal(t, wire.MsgError, m.Type)
	require.Contains(t, string(m.Payload), "bad TCP tunnel target")

	// And the agent still works.
	st, err := openWithin(t, edge, wire.MsgTCP, addr)
	require.NoError(t, err)
	st.Close()
}

func bytesReader(b []byte) io.Reader { return strings.NewReader(string(b)) }
