package main

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

func TestTunnelReachesEchoServerWithHalfClose(t *testing.T) {
	w := newWorld(t)
	w.addAgent("dev-1", "allow:\n  tcp: [\"127.0.0.1:*\"]\n")
	target := testutil.TCPServer(t, testutil.EchoThenBye)
	c := w.client("dev-1")

	conn, err := tcp.Dial(ctxT(t), c, target)
	require.NoError(t, err)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	payload := strings.Repeat("tether ", 20000) // several frames
	go func() {
		_, _ = io.WriteString(conn, payload)
		_ = conn.(*transport.Stream).CloseWrite()
	}()
	got, err := io.ReadAll(conn)
	require.NoError(t, err)
	require.Equal(t, payload+"bye", string(got), "the echo, then the server's words after it saw EOF")
}

func TestTargetOutsideAllowListIsRefused(t *testing.T) {
	w := newWorld(t)
	w.addAgent("dev-1", "allow:\n  tcp: [\"127.0.0.1:*\"]\n")
	target := testutil.TCPServerAt(t, "127.0.0.2:0", testutil.EchoThenBye) // the edge allows 127.0.0.2, the agent does not
	c := w.client("dev-1")
	_, err := tcp.Dial(ctxT(t), c, target)
	require.Equal(t, "refused by the device's allow list: tcp "+target+
		" (allowed: 127.0.0.1:*); the device's owner can add a rule under allow.tcp in the agent's config", reasonOf(t, err))
}

func TestReloadGoodThenBadConfig(t *testing.T) {
	w := newWorld(t)
	a := w.addAgent("dev-1", "allow:\n  tcp: [\"127.0.0.1:*\"]\n")
	target := testutil.TCPServerAt(t, "127.0.0.2:0", testutil.EchoThenBye)
	c := w.client("dev-1")

	// Good change: OK, and the new rule is in force.
	w.writeAgentConfig("dev-1", "allow:\n  tcp: [\"127.0.0.1:*\", \"127.0.0.2:*\"]\n")
	require.NoError(t, c.Reload(ctxT(t)))
	conn, err := tcp.Dial(ctxT(t), c, target)
	require.NoError(t, err, "the reloaded allow list admits %s", target)
	conn.Close()

	// Bad change: Error naming the line, and the old config stays.
	w.writeAgentConfig("dev-1", "allow:\n  tcp: [\"127.0.0.1:*\"]\n  bogus: []\n")
	err = c.Reload(ctxT(t))
	reason := reasonOf(t, err)
	require.Contains(t, reason, `config line 7: unknown key "bogus" in section allow; valid keys: tcp, udp`)
	require.Contains(t, reason, "previous config stays in force")
	conn, err = tcp.Dial(ctxT(t), c, target)
	require.NoError(t, err, "a rejected config must leave the previous one in force")
	conn.Close()

	// The reload command's exit status is the answer.
	w.writeAgentConfig("dev-1", "reload: {command: [\"sh\", \"-c\", \"echo cannot restart app >&2; exit 3\"]}\n")
	require.Equal(t, "command exited 3: cannot restart app", reasonOf(t, c.Reload(ctxT(t))))

	// SIGHUP reloads too: widen the list again and wait for it to apply.
	w.writeAgentConfig("dev-1", "allow:\n  tcp: [\"127.0.0.2:*\"]\n")
	require.NoError(t, a.proc.Cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		conn, err := tcp.Dial(ctxT(t), c, target)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}, 30*time.Second, 50*time.Millisecond, "SIGHUP did not apply the new allow list")
	require.Eventually(t, func() bool { return strings.Contains(a.proc.Output(), "SIGHUP") }, 10*time.Second, 20*time.Millisecond)
}

func TestAgentComesBackAfterEdgeRestart(t *testing.T) {
	w := newWorld(t)
	a := w.addAgent("dev-1", "")
	target := testutil.TCPServer(t, testutil.EchoThenBye)

	w.edge.Kill9() // SIGKILL: no GoAway, the agent just loses the connection
	require.Eventually(t, func() bool { return strings.Contains(a.proc.Output(), "disconnected from edge") },
		60*time.Second, 50*time.Millisecond)
	// Several failed redials (logged at debug level) make one warning.
	require.Eventually(t, func() bool { return strings.Count(a.proc.Output(), "still cannot reach edge") >= 2 },
		60*time.Second, 50*time.Millisecond)
	require.Equal(t, 1, strings.Count(a.proc.Output(), "cannot reach edge; retrying"),
		"a retry storm must be logged once:\n%s", a.proc.Output())
	w.startEdge()
	w.waitConnected("dev-1")

	c := w.client("dev-1")
	conn, err := tcp.Dial(ctxT(t), c, target)
	require.NoError(t, err)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = io.WriteString(conn, "again")
	require.NoError(t, err)
	buf := make([]byte, 5)
	_, err = io.ReadFull(conn, buf)
	require.NoError(t, err)
	require.Equal(t, "again", string(buf))
	select {
	case <-a.proc.Done():
		t.Fatal("the agent exited instead of reconnecting")
	default:
	}
}

