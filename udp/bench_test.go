package udp_test

import (
	"net"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/udp"
)

// BenchmarkUDPTunnel measures datagrams per second and loss through a
// tunnel (local peer → Listener → TLS session → broker → device → target),
// beside direct loopback UDP from the same sender to the same target in the
// same run, and the round trip of one datagram at a time both ways.
//
// Each iteration blasts burstCount datagrams of burstSize bytes as fast as
// the sender can, then counts what arrived; the rate is what arrived per
// second of the whole exchange. Loss is the share that never arrived (a
// full socket buffer drops, on either path). The device's packet-rate
// limit is off for the measurement.
func BenchmarkUDPTunnel(b *testing.B) {
	const (
		burstCount = 20000
		burstSize  = 512
		echoCount  = 500
		// echoTotal datagrams go out with echoWindowSize in flight, each
		// echo letting the next one go: the rate both ways at once that a
		// flow-controlled sender gets.
		echoTotal      = 20000
		echoWindowSize = 32
	)
	r := newRig(b, udp.DeviceConfig{MaxPacketsPerSecond: -1, IdleTimeout: time.Hour})

	var sinkCount atomic.Int64
	sink := newUDPServer(b, "127.0.0.1:0", func(_ *net.UDPAddr, d []byte) []byte {
		if len(d) <= 2 { // pings (1 byte) and window echoes (2 bytes) are answered
			return d
		}
		sinkCount.Add(1)
		return nil
	})
	l := r.listen(b, sink.addr(), &udp.Listener{IdleTimeout: time.Hour})
	peer := localPeer(b)
	_ = peer.SetWriteBuffer(4 << 20)

	// Open the peer's stream before measuring.
	ping(b, peer, l.Addr().(*net.UDPAddr))

	var tunRate, dirRate, tunLoss, dirLoss float64
	var tunEcho, dirEcho, tunEchoLoss, dirEchoLoss float64
	var tunRTT, dirRTT []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rate, loss := blast(b, peer, l.Addr().(*net.UDPAddr), &sinkCount, burstCount, burstSize)
		tunRate += rate
		tunLoss += loss
		rate, loss = blast(b, peer, sink.conn.LocalAddr().(*net.UDPAddr), &sinkCount, burstCount, burstSize)
		dirRate += rate
		dirLoss += loss
		rate, loss = echoWindow(b, peer, l.Addr().(*net.UDPAddr), echoTotal, echoWindowSize)
		tunEcho += rate
		tunEchoLoss += loss
		rate, loss = echoWindow(b, peer, sink.conn.LocalAddr().(*net.UDPAddr), echoTotal, echoWindowSize)
		dirEcho += rate
		dirEchoLoss += loss
		for j := 0; j < echoCount; j++ {
			tunRTT = append(tunRTT, ping(b, peer, l.Addr().(*net.UDPAddr)))
			dirRTT = append(dirRTT, ping(b, peer, sink.conn.LocalAddr().(*net.UDPAddr)))
		}
	}
	b.StopTimer()
	b.Logf("listener %+v device %+v", l.Stats(), r.dev.Stats())
	n := float64(b.N)
	b.ReportMetric(tunRate/n, "tunnel-dgram/s")
	b.ReportMetric(dirRate/n, "direct-dgram/s")
	b.ReportMetric(tunRate/dirRate, "x-direct-dgram/s")
	b.ReportMetric(100*tunLoss/n, "tunnel-loss-%")
	b.ReportMetric(100*dirLoss/n, "direct-loss-%")
	b.ReportMetric(tunEcho/n, "tunnel-echo-dgram/s")
	b.ReportMetric(dirEcho/n, "direct-echo-dgram/s")
	b.ReportMetric(tunEcho/dirEcho, "x-direct-echo-dgram/s")
	b.ReportMetric(100*tunEchoLoss/n, "tunnel-echo-loss-%")
	b.ReportMetric(100*dirEchoLoss/n, "direct-echo-loss-%")
	b.ReportMetric(float64(median(tunRTT).Microseconds()), "tunnel-rtt-p50-µs")
	b.ReportMetric(float64(median(dirRTT).Microseconds()), "direct-rtt-p50-µs")
}

// blast sends count datagrams of size bytes to dst and waits until the sink
// has seen them all or nothing more arrived for a while. It returns the
// datagrams that arrived per second and the share lost.
func blast(b *testing.B, c *net.UDPConn, dst *net.UDPAddr, sink *atomic.Int64, count, size int) (rate, loss float64) {
	b.Helper()
	msg := make([]byte, size)
	base := sink.Load()
	start := time.Now()
	for i := 0; i < count; i++ {
		_, err := c.WriteToUDP(msg, dst)
		require.NoError(b, err)
	}
	// The last arrival ends the exchange; stop once all arrived or the sink
	// stayed still for 300 ms.
	last, lastAt := sink.Load(), time.Now()
	for last-base < int64(count) && time.Since(lastAt) < 300*time.Millisecond {
		time.Sleep(2 * time.Millisecond)
		if v := sink.Load(); v != last {
			last, lastAt = v, time.Now()
		}
	}
	got := float64(last - base)
	return got / lastAt.Sub(start).Seconds(), 1 - got/float64(count)
}

// echoWindow sends total two-byte datagrams to an echoing dst with window
// of them in flight, sending the next one for each echo. An echo that does
// not come within 200 ms counts as lost and frees its place. It returns the
// echoes per second and the share lost.
func echoWindow(b *testing.B, c *net.UDPConn, dst *net.UDPAddr, total, window int) (rate, loss float64) {
	b.Helper()
	msg := []byte{2, 2}
	buf := make([]byte, 2048)
	sent, got, inflight := 0, 0, 0
	start := time.Now()
	for sent < total || inflight > 0 {
		for inflight < window && sent < total {
			_, err := c.WriteToUDP(msg, dst)
			require.NoError(b, err)
			sent++
			inflight++
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			inflight = 0 // the rest of the window is lost
			continue
		}
		if n == 2 {
			got++
			inflight--
		}
	}
	return float64(got) / time.Since(start).Seconds(), 1 - float64(got)/float64(total)
}

// ping sends one byte to dst and waits for the echo, retrying a lost one.
func ping(b testing.TB, c *net.UDPConn, dst *net.UDPAddr) time.Duration {
	buf := make([]byte, 2048)
	for attempt := 0; attempt < 10; attempt++ {
		start := time.Now()
		_, err := c.WriteToUDP([]byte{1}, dst)
		require.NoError(b, err)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				break
			}
			if n == 1 {
				return time.Since(start)
			}
		}
	}
	b.Fatal("no echo after 10 attempts")
	return 0
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
