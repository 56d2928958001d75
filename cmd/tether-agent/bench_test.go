package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/tcp"
)

// BenchmarkAgentFootprint measures the real agent process as it ships
// (CGO_ENABLED=0, -trimpath, stripped): its binary size, its resident set
// once connected and idle, and its resident set with 100 open TCP tunnels.
// Run it with -benchtime 1x (make bench); the figures do not depend on b.N.
func BenchmarkAgentFootprint(b *testing.B) {
	// Room for the 100 tunnels of one client, at the edge and at the agent
	// (whose default is 64 streams).
	w := newWorldWith(b, "limits: {max_streams_per_client_per_device: 128}\n")
	a := w.addAgent("bench-1", "max_streams: 128\n")
	pid := a.proc.Cmd.Process.Pid
	target := testutil.TCPServer(b, testutil.EchoThenBye)

	info, err := os.Stat(bin("tether-agent"))
	require.NoError(b, err)

	// Let the first keep-alives and GC cycles pass before sampling. Then
	// what the idle agent costs the device: its context switches (each a
	// wake-up of one of its threads) and its CPU time, over 5 s.
	time.Sleep(2 * time.Second)
	idle := rssKiB(b, pid)
	const idleFor = 5 * time.Second
	cs0, cpu0 := testutil.ContextSwitches(b, pid), testutil.CPUSeconds(b, pid)
	time.Sleep(idleFor)
	idleWakeups := (testutil.ContextSwitches(b, pid) - cs0) / idleFor.Seconds()
	idleCPU := (testutil.CPUSeconds(b, pid) - cpu0) / idleFor.Seconds()

	// The edge caps the streams of one client session, so the tunnels are
	// spread over several clients.
	const tunnels, perClient = 100, 25
	var c transport.Opener
	conns := make([]net.Conn, 0, tunnels)
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	for i := 0; i < tunnels; i++ {
		if i%perClient == 0 {
			c = w.client("bench-1")
		}
		conn, err := tcp.Dial(ctxT(b), c, target)
		require.NoError(b, err)
		conns = append(conns, conn)
		_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
		_, err = io.WriteString(conn, "x")
		require.NoError(b, err)
		buf := make([]byte, 1)
		_, err = io.ReadFull(conn, buf)
		require.NoError(b, err)
	}
	time.Sleep(time.Second)
	busy := rssKiB(b, pid)

	for i := 0; i < b.N; i++ {
		// The figures above are the result; nothing scales with b.N.
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(info.Size())/(1<<20), "binary-MiB")
	b.ReportMetric(float64(idle)/1024, "idle-RSS-MiB")
	b.ReportMetric(float64(busy)/1024, "100-tunnels-RSS-MiB")
	b.ReportMetric(float64(busy-idle)/tunnels, "KiB/tunnel")
	b.ReportMetric(idleWakeups, "idle-wakeups/s")
	b.ReportMetric(idleCPU*1000, "idle-CPU-ms/s")
	b.Logf("tether-agent: binary %d bytes, idle RSS %d KiB, RSS with %d tunnels %d KiB", info.Size(), idle, tunnels, busy)
}

// rssKiB reads VmRSS of pid from /proc.
func rssKiB(tb testing.TB, pid int) int64 {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(tb, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			require.NoError(tb, err)
			return n
		}
	}
	tb.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
