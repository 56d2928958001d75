package e2e

import (
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

// pull asks a byteSource behind addr for n bytes and reads them to EOF.
func pull(addr string, n int64) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "%d\n", n); err != nil {
		return err
	}
	got, err := io.Copy(io.Discard, c)
	if err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("read %d bytes, want %d", got, n)
	}
	return nil
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
				errs <- pull(local, n)
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
// The baseline is the base stream window over the round trip: what one
// window per round trip allows. Windows grow past it on such a link, so
// x-window/RTT above 1 is expected.
func BenchmarkLongLinkCLI(b *testing.B) {
	for _, rtt := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond} {
		for _, dir := range []string{"up", "down"} {
			b.Run(fmt.Sprintf("rtt=%v/%s", rtt, dir), func(b *testing.B) {
				s := newSystem(b)
				line := newDelayLine(b, s.addr, rtt)
				s.addAgent(agentOpts{id: "dev-1", edgeAddr: line.Addr()})
				target := countingSink(b)
				if dir == "down" {
					target = byteSource(b)
				}
				fwd := s.startCLI("tcp", "dev-1", "127.0.0.1:0:"+target)
				local := forwardAddr(b, fwd)
				up := dir == "up"
				window := float64(transport.DefaultMaxStreamBuffer) / rtt.Seconds() / 1e6
				cliThroughput(b, local, up, 1, 4*mib) // warm up
				got := cliThroughput(b, local, up, 1, 64*mib)
				b.ReportMetric(got, "MB/s")
				b.ReportMetric(window, "window/RTT-MB/s")
				b.ReportMetric(got/window, "x-window/RTT")
			})
		}
	}
}

// BenchmarkCLIParallel is 16 concurrent streams through one tether tcp
// forward against one stream through the same forward, in the same run:
// on a 50 ms link, where one stream is bound by its window, and on
// loopback, where the path's CPU is.
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
			one := cliThroughput(b, local, true, 1, n)
			sixteen := cliThroughput(b, local, true, 16, n/16)
			b.ReportMetric(one, "1-stream-MB/s")
			b.ReportMetric(sixteen, "16-streams-MB/s")
			b.ReportMetric(sixteen/one, "x-1-stream")
		})
	}
}