func TestSigtermClosesStreamsAndExitsZero(t *testing.T) {
	w := newWorld(t)
	a := w.addAgent("dev-1", "pty: {enabled: true, shell: /bin/sh}\n")
	target := testutil.TCPServer(t, testutil.EchoThenBye)
	c := w.client("dev-1")
	conn, err := tcp.Dial(ctxT(t), c, target)
	require.NoError(t, err)
	defer conn.Close()
	// A PTY session whose process would outlive a careless agent.
	marker := fmt.Sprintf("%d", 300000+os.Getpid()%100000)
	sess, err := pty.Open(ctxT(t), c, pty.Request{Command: "/bin/sleep", Args: []string{marker}})
	require.NoError(t, err)
	defer sess.Close()
	require.Eventually(t, func() bool { return len(processesWithArg(marker)) == 1 }, 30*time.Second, 20*time.Millisecond)

	require.NoError(t, signalAndWait(t, a.proc, syscall.SIGTERM), "exit status after SIGTERM")
	require.Equal(t, 0, a.proc.Cmd.ProcessState.ExitCode())
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = io.ReadAll(conn)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the open tunnel was not closed by SIGTERM")
	require.Empty(t, processesWithArg(marker), "the PTY session's process outlived the agent")
}

// processesWithArg lists the PIDs whose command line has arg as an argument.
func processesWithArg(arg string) []string {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []string
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a == arg {
				out = append(out, filepath.Base(filepath.Dir(d)))
			}
		}
	}
	return out
}

func TestCheck(t *testing.T) {
	w := newWorld(t)
	path := w.writeAgentConfig("dev-1", "")

	t.Run("all good", func(t *testing.T) {
		out, code := runBin(t, "tether-agent", "check", "--config", path)
		require.Equal(t, 0, code, out)
		require.Contains(t, out, "device ID \"dev-1\"")
		require.Contains(t, out, "connected to the edge")
		require.Contains(t, out, "all checks passed")
	})
	t.Run("wrong CA", func(t *testing.T) {
		other := certstest.New(t)
		require.NoError(t, certs.WriteFile(filepath.Join(w.dir, "other-ca.crt"), other.CA.CertPEM(), 0o644, true))
		p := w.writeAgentConfig("dev-1", "")
		require.NoError(t, os.WriteFile(p, []byte(strings.Replace(readFile(t, p), "ca: ca.crt", "ca: other-ca.crt", 1)), 0o600))
		out, code := runBin(t, "tether-agent", "check", "--config", p)
		t.Log(out)
		require.Equal(t, checkEdgeTrust, code, out)
		require.Contains(t, out, "the edge's certificate is not signed by the CA in "+filepath.Join(w.dir, "other-ca.crt"))
	})
	t.Run("expired certificate", func(t *testing.T) {
		w.pki.DeviceWith("old", certs.Options{NotBefore: time.Now().Add(-72 * time.Hour), Lifetime: 24 * time.Hour})
		p := w.writeAgentConfig("old", "")
		out, code := runBin(t, "tether-agent", "check", "--config", p)
		t.Log(out)
		require.Equal(t, checkCertTime, code, out)
		require.Contains(t, out, "expired on")
		require.Contains(t, out, "issue a new one")
		require.Contains(t, out, "skip  connection to the edge")
		require.Contains(t, out, "ok    the device certificate is signed by the CA in", "an expired certificate is still checked against the CA")
	})
	t.Run("not valid yet", func(t *testing.T) {
		w.pki.DeviceWith("future", certs.Options{NotBefore: time.Now().Add(48 * time.Hour)})
		out, code := runBin(t, "tether-agent", "check", "--config", w.writeAgentConfig("future", ""))
		require.Equal(t, checkCertTime, code, out)
		require.Contains(t, out, "is not valid yet")
		require.Contains(t, out, "check this device's clock")
	})
	t.Run("not a client certificate", func(t *testing.T) {
		kp, err := w.pki.CA.IssueClientWithEKU("server-only", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, certs.Options{})
		require.NoError(t, err)
		crt, key := w.pki.DeviceFiles("server-only")
		require.NoError(t, kp.Save(crt, key, true))
		out, code := runBin(t, "tether-agent", "check", "--config", w.writeAgentConfig("server-only", ""))
		require.Equal(t, checkCertUsage, code, out)
		require.Contains(t, out, "lacks the ClientAuth extended key usage")
	})
	t.Run("edge refuses a certificate from another CA", func(t *testing.T) {
		other := certstest.New(t)
		kp, err := other.CA.IssueDevice("stranger", certs.Options{})
		require.NoError(t, err)
		crt, key := w.pki.DeviceFiles("stranger")
		require.NoError(t, kp.Save(crt, key, true))
		out, code := runBin(t, "tether-agent", "check", "--config", w.writeAgentConfig("stranger", ""))
		t.Log(out)
		require.Equal(t, checkEdgeRefused, code, out)
		require.Contains(t, out, "not by the CA in")
		require.Contains(t, out, "the edge refused this device")
	})
	t.Run("key does not match", func(t *testing.T) {
		w.pki.Device("a")
		w.pki.Device("b")
		p := w.writeAgentConfig("a", "")
		require.NoError(t, os.WriteFile(p, []byte(strings.Replace(readFile(t, p), "key: a.key", "key: b.key", 1)), 0o600))
		out, code := runBin(t, "tether-agent", "check", "--config", p)
		require.Equal(t, checkCertFile, code, out)
		require.Contains(t, out, "does not belong to the certificate")
	})
	t.Run("bad config", func(t *testing.T) {
		p := w.writeAgentConfig("dev-1", "pty: {enabled: true, shel: /bin/sh}\n")
		out, code := runBin(t, "tether-agent", "check", "--config", p)
		require.Equal(t, checkConfig, code, out)
		require.Contains(t, out, `config line 5: unknown key "shel" in section pty (did you mean "shell"?)`)
	})
	t.Run("programs that cannot run", func(t *testing.T) {
		p := w.writeAgentConfig("dev-1", "pty: {enabled: true, shell: /nonexistent/sh}\nreload: {command: [no-such-reload-tool]}\n")
		out, code := runBin(t, "tether-agent", "check", "--config", p)
		require.Equal(t, checkConfig, code, out)
		require.Contains(t, out, "pty.shell /nonexistent/sh is not an executable file")
		require.Contains(t, out, `reload.command: cannot find "no-such-reload-tool"`)
	})
	t.Run("edge unreachable", func(t *testing.T) {
		p := w.writeAgentConfig("dev-1", "")
		require.NoError(t, os.WriteFile(p, []byte(strings.Replace(readFile(t, p), w.addr, testutil.FreeAddr(t), 1)), 0o600))
		out, code := runBin(t, "tether-agent", "check", "--config", p)
		require.Equal(t, checkUnreachable, code, out)
		require.Contains(t, out, "cannot reach the edge")
	})
}

