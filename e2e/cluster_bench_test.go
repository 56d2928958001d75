package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/tcp"
)

// BenchmarkClusterCrossEdge compares, in one run on one three-edge
// cluster, a client on the device's own edge (direct) with a client on
// another edge whose streams cross the peer session (cross): one-stream
// throughput, open to first byte, and shell echo. Open to first byte is
// measured two ways: an optimistic open (tcp.DialEarly, the path of
// tether tcp and tether nc), whose first byte goes out with the request,
// so that the peer hop is crossed once each way; and tcp.Dial, which waits
// for the answer before the first byte goes out, crossing it twice.
func BenchmarkClusterCrossEdge(b *testing.B) {
	c := newClusterSys(b, clusterOpts{keepalive: "{interval: 10s, timeout: 30s}"})
	s := &system{t: b, pki: c.pki, dir: c.dir}
	s.startAgent(agentOpts{id: "dev-1", edgeAddr: c.edges[0].addr})
	c.waitListed([]string{"dev-1"})
	dial := func(e *clusterEdge) *client.Client {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cl, err := (&client.Dialer{Edge: "https://" + e.addr, Token: c.token, TLSConfig: c.pki.ClientTLS()}).Dial(ctx, "dev-1")
		require.NoError(b, err)
		b.Cleanup(func() { cl.Close() })
		return cl
	}
	direct, cross := dial(c.edges[0]), dial(c.edges[1])
	sink, echo := countingSink(b), lineEcho(b)

	// Throughput: the best of eight alternating runs of each, after a
	// warm-up, so that a neighbour's burst does not decide the ratio: a
	// burst only ever slows a run, so the best run is the path's own.
	const n = 128 * mib
	tunnelThroughput(b, direct, sink, 1, 16*mib)
	tunnelThroughput(b, cross, sink, 1, 16*mib)
	var dMBs, xMBs float64
	for range 8 {
		dMBs = max(dMBs, tunnelThroughput(b, direct, sink, 1, n))
		xMBs = max(xMBs, tunnelThroughput(b, cross, sink, 1, n))
	}

	// Latencies: the four kinds of open take turns, one of each per
	// round, so that a burst on the shared machine lands on all of them
	// alike. A thousand of each puts ten samples above the 99th
	// percentile.
	const rounds = 1000
	lat := interleavedOpenLatencies(b, rounds,
		func() (net.Conn, error) { return tcp.Dial(context.Background(), direct, echo) },
		func() (net.Conn, error) { return tcp.Dial(context.Background(), cross, echo) },
		func() (net.Conn, error) { return tcp.DialEarly(context.Background(), direct, echo) },
		func() (net.Conn, error) { return tcp.DialEarly(context.Background(), cross, echo) })
	dOpen, xOpen, dEarly, xEarly := lat[0], lat[1], lat[2], lat[3]
	var dKeys, xKeys []time.Duration
	for range 5 {
		dKeys = append(dKeys, keystrokes(b, direct, 100)...)
		xKeys = append(xKeys, keystrokes(b, cross, 100)...)
	}
	for _, d := range [][]time.Duration{dKeys, xKeys} {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	}

	b.ReportMetric(dMBs, "direct-MB/s")
	b.ReportMetric(xMBs, "cross-MB/s")
	b.ReportMetric(xMBs/dMBs, "x-direct-throughput")
	b.ReportMetric(percentile(dOpen, 0.5), "direct-open-p50-ms")
	b.ReportMetric(percentile(dOpen, 0.99), "direct-open-p99-ms")
	b.ReportMetric(percentile(xOpen, 0.5)-percentile(dOpen, 0.5), "cross-open-extra-p50-ms")
	b.ReportMetric(percentile(xOpen, 0.99)-percentile(dOpen, 0.99), "cross-open-extra-p99-ms")
	b.ReportMetric(percentile(dEarly, 0.5), "direct-early-open-p50-ms")
	b.ReportMetric(percentile(dEarly, 0.99), "direct-early-open-p99-ms")
	b.ReportMetric(percentile(xEarly, 0.5)-percentile(dEarly, 0.5), "cross-early-open-extra-p50-ms")
	b.ReportMetric(percentile(xEarly, 0.99)-percentile(dEarly, 0.99), "cross-early-open-extra-p99-ms")
	b.ReportMetric(percentile(dKeys, 0.5), "direct-echo-p50-ms")
	b.ReportMetric(percentile(xKeys, 0.5)-percentile(dKeys, 0.5), "cross-echo-extra-p50-ms")
}

