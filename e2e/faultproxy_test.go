package e2e

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxyMode is what a faultProxy does with the bytes it relays.
type proxyMode int32

const (
	modePass      proxyMode = iota // relay bytes as they come
	modeBlackhole                  // swallow bytes in both directions, keep connections open
	modeDelay                      // relay bytes after a fixed one-way delay
)

// faultProxy is a TCP proxy between two of our processes that can pass,
// blackhole or delay traffic, to test keep-alive and slow links.
type faultProxy struct {
	ln     net.Listener
	target string
	mode   atomic.Int32
	delay  atomic.Int64 // one-way delay in nanoseconds, for modeDelay

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("fault proxy: %v", err)
	}
	p := &faultProxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

func (p *faultProxy) Addr() string { return p.ln.Addr().String() }

func (p *faultProxy) SetMode(m proxyMode) { p.mode.Store(int32(m)) }

func (p *faultProxy) SetDelay(d time.Duration) {
	p.delay.Store(int64(d))
	p.SetMode(modeDelay)
}

// Close stops the proxy and closes every relayed connection.
func (p *faultProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *faultProxy) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns[c] = struct{}{}
}

func (p *faultProxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.track(in)
		p.track(out)
		p.wg.Add(2)
		go p.pipe(out, in)
		go p.pipe(in, out)
	}
}

// pipe copies src to dst according to the current mode. It closes both
// when either side ends.
func (p *faultProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			switch proxyMode(p.mode.Load()) {
			case modeBlackhole:
				// swallowed
			case modeDelay:
				time.Sleep(time.Duration(p.delay.Load()))
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			default:
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}