func TestAgentRefusesBadConfigAtStart(t *testing.T) {
	w := newWorld(t)
	p := w.writeAgentConfig("dev-1", "allow:\n  tcp: [\"127.0.0.1:70000\"]\n")
	out, code := runBin(t, "tether-agent", "--config", p)
	require.Equal(t, exitUsage, code, out)
	require.Contains(t, out, "config line 6: allow.tcp:")
	require.Contains(t, out, "tether-agent check")
}

func TestPTYAndUDPThroughTheAgent(t *testing.T) {
	w := newWorld(t)
	udpTarget, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer udpTarget.Close()
	allowUDP := udpTarget.LocalAddr().String()
	a := &agentProc{id: "dev-1", path: w.writeAgentConfig("dev-1", fmt.Sprintf("pty: {enabled: true, shell: /bin/sh}\nallow: {udp: [%q]}\n", allowUDP))}
	a.proc = start(t, "tether-agent", "--config", a.path, "--log-format", "json")
	w.waitConnected("dev-1")
	c := w.client("dev-1")

	t.Run("pty", func(t *testing.T) {
		sess, err := pty.Open(ctxT(t), c, pty.Request{Cols: 90, Rows: 20, Command: "/bin/sh", Args: []string{"-c", "echo pty-$((6*7)); exit 5"}})
		require.NoError(t, err)
		defer sess.Close()
		_ = sess.SetDeadline(time.Now().Add(30 * time.Second))
		out, _ := io.ReadAll(sess)
		require.Contains(t, string(out), "pty-42")
		st, err := pty.WaitExit(ctxT(t), c, sess.ID)
		require.NoError(t, err)
		require.Equal(t, 5, st.Code)
	})
	t.Run("udp", func(t *testing.T) {
		port := udpTarget.LocalAddr().(*net.UDPAddr).Port
		st, _, err := c.OpenStream(ctxT(t), wire.MsgUDP, []byte(fmt.Sprintf("0:127.0.0.1:%d", port)))
		require.NoError(t, err)
		defer st.Close()
		_, err = st.Write([]byte{byte(port >> 8), byte(port), 0, 4, 'p', 'i', 'n', 'g'})
		require.NoError(t, err)
		_ = udpTarget.SetDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 16)
		n, _, err := udpTarget.ReadFrom(buf)
		require.NoError(t, err)
		require.Equal(t, "ping", string(buf[:n]))
	})
	t.Run("udp outside the allow list", func(t *testing.T) {
		_, _, err := c.OpenStream(ctxT(t), wire.MsgUDP, []byte("0:127.0.0.1:1"))
		require.Equal(t, "refused by the device's allow list: udp 127.0.0.1:1 (allowed: "+allowUDP+
			"); the device's owner can add a rule under allow.udp in the agent's config", reasonOf(t, err))
	})
	t.Run("json logs", func(t *testing.T) {
		// Every line is a JSON record; the connection's records may come
		// before or after the start's.
		var msgs []any
		for _, line := range strings.Split(strings.TrimSpace(a.proc.Output()), "\n") {
			var rec map[string]any
			require.NoError(t, json.Unmarshal([]byte(line), &rec), "log line %q", line)
			msgs = append(msgs, rec["msg"])
		}
		require.Contains(t, msgs, "agent started")
	})
}

