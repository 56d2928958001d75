package testutil

import (
	"net"
	"sync"
	"testing"
	"time"

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
// traffic can pass, vanish, wait or lag: to test keep-alives, stopped
// peers and long links between two real endpoints.
type FaultProxy struct {
	ln     net.Listener
	target string

	mu sync.Mutex
	// mu guards the following.
	changed *sync.Cond // broadcast when mode changes or the proxy closes
	mode    ProxyMode
	delay   time.Duration
	closed  bool
	stop    chan struct{} // closed with closed
	conns   map[net.Conn]struct{}

	wg sync.WaitGroup
}

// NewFaultProxy starts a proxy to target in mode Pass. It is closed, and
// its goroutines waited for, at the end of the test.
func NewFaultProxy(tb testing.TB, target string) *FaultProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err, "fault proxy")
	p := &FaultProxy{ln: ln, target: target, stop: make(chan struct{}), conns: make(map[net.Conn]struct{})}
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

// SetDelay makes each chunk of bytes go out d after it came in, in both
// directions and in order, as on a long link: a round trip takes 2d. Zero
// relays at once.
func (p *FaultProxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Close stops the proxy and closes every relayed connection.
func (p *FaultProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.stop)
	}
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
// by and the delay; ok is false once the proxy is closed.
func (p *FaultProxy) relayMode() (m ProxyMode, delay time.Duration, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.mode == Hold && !p.closed {
		p.changed.Wait()
	}
	return p.mode, p.delay, !p.closed
}

// chunk is bytes read by a pipe, and when.
type chunk struct {
	at time.Time
	b  []byte
}

// pipe copies src to dst according to the mode and the delay. It closes
// both when either side ends.
func (p *FaultProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	chunks := make(chan chunk, 16)
	done := make(chan struct{})
	defer close(done)
	p.wg.Add(1)
	go p.read(src, chunks, done)
	for c := range chunks {
		m, delay, ok := p.relayMode()
		if !ok {
			return
		}
		if m == Blackhole { // a black hole swallows them
			continue
		}
		if wait := time.Until(c.at.Add(delay)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-p.stop:
				t.Stop()
				return
			}
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

// read reads src into chunks, which it closes when src ends, until done.
func (p *FaultProxy) read(src net.Conn, chunks chan<- chunk, done <-chan struct{}) {
	defer p.wg.Done()
	defer close(chunks)
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case chunks <- chunk{time.Now(), buf[:n]}:
			case <-done:
				return
			}
		}
		if err != nil {
			return
		}
	}
}
