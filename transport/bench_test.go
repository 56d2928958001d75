package transport_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/transport"
)

// benchBytes is what one throughput iteration moves, so that a single
// iteration (make bench runs -benchtime 1x) is already a stable figure.
const benchBytes = 256 << 20

// sink reads a connection to EOF, then answers with the count (8 bytes).
func sink(c *net.TCPConn) {
	n, err := io.Copy(io.Discard, c)
	if err != nil {
		return
	}
	_, _ = c.Write(binary.BigEndian.AppendUint64(nil, uint64(n)))
}

// source answers a connection with the number of bytes its 8-byte request
// asks for, then closes.
func source(c *net.TCPConn) {
	var req [8]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return
	}
	buf := make([]byte, 64<<10)
	for left := int64(binary.BigEndian.Uint64(req[:])); left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
		left -= n
	}
}

// upload writes size bytes to c, half-closes and waits for the count.
func upload(tb testing.TB, c net.Conn, size int64) {
	buf := make([]byte, 64<<10)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		_, err := c.Write(buf[:n])
		require.NoError(tb, err)
		left -= n
	}
	require.NoError(tb, c.(interface{ CloseWrite() error }).CloseWrite())
	var ack [8]byte
	_, err := io.ReadFull(c, ack[:])
	require.NoError(tb, err)
	require.Equal(tb, uint64(size), binary.BigEndian.Uint64(ack[:]))
}

// download asks c for size bytes and reads them.
func download(tb testing.TB, c net.Conn, size int64) {
	_, err := c.Write(binary.BigEndian.AppendUint64(nil, uint64(size)))
	require.NoError(tb, err)
	n, err := io.Copy(io.Discard, c)
	require.NoError(tb, err)
	require.Equal(tb, size, n)
}

// rawTLS measures one direction of plain TLS between two loopback sockets,
// with the same certificates, and returns the time size bytes took.
func rawTLS(b *testing.B, pki *certstest.PKI, size int64) time.Duration {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.EdgeTLS())
	require.NoError(b, err)
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		_, _ = c.Write(binary.BigEndian.AppendUint64(nil, uint64(n)))
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), pki.ClientTLS())
	require.NoError(b, err)
	defer c.Close()
	require.NoError(b, c.Handshake())
	start := time.Now()
	upload(b, c, size)
	elapsed := time.Since(start)
	<-done
	return elapsed
}

// BenchmarkTunnelThroughput moves data through one stream, client →
// broker → device → TCP target on loopback TLS ("up"), and back ("down"),
// and in the same run plain TLS between two sockets. It reports MB/s of
// both and their ratio (x-raw-tls).
func BenchmarkTunnelThroughput(b *testing.B) {
	for _, dir := range []string{"up", "down"} {
		b.Run(dir, func(b *testing.B) { benchTunnel(b, nil, dir) })
	}
}

func benchTunnel(b *testing.B, cfg *transport.Config, dir string) {
	br, pki := newBroker(b, cfg)
	startDevice(b, br, pki, cfg, nil)
	cl := dialClient(b, br, pki, cfg)
	target := tcpServer(b, sink)
	if dir == "down" {
		target = tcpServer(b, source)
	}
	ctx := context.Background()
	// Tunnel and raw TLS take turns in rounds, so that both see the same
	// machine load.
	const rounds = 4
	chunk := int64(benchBytes / rounds)
	var tunnel, raw time.Duration
	b.ResetTimer()
	for range b.N {
		for range rounds {
			b.StopTimer()
			raw += rawTLS(b, pki, chunk)
			conn, err := cl.DialTCP(ctx, target)
			require.NoError(b, err)
			b.StartTimer()
			start := time.Now()
			if dir == "up" {
				upload(b, conn, chunk)
			} else {
				download(b, conn, chunk)
			}
			tunnel += time.Since(start)
			conn.Close()
		}
	}
	mb := float64(benchBytes) * float64(b.N) / 1e6
	b.ReportMetric(mb/tunnel.Seconds(), "MB/s")
	b.ReportMetric(mb/raw.Seconds(), "raw-tls-MB/s")
	b.ReportMetric(raw.Seconds()/tunnel.Seconds(), "x-raw-tls")
}

// BenchmarkStreamOpen measures opening a stream end to end: the client's
// SYN and opening message through the broker to the device, and the
// device's OK back. One iteration opens 1,000 streams.
func BenchmarkStreamOpen(b *testing.B) {
	br, pki := newBroker(b, nil)
	startDevice(b, br, pki, nil, map[transport.MsgType]transport.Handler{
		transport.MsgReload: func(ctx context.Context, st *transport.Stream, payload []byte) {
			_ = transport.WriteOK(st, nil)
		},
	})
	cl := dialClient(b, br, pki, nil)
	ctx := context.Background()
	const opens = 1000
	lat := make([]time.Duration, 0, opens*b.N)
	b.ResetTimer()
	for range b.N {
		for range opens {
			start := time.Now()
			require.NoError(b, cl.Reload(ctx))
			lat = append(lat, time.Since(start))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	var sum time.Duration
	for _, l := range lat {
		sum += l
	}
	b.ReportMetric(float64(sum.Microseconds())/float64(len(lat)), "us/open")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us/open")
	b.ReportMetric(0, "ns/op")
}
