package e2e

import (
	"net"
	"sync"
	"testing"
	"time"
)

// delayLine is a TCP proxy that delays every byte by a fixed one-way
// latency without limiting throughput: chunks are timestamped on arrival and
// released when their time comes, so a window of data can be in flight, as
// on a long link. Used by the RTT benchmarks.
type delayLine struct {
	ln     net.Listener
	target string
	oneWay time.Duration
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

func newDelayLine(tb testing.TB, target string, rtt time.Duration) *delayLine {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	d := &delayLine{ln: ln, target: target, oneWay: rtt / 2}
	d.wg.Add(1)
	go d.serve()
	tb.Cleanup(d.Close)
	return d
}

func (d *delayLine) Addr() string { return d.ln.Addr().String() }

func (d *delayLine) Close() {
	d.ln.Close()
	d.mu.Lock()
	for _, c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

func (d *delayLine) serve() {
	defer d.wg.Done()
	for {
		in, err := d.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", d.target)
		if err != nil {
			in.Close()
			continue
		}
		d.mu.Lock()
		d.conns = append(d.conns, in, out)
		d.mu.Unlock()
		d.wg.Add(2)
		go d.pipe(out, in)
		go d.pipe(in, out)
	}
}

type chunk struct {
	due  time.Time
	data []byte
}

// pipe reads src into timestamped chunks and a second goroutine writes each
// to dst once its delay has passed. The queue is bounded (4096 chunks), so a
// stalled destination pushes back on the source as TCP would.
func (d *delayLine) pipe(dst, src net.Conn) {
	defer d.wg.Done()
	q := make(chan chunk, 4096)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer dst.Close()
		for c := range q {
			if wait := time.Until(c.due); wait > 0 {
				time.Sleep(wait)
			}
			if _, err := dst.Write(c.data); err != nil {
				src.Close()
				for range q {
				}
				return
			}
		}
	}()
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			q <- chunk{due: time.Now().Add(d.oneWay), data: buf[:n]}
		}
		if err != nil {
			close(q)
			wg.Wait()
			return
		}
	}
}
