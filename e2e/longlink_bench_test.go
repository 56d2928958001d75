package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
)

// byteSource answers each TCP connection with n bytes (n is the decimal
// number the client sends first, ended by a newline), then closes.
func byteSource(tb testing.TB) string {
	tb.Helper()
	return testutil.TCPServer(tb, func(c *net.TCPConn) {
		defer c.Close()
		var line []byte
		one := make([]byte, 1)
		for {
			if _, err := c.Read(one); err != nil {
				return
			}
			if one[0] == '\n' {
				break
			}
			line = append(line, one[0])
		}
		n, err := strconv.ParseInt(string(line), 10, 64)
		if err != nil {
			return
		}
		buf := make([]byte, 64<<10)
		for n > 0 {
			k, err := c.Write(buf[:min(int64(len(buf)), n)])
			if err != nil {
				return
			}
			n -= int64(k)
		}
	})
}

// timedSink accepts TCP connections, reads each to EOF and answers with
// the byte count and the nanoseconds from the first byte to EOF (8 bytes
// each, big endian).
func timedSink(tb testing.TB) string {
	tb.Helper()
	return testutil.TCPServer(tb, func(c *net.TCPConn) {
		defer c.Close()
		n, el, err := readTimed(c)
		if err != nil {
			return
		}
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], uint64(n))
		binary.BigEndian.PutUint64(b[8:], uint64(el))
		c.Write(b[:])
	})
}

// readTimed reads r to EOF and returns the bytes and the time from the
// first byte to EOF: the transfer without the stream's opening.
func readTimed(r io.Reader) (int64, time.Duration, error) {
	buf := make([]byte, 64<<10)
	var (
		n     int64
		first time.Time
	)
	for {
		k, err := r.Read(buf)
		if k > 0 && n == 0 {
			first = time.Now()
		}
		n += int64(k)
		if err == io.EOF {
			return n, time.Since(first), nil
		}
		if err != nil {
			return n, 0, err
		}
	}
}

// pushTimed writes n bytes to c, half-closes, and returns the time a
// timedSink took from their first byte to the last.
func pushTimed(c *net.TCPConn, n int64) (time.Duration, error) {
	buf := make([]byte, 64<<10)
	for left := n; left > 0; {
		w, err := c.Write(buf[:min(int64(len(buf)), left)])
		if err != nil {
			return 0, err
		}
		left -= int64(w)
	}
	if err := c.CloseWrite(); err != nil {
		return 0, err
	}
	var b [16]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return 0, fmt.Errorf("read count: %w", err)
	}
	if got := int64(binary.BigEndian.Uint64(b[:8])); got != n {
		return 0, fmt.Errorf("sink counted %d bytes, sent %d", got, n)
	}
	return time.Duration(binary.BigEndian.Uint64(b[8:])), nil
}

// pullTimed asks a byteSource behind addr for n bytes, reads them to EOF
// and returns the time from the first byte to EOF.
func pullTimed(addr string, n int64) (time.Duration, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "%d\n", n); err != nil {
		return 0, err
	}
	got, el, err := readTimed(c)
	if err != nil {
		return 0, err
	}
	if got != n {
		return 0, fmt.Errorf("read %d bytes, want %d", got, n)
	}
	return el, nil
}

// streamRate moves n bytes on one connection through a tether tcp
// forward at local, up into a timedSink or down from a byteSource, and
// returns MB/s from the first byte's arrival to the last: the stream's
// steady rate, without the round trips of its opening.
func streamRate(tb testing.TB, local string, up bool, n int64) float64 {
	tb.Helper()
	var (
		el  time.Duration
		err error
	)
	if up {
		var c net.Conn
		c, err = net.Dial("tcp", local)
		require.NoError(tb, err)
		defer c.Close()
		el, err = pushTimed(c.(*net.TCPConn), n)
	} else {
		el, err = pullTimed(local, n)
	}
	require.NoError(tb, err)
	return float64(n) / el.Seconds() / 1e6
}

// cliThroughput moves n bytes on each of k concurrent connections through
// a running tether tcp forward at local, and returns the aggregate MB/s.
// up pushes into a counting sink; otherwise it pulls from a byte source.
func cliThroughput(tb testing.TB, local string, up bool, k int, n int64) float64 {
	tb.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, k)
	start := time.Now()
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !up {
				_, err := pullTimed(local, n)
				errs <- err
				return
			}
			c, err := net.Dial("tcp", local)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			errs <- push(c, n)
		}()
	}
	wg.Wait()
	el := time.Since(start)
	close(errs)
	for err := range errs {
		require.NoError(tb, err)
	}
	return float64(n*int64(k)) / el.Seconds() / 1e6
}

