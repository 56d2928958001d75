package testutil

import (
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// ProxyMode is what a FaultProxy does with the bytes it relays.
type ProxyMode int

const (
	// Pass relays bytes as they come.
	Pass ProxyMode = iota
	// Blackhole swallows bytes in both directions and keeps the
	// connections open, as a link that died without a reset does.
	Blackhole
	// Hold keeps bytes in both directions until the mode changes, then
	// relays them, as a stopped process (SIGSTOP) does: nothing is lost.
	Hold
)

// FaultProxy is a TCP proxy on a 127.0.0.1 port to a target, whose
// traffic can pass, vanish or wait: to test keep-alives and stopped peers
// between two real endpoints.
type FaultProxy struct {
	ln     net.Listener
	target string

	mu sync.Mutex
	// mu guards the following.
	changed *sync.Cond // broadcast when mode changes or the proxy closes
	mode    ProxyMode
	closed  bool
	conns   map[net.Conn]struct{}

	wg sync.WaitGroup
}

// NewFaultProxy starts a proxy to target in mode Pass. It is closed, and
// its goroutines waited for, at the end of the test.
func NewFaultProxy(tb testing.TB, target string) *FaultProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err, "fault proxy")
	p := &FaultProxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.changed = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.serve()
	tb.Cleanup(p.Close)
	return p
}

// Addr is the proxy's address.
func (p *FaultProxy) Addr() string { return p.ln.Addr().String() }

// SetMode switches the proxy to m; bytes held by Hold go out now.
func (p *FaultProxy) SetMode(m ProxyMode) {
	p.mu.Lock()
	p.mode = m
	p.changed.Broadcast()
	p.mu.Unlock()
}

// Close stops the proxy and closes every relayed connection.
func (p *FaultProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	p.changed.Broadcast()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *FaultProxy) serve() {
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
		p.mu.Lock()
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(out, in)
		go p.pipe(in, out)
	}
}

// relayMode waits while the mode is Hold and returns the mode to relay
// by; ok is false once the proxy is closed.
func (p *FaultProxy) relayMode() (m ProxyMode, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.mode == Hold && !p.closed {
		p.changed.Wait()
	}
	return p.mode, !p.closed
}

// pipe copies src to dst according to the mode. It closes both when
// either side ends.
func (p *FaultProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			m, ok := p.relayMode()
			if !ok {
				return
			}
			if m != Blackhole { // a black hole swallows them
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
