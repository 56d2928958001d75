package transport_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
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
	br := testbroker.New(b, cfg)
	br.StartDevice(b, cfg, nil)
	cl := br.DialClient(b, cfg)
	pki := br.PKI()
	target := testutil.TCPServer(b, sink)
	if dir == "down" {
		target = testutil.TCPServer(b, source)
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
			conn, _, err := cl.OpenStream(ctx, wire.MsgTCP, []byte(target))
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
	br := testbroker.New(b, nil)
	br.StartDevice(b, nil, map[wire.MsgType]device.Handler{
		wire.MsgReload: func(ctx context.Context, st *transport.Stream, payload []byte) error {
			_ = wire.WriteOK(st, nil)
			return nil
		},
	})
	cl := br.DialClient(b, nil)
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

// BenchmarkTinyFrameFlood measures what 1-byte frames to a stream nobody
// reads cost the receiver: heap per frame (B/frame), and the heap the
// flood holds just below the point where the policing cuts the session
// (MiB-at-cut). Without the cut the cost per frame is the same, and only
// the session receive budget (in payload bytes) would end the flood.
func BenchmarkTinyFrameFlood(b *testing.B) {
	const frames = 32_000 // just under a stream's budget with the defaults
	var perFrame, held float64
	for range b.N {
		us, pki := newUpgradeServer(b, nil)
		p := rawDial(b, us.addr, pki)
		p.Upgrade("/client/d1")
		s := us.session(b)
		rawFlood(p, frame(2, cmdSYN, 3, nil))
		st, err := s.Accept()
		require.NoError(b, err)

		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		rawFlood(p, repeat(frame(2, cmdPSH, 3, []byte{'x'}), frames)...)
		// A stream opened after the flood: once it is accepted, every
		// frame before it has been received and buffered.
		rawFlood(p, frame(2, cmdSYN, 5, nil))
		st2, err := s.Accept()
		require.NoError(b, err)
		runtime.GC()
		runtime.ReadMemStats(&after)
		require.NoError(b, s.Err())
		d := float64(after.HeapInuse) - float64(before.HeapInuse)
		perFrame += d / frames
		held += d / (1 << 20)
		st.Close()
		st2.Close()
		s.Close()
	}
	b.ReportMetric(perFrame/float64(b.N), "B/frame")
	b.ReportMetric(held/float64(b.N), "MiB-at-cut")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkIdleSessionHeap measures the heap an idle session costs, both
// ends counted (KiB/session-pair): TLS, smux and our frame layer.
func BenchmarkIdleSessionHeap(b *testing.B) {
	const pairs = 100
	pki := certstest.New(b)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.EdgeTLS())
	require.NoError(b, err)
	defer ln.Close()
	var kib float64
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		sessions := make([]*transport.Session, 0, 2*pairs)
		for range pairs {
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					_ = c.(*tls.Conn).Handshake()
				}
				accepted <- c
			}()
			cc, err := tls.Dial("tcp", ln.Addr().String(), pki.ClientTLS())
			require.NoError(b, err)
			sc := <-accepted
			require.NotNil(b, sc)
			cs, err := transport.NewClientSession(cc, nil)
			require.NoError(b, err)
			ss, err := transport.NewServerSession(sc, nil)
			require.NoError(b, err)
			// One exchange, so that both ends have run their loops once.
			st, err := cs.Open()
			require.NoError(b, err)
			_, err = st.Write([]byte("x"))
			require.NoError(b, err)
			ps, err := ss.Accept()
			require.NoError(b, err)
			_, err = io.ReadFull(ps, make([]byte, 1))
			require.NoError(b, err)
			st.Close()
			ps.Close()
			sessions = append(sessions, cs, ss)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		kib += (float64(after.HeapInuse) - float64(before.HeapInuse)) / 1024 / pairs
		for _, s := range sessions {
			s.Close()
		}
	}
	b.ReportMetric(kib/float64(b.N), "KiB/session-pair")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkEchoUnderBulk measures a 64-byte echo on one stream of a
// session (a shell's keystrokes) while another stream of the same session
// carries bulk data the same way as the echo's answers, against the same
// echo on the idle session in the same run: the bulk stream's frames must
// not hold the echo's answer back for more than a frame or so.
func BenchmarkEchoUnderBulk(b *testing.B) {
	cli, srv, _, _ := sessionPair(b, nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer srv.Close() // ends the accept loop, then the streams
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			st, err := srv.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer st.Close()
				var kind [1]byte
				if _, err := io.ReadFull(st, kind[:]); err != nil {
					return
				}
				if kind[0] == 'e' {
					_, _ = io.Copy(st, st)
					return
				}
				buf := make([]byte, 64<<10)
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := st.Write(buf); err != nil {
						return
					}
				}
			})
		}
	})
	open := func(kind byte) *transport.Stream {
		st, err := cli.Open()
		require.NoError(b, err)
		_, err = st.Write([]byte{kind})
		require.NoError(b, err)
		return st
	}
	echo := open('e')
	defer echo.Close()
	rtts := func(n int) []time.Duration {
		out := make([]time.Duration, 0, n)
		msg, got := make([]byte, 64), make([]byte, 64)
		for range n {
			start := time.Now()
			_, err := echo.Write(msg)
			require.NoError(b, err)
			_, err = io.ReadFull(echo, got)
			require.NoError(b, err)
			out = append(out, time.Since(start))
			time.Sleep(time.Millisecond) // keystrokes come apart
		}
		slices.Sort(out)
		return out
	}
	const n = 500
	b.ResetTimer()
	idle := rtts(n)
	bulk := open('b')
	defer bulk.Close()
	wg.Go(func() { _, _ = io.Copy(io.Discard, bulk) })
	loaded := rtts(n)
	close(stop)
	b.StopTimer()
	pct := func(d []time.Duration, q float64) float64 { return float64(d[int(q*float64(len(d)-1))]) / 1e3 }
	b.ReportMetric(pct(idle, 0.5), "idle-p50-us")
	b.ReportMetric(pct(loaded, 0.5), "bulk-p50-us")
	b.ReportMetric(pct(loaded, 0.99), "bulk-p99-us")
	b.ReportMetric(pct(loaded, 0.5)/pct(idle, 0.5), "x-idle-p50")
	b.ReportMetric(0, "ns/op")
}