// BenchmarkLongLinkCLI is one stream through the real tether tcp, edge and
// agent, with the agent behind a delay line (a device on a long link), in
// both directions: up (the CLI's side sends into a sink on the device's
// side) and down (a source on the device's side sends to the CLI's side).
// The rate is taken where the bytes arrive, from the first to the last, so
// the round trips of the stream's opening do not count. The baseline is
// the starting stream window over the round trip: what one window per
// round trip allows. Windows grow past it on such a link, so x-window/RTT
// above 1 is expected; with growth off it is how well updates keep the
// sender going.
func BenchmarkLongLinkCLI(b *testing.B) {
	for _, rtt := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond} {
		for _, dir := range []string{"up", "down"} {
			b.Run(fmt.Sprintf("rtt=%v/%s", rtt, dir), func(b *testing.B) {
				s := newSystem(b)
				line := newDelayLine(b, s.addr, rtt)
				s.addAgent(agentOpts{id: "dev-1", edgeAddr: line.Addr()})
				target := timedSink(b)
				if dir == "down" {
					target = byteSource(b)
				}
				fwd := s.startCLI("tcp", "dev-1", "127.0.0.1:0:"+target)
				local := forwardAddr(b, fwd)
				up := dir == "up"
				window := float64(transport.DefaultMaxStreamBuffer) / rtt.Seconds() / 1e6
				streamRate(b, local, up, 4*mib) // warm up
				got := streamRate(b, local, up, 64*mib)
				b.ReportMetric(got, "MB/s")
				b.ReportMetric(window, "window/RTT-MB/s")
				b.ReportMetric(got/window, "x-window/RTT")
			})
		}
	}
}

// sizedSink serves requests of an 8-byte big-endian length and that many
// bytes, many on one connection, and answers each with the count it read:
// an upload whose end needs no half-close, so that it runs through the
// floor relay (one persistent connection) as through a tunnel.
func sizedSink(tb testing.TB) string {
	tb.Helper()
	return testutil.TCPServer(tb, func(c *net.TCPConn) {
		defer c.Close()
		buf := make([]byte, 64<<10)
		var hdr [8]byte
		for {
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			left := int64(binary.BigEndian.Uint64(hdr[:]))
			var got int64
			for left > 0 {
				k, err := c.Read(buf[:min(int64(len(buf)), left)])
				got += int64(k)
				left -= int64(k)
				if err != nil {
					return
				}
			}
			binary.BigEndian.PutUint64(hdr[:], uint64(got))
			if _, err := c.Write(hdr[:]); err != nil {
				return
			}
		}
	})
}

// pushSized sends one request of n bytes to a sizedSink on c and returns
// MB/s from the first byte to the sink's count.
func pushSized(tb testing.TB, c io.ReadWriter, n int64) float64 {
	tb.Helper()
	start := time.Now()
	require.NoError(tb, sendSized(c, n))
	return float64(n) / time.Since(start).Seconds() / 1e6
}

// sendSized sends one request of n bytes to a sizedSink on c and waits
// for the sink's count.
func sendSized(c io.ReadWriter, n int64) error {
	buf := make([]byte, 64<<10)
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	if _, err := c.Write(hdr[:]); err != nil {
		return err
	}
	for left := n; left > 0; {
		k, err := c.Write(buf[:min(int64(len(buf)), left)])
		if err != nil {
			return err
		}
		left -= int64(k)
	}
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	if got := int64(binary.BigEndian.Uint64(hdr[:])); got != n {
		return fmt.Errorf("the sink counted %d bytes of %d", got, n)
	}
	return nil
}

// floorParallel is the floor relay's own gain from parallel paths: k
// floor relays, each with its client in a process of its own, carrying n
// bytes between them at once, against n through one of them alone, in
// alternating rounds, the better of three each. It returns MB/s of both.
// Each relay is a whole path (three processes) where tether's streams
// share one, so this is a bound: what the machine gives more paths than
// one.
func floorParallel(tb testing.TB, s *system, sink string, k int, n int64) (one, parallel float64) {
	tb.Helper()
	paths := make([]net.Conn, k)
	for i := range paths {
		paths[i] = floorRelayApp(tb, s, sink)
		pushSized(tb, paths[i], 4*mib) // warm up
	}
	best := bestOfAlternating(3,
		func() measured { return measured{mbs: pushSized(tb, paths[0], n)} },
		func() measured {
			errs := make(chan error, k)
			start := time.Now()
			for _, c := range paths {
				go func() { errs <- sendSized(c, n/int64(k)) }()
			}
			for range paths {
				require.NoError(tb, <-errs)
			}
			return measured{mbs: float64(n/int64(k)*int64(k)) / time.Since(start).Seconds() / 1e6}
		})
	return best[0].mbs, best[1].mbs
}

