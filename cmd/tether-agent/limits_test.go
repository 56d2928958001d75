package main

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/tcp"
)

// TestCheckAndAgentAgreeOnSessionLimits: a config that check passes is one
// the agent starts with, and one the agent refuses, check refuses with the
// same words.
func TestCheckAndAgentAgreeOnSessionLimits(t *testing.T) {
	w := newWorld(t)

	t.Run("over the budget", func(t *testing.T) {
		p := w.writeAgentConfig("dev-1", "max_streams: 1024\nstream_window_kib: 2048\n")
		const want = "config line 5: max_streams: 1024 streams × stream_window_kib 2048 need 2048 MiB of receive buffers, more than receive_budget_mib (128); lower max_streams to 64 or stream_window_kib to 128"
		out, code := runBin(t, "tether-agent", "check", "--config", p)
		require.Equal(t, checkConfig, code, "check exit code; output:\n%s", out)
		require.Contains(t, out, want)
		out, code = runBin(t, "tether-agent", "--config", p)
		require.Equal(t, exitUsage, code, "agent exit code; output:\n%s", out)
		require.Contains(t, out, want)
	})
	t.Run("streams alone narrow the window", func(t *testing.T) {
		p := w.writeAgentConfig("dev-1", "max_streams: 1024\n")
		out, code := runBin(t, "tether-agent", "check", "--config", p)
		require.Equal(t, checkOK, code, "check exit code; output:\n%s", out)
		require.Contains(t, out, "ok    session limits: up to 1024 streams at once (max_streams), a 128 KiB receive window each (stream_window_kib); "+
			"streams whose targets stop reading hold at most 128 MiB together (receive_budget_mib)")
		w.addAgent("dev-1", "max_streams: 1024\n") // starts and connects
	})
}

func TestCheckReportsNameRules(t *testing.T) {
	w := newWorld(t)
	p := w.writeAgentConfig("dev-1", "allow:\n  tcp: [\"127.0.0.1:*\", \"localhost:*\", \"gw.lan:8080\", \"*.lan:22\"]\n  udp: [\"127.0.0.1:*\"]\n")
	out, code := runBin(t, "tether-agent", "check", "--config", p)
	require.Equal(t, checkOK, code, "check exit code; output:\n%s", out)
	require.Contains(t, out, "note  allow.tcp names hosts (gw.lan:8080, *.lan:22): each name is looked up on this device when a tunnel opens")
	require.NotContains(t, out, "allow.udp names hosts")
	require.Contains(t, out, "ok    tcp tunnels: dial_timeout 10s for the lookup and the connection; a tunnel is ended when its target or client takes no byte for 1m30s (stall_timeout)")
	require.Contains(t, out, "ok    udp tunnels: ended after 1m0s without datagrams (udp.idle_timeout); at most 10000 datagrams a second to the target (udp.max_packets_per_second); "+
		"replies at most 10× the bytes sent plus 65536 bytes per 10s (udp.max_reply_ratio, udp.reply_allowance_bytes, udp.reply_window)")
}

// stallTunnels opens n tunnels to a target that never reads and pushes
// more into each than the windows and socket buffers take, so that every
// one stalls with its window full. The writers end with the test.
func stallTunnels(t *testing.T, c *client.Client, target string, n int) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		conns []net.Conn
	)
	t.Cleanup(func() {
		for _, conn := range conns {
			conn.Close()
		}
		wg.Wait()
	})
	chunk := []byte(strings.Repeat("x", 64<<10))
	for range n {
		conn, err := tcp.Dial(ctxT(t), c, target)
		require.NoError(t, err)
		conns = append(conns, conn)
		_ = conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1024 { // 64 MiB
				if _, err := conn.Write(chunk); err != nil {
					return
				}
			}
		}()
	}
}

// TestStreamsBeyondTheBudgetAreRefused fills the receive budget with
// tunnels whose target never reads: one stream more is refused with "too
// many streams" rather than taking more memory. The agent announces its
// cap on the upgrade, so the edge refuses first; the agent's own refusal
// is tested in device and device/agent.
func TestStreamsBeyondTheBudgetAreRefused(t *testing.T) {
	// One client may take the whole device here, so the agent's own cap is
	// what refuses, not the edge's per-client share.
	w := newWorldWith(t, "limits: {max_streams_per_client_per_device: 128}\n")
	w.addAgent("dev-1", "receive_budget_mib: 1\nstream_window_kib: 256\n") // room for 4 windows
	tarpit := testutil.Tarpit(t)
	c := w.client("dev-1")
	stallTunnels(t, c, tarpit, 4)
	_, err := tcp.Dial(ctxT(t), c, tarpit)
	require.Equal(t, "too many streams: device dev-1 has 4 open, the most it serves", reasonOf(t, err))
}

// TestStalledTunnelsAreEnded: a tunnel whose target stopped reading is
// ended after stall_timeout, which gives its stream slot back.
func TestStalledTunnelsAreEnded(t *testing.T) {
	w := newWorldWith(t, "limits: {max_streams_per_client_per_device: 128}\n")
	a := w.addAgent("dev-1", "receive_budget_mib: 1\nstream_window_kib: 256\nstall_timeout: 1s\n")
	tarpit := testutil.Tarpit(t)
	c := w.client("dev-1")
	stallTunnels(t, c, tarpit, 4)
	require.Eventually(t, func() bool {
		conn, err := tcp.Dial(ctxT(t), c, tarpit)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}, 60*time.Second, 50*time.Millisecond, "no stream slot came back from the stalled tunnels")
	require.Contains(t, a.proc.Output(), "no progress while data was waiting")
}