// TestHTTPSProxy connects the agent through an HTTP CONNECT proxy named by
// HTTPS_PROXY. The edge is named edge.test, which only the proxy can reach
// (proxies are not used for loopback addresses).
func TestHTTPSProxy(t *testing.T) {
	w := newWorld(t, "edge.test")
	proxy := newConnectProxy(t, w.addr)
	_, port, _ := net.SplitHostPort(w.addr)
	path := w.writeAgentConfig("dev-1", "")
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(readFile(t, path), w.addr, "edge.test:"+port, 1)), 0o600))
	env := []string{"HTTPS_PROXY=http://" + proxy.addr, "NO_PROXY=", "no_proxy=", "https_proxy="}
	startEnv(t, env, "tether-agent", "--config", path)
	w.waitConnected("dev-1")
	require.Contains(t, proxy.requests(), "edge.test:"+port)
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

var _ = fmt.Sprintf

// TestAgentReportsRefusedCertificate: an agent whose certificate the edge
// refuses as expired or revoked logs that, not "cannot reach edge"; its
// start-up warning says how long ago the certificate expired; check
// reports a revoked certificate in the connection step.
func TestAgentReportsRefusedCertificate(t *testing.T) {
	revoked := filepath.Join(t.TempDir(), "revoked.txt")
	require.NoError(t, os.WriteFile(revoked, nil, 0o600))
	w := newWorldWith(t, fmt.Sprintf("revoked: %q\n", revoked))

	t.Run("expired", func(t *testing.T) {
		w.pki.DeviceWith("old", certs.Options{NotBefore: time.Now().Add(-72 * time.Hour), Lifetime: 69 * time.Hour})
		a := start(t, "tether-agent", "--config", w.writeAgentConfig("old", ""))
		require.Eventually(t, func() bool { return strings.Contains(a.Output(), "the edge refused our certificate: expired") },
			60*time.Second, 50*time.Millisecond, "no refusal in the agent's log:\n%s", a.Output())
		out := a.Output()
		require.Contains(t, out, "the device certificate expired 3 hours ago")
		require.NotContains(t, out, "cannot reach edge")
		require.NotRegexp(t, `msg="[^"]*-\d`, out, "a negative duration in a message")
	})
	t.Run("revoked", func(t *testing.T) {
		kp := w.pki.Device("gone")
		require.NoError(t, os.WriteFile(revoked, []byte(certs.SerialHex(kp.Cert)+"\n"), 0o600))
		require.NoError(t, w.edge.Cmd.Process.Signal(syscall.SIGHUP))
		require.Eventually(t, func() bool { return strings.Contains(w.edge.Output(), "policy and revocation list reloaded") },
			30*time.Second, 50*time.Millisecond, "the edge did not reload")
		path := w.writeAgentConfig("gone", "")
		a := start(t, "tether-agent", "--config", path)
		require.Eventually(t, func() bool { return strings.Contains(a.Output(), "the edge refused our certificate: revoked") },
			60*time.Second, 50*time.Millisecond, "no refusal in the agent's log:\n%s", a.Output())
		require.NotContains(t, a.Output(), "cannot reach edge")

		out, code := runBin(t, "tether-agent", "check", "--config", path)
		require.Equal(t, checkEdgeRefused, code, out)
		require.Contains(t, out, "the edge refused our certificate: revoked")
		require.Contains(t, out, "issue this device a new certificate")
	})
}