// BenchmarkClusterStorm holds 5,000 device sessions on one edge of a
// three-edge cluster, kills that edge with -9, and measures until every
// device is back (through the balancer, on the two survivors) and both
// survivors list all of them; and how many presence writes that took per
// device. The devices run in this process; the edges are processes.
func BenchmarkClusterStorm(b *testing.B) {
	n := clusterStormDevices()
	c := newClusterSys(b, clusterOpts{keepalive: "{interval: 10s, timeout: 30s}",
		extra: "limits: {upgrade_rate: 100000, upgrade_burst: 100000}\n"})
	victim, survivors := c.edges[0], c.edges[1:]
	c.lb.pin(0)

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	devs := make([]*device.Client, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var failed atomic.Int64
	for i := range devs {
		id := fmt.Sprintf("storm-%d", i)
		devs[i] = &device.Client{URL: "https://" + c.lb.addr() + "/device", TLSConfig: c.pki.DeviceTLS(c.pki.Device(id)), Logger: quiet}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if devs[i].Start(context.Background()) != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	b.Cleanup(func() {
		for _, d := range devs {
			d.Close()
		}
	})
	require.Zero(b, failed.Load(), "devices that could not start")
	metrics := func(e *clusterEdge) string { return "http://" + e.metrics + "/metrics" }
	require.Eventually(b, func() bool {
		return scrape(b, metrics(victim), "tether_edge_devices_connected") == float64(n)
	}, 5*time.Minute, 100*time.Millisecond, "the devices did not all connect to %s", victim.id)
	require.Eventually(b, func() bool {
		for _, e := range survivors {
			if scrape(b, metrics(e), "tether_edge_cluster_devices") != float64(n) {
				return false
			}
		}
		return true
	}, 2*time.Minute, 100*time.Millisecond, "the survivors do not list the devices of %s", victim.id)
	c.lb.unpin()
	writes := func(series string) float64 {
		sum := 0.0
		for _, e := range survivors {
			v, _ := scrapeFound(b, metrics(e), "tether_edge_cluster_presence_writes_total"+series)
			sum += v
		}
		return sum
	}
	stored, attempts := writes(`{op="announce",result="ok"}`), writes("")

	victim.proc.Kill9()
	killed := time.Now()
	var connected time.Duration
	require.Eventually(b, func() bool {
		for _, d := range devs {
			if !d.Connected() {
				return false
			}
		}
		if connected == 0 {
			connected = time.Since(killed)
		}
		for _, e := range survivors {
			if scrape(b, metrics(e), "tether_edge_cluster_devices") != float64(n) {
				return false
			}
		}
		held := 0.0
		for _, e := range survivors {
			held += scrape(b, metrics(e), "tether_edge_devices_connected")
		}
		return held == float64(n)
	}, 5*time.Minute, 100*time.Millisecond, "the devices did not re-home")
	listed := time.Since(killed)
	b.ReportMetric(connected.Seconds(), "all-reconnected-s")
	b.ReportMetric(listed.Seconds(), "all-listed-everywhere-s")
	b.ReportMetric(listed.Seconds()/60, "x-60s-budget")
	// Writes stored, and write attempts (an announcement that fails while
	// NATS elects a new leader for what the dead edge led is tried again).
	b.ReportMetric((writes(`{op="announce",result="ok"}`)-stored)/float64(n), "presence-writes/device")
	b.ReportMetric((writes("")-attempts)/float64(n), "presence-write-attempts/device")
}

// clusterStormDevices is how many devices BenchmarkClusterStorm holds:
// 5,000, or TETHER_BENCH_STORM_DEVICES for a quicker look.
func clusterStormDevices() int {
	if v, err := strconv.Atoi(os.Getenv("TETHER_BENCH_STORM_DEVICES")); err == nil && v > 0 {
		return v
	}
	return 5000
}