// floorThroughput is one bulk stream through the real tether tcp against
// the floor relay with its client in a process of its own, where tether
// tcp stands (the same processes and hops, io.Copy and nothing else), in
// alternating rounds, the better of three each: MB/s of both. It also
// gives the floor's cost: how busy its best round kept the machine, in
// percent, and the machine's CPU seconds per GB it carried. tlsFloor is
// the floor from an in-process TLS client, one process and one loopback
// hop fewer than the forward.
func floorThroughput(tb testing.TB, s *system, local, sink string, n int64) (tether, floor, floorBusy, floorCPU, tlsFloor float64) {
	tb.Helper()
	fa := floorRelayApp(tb, s, sink)
	fc := floorRelay(tb, s, sink)
	pushSized(tb, fa, 16*mib) // warm up
	pushSized(tb, fc, 16*mib)
	best := bestOfAlternating(3,
		func() measured {
			busy := machineBusy(tb)
			mbs := pushSized(tb, fa, n)
			pct, cpu := busy()
			return measured{mbs: mbs, busy: pct, cpu: cpu}
		},
		func() measured {
			c, err := net.Dial("tcp", local)
			require.NoError(tb, err)
			defer c.Close()
			return measured{mbs: pushSized(tb, c, n)}
		},
		func() measured { return measured{mbs: pushSized(tb, fc, n)} })
	return best[1].mbs, best[0].mbs, best[0].busy, best[0].cpu / (float64(n) / 1e9), best[2].mbs
}

// BenchmarkCLIParallel is 16 concurrent streams through one tether tcp
// forward against one stream through the same forward, in the same run
// (the better of three alternating runs each):
// on a 50 ms link, where one stream is bound by its window, and on
// loopback, where the path's CPU is. On loopback it also sets one stream
// through a forward beside the floor relay, and 16 floor relays at once
// beside one.
func BenchmarkCLIParallel(b *testing.B) {
	for _, rtt := range []time.Duration{0, 50 * time.Millisecond} {
		b.Run(fmt.Sprintf("rtt=%v", rtt), func(b *testing.B) {
			s := newSystem(b)
			edge := s.addr
			if rtt > 0 {
				edge = newDelayLine(b, s.addr, rtt).Addr()
			}
			s.addAgent(agentOpts{id: "dev-1", edgeAddr: edge})
			fwd := s.startCLI("tcp", "dev-1", "127.0.0.1:0:"+countingSink(b))
			local := forwardAddr(b, fwd)
			n := int64(64 * mib)
			if rtt == 0 {
				n = 256 * mib
			}
			cliThroughput(b, local, true, 1, 4*mib) // warm up
			measure := func(k int) func() measured {
				return func() measured {
					busy := machineBusy(b)
					mbs := cliThroughput(b, local, true, k, n/int64(k))
					pct, cpu := busy()
					return measured{mbs: mbs, busy: pct, cpu: cpu}
				}
			}
			best := bestOfAlternating(3, measure(1), measure(16))
			one, oneBusy, oneCPU := best[0].mbs, best[0].busy, best[0].cpu
			sixteen, sixteenBusy, sixteenCPU := best[1].mbs, best[1].busy, best[1].cpu
			gb := float64(n) / 1e9
			b.ReportMetric(one, "1-stream-MB/s")
			// How much of the machine one stream leaves to the others:
			// where it keeps every core busy, more streams cannot go
			// faster, unless they cost less CPU per byte.
			b.ReportMetric(oneBusy, "1-stream-cpu-busy-%")
			b.ReportMetric(oneCPU/gb, "1-stream-machine-CPU-s/GB")
			b.ReportMetric(sixteen, "16-streams-MB/s")
			b.ReportMetric(sixteenBusy, "16-streams-cpu-busy-%")
			b.ReportMetric(sixteenCPU/gb, "16-streams-machine-CPU-s/GB")
			b.ReportMetric(sixteen/one, "x-1-stream")
			if rtt == 0 {
				sink := sizedSink(b)
				sized := forwardAddr(b, s.startCLI("tcp", "dev-1", "127.0.0.1:0:"+sink))
				tether, floor, floorBusy, floorCPU, tlsFloor := floorThroughput(b, s, sized, sink, 128*mib)
				b.ReportMetric(tether, "1-stream-sized-MB/s")
				b.ReportMetric(floor, "floor-MB/s")
				b.ReportMetric(floorBusy, "floor-cpu-busy-%")
				b.ReportMetric(floorCPU, "floor-machine-CPU-s/GB")
				b.ReportMetric(tether/floor, "x-floor-1-stream")
				b.ReportMetric(tlsFloor, "tls-client-floor-MB/s")
				b.ReportMetric(tether/tlsFloor, "x-tls-client-floor-1-stream")
				// The floor's own 16 against 1: 16 whole paths at once
				// against one, the most the machine gives parallel streams.
				floor1, floor16 := floorParallel(b, s, sink, 16, 128*mib)
				b.ReportMetric(floor16, "floor-16-paths-MB/s")
				b.ReportMetric(floor16/floor1, "x-floor-16-paths-vs-1")
			}
		})
	}
}
