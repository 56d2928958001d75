package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// balancer is a round-robin TCP load balancer in front of several edges,
// as HAProxy in TCP mode is in front of a real cluster: each connection
// goes to the next backend that passed its last health check (GET /readyz
// over TLS), and bytes are copied both ways untouched.
type balancer struct {
	ln       net.Listener
	backends []string
	healthy  []atomic.Bool
	next     atomic.Uint64
	only     atomic.Int64 // 1+ the index of the one backend to use; 0: all
	hc       *http.Client

	cancel  context.CancelFunc
	closing chan struct{} // closed when the balancer closes
	wg      sync.WaitGroup
	mu      sync.Mutex
	// mu guards the following.
	conns map[net.Conn]struct{}
}

func newBalancer(t testing.TB, roots *x509.CertPool, backends ...string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &balancer{ln: ln, backends: backends, healthy: make([]atomic.Bool, len(backends)), cancel: cancel, closing: make(chan struct{}),
		conns: make(map[net.Conn]struct{}),
		hc: &http.Client{Timeout: time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, DisableKeepAlives: true}}}
	b.check()
	b.wg.Add(2)
	go func() { defer b.wg.Done(); b.healthLoop(ctx) }()
	go func() { defer b.wg.Done(); b.serve() }()
	t.Cleanup(b.close)
	return b
}

func (b *balancer) addr() string { return b.ln.Addr().String() }

// pin sends every new connection to backend i alone, healthy or not;
// unpin goes back to round robin.
func (b *balancer) pin(i int) { b.only.Store(int64(i) + 1) }
func (b *balancer) unpin()    { b.only.Store(0) }

func (b *balancer) close() {
	b.cancel()
	b.ln.Close()
	b.mu.Lock()
	close(b.closing)
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// check runs one round of health checks, in parallel.
func (b *balancer) check() {
	var wg sync.WaitGroup
	for i, addr := range b.backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := b.hc.Get("https://" + addr + "/readyz")
			ok := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			b.healthy[i].Store(ok)
		}()
	}
	wg.Wait()
}

func (b *balancer) healthLoop(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.check()
		}
	}
}

func (b *balancer) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.relay(c)
		}()
	}
}

// relay connects c to the next healthy backend that accepts, and copies.
func (b *balancer) relay(c net.Conn) {
	defer c.Close()
	var up net.Conn
	for range len(b.backends) {
		i := int(b.next.Add(1) % uint64(len(b.backends)))
		if only := b.only.Load(); only > 0 {
			i = int(only - 1)
		} else if !b.healthy[i].Load() {
			continue
		}
		var err error
		if up, err = net.DialTimeout("tcp", b.backends[i], time.Second); err == nil {
			break
		}
	}
	if up == nil {
		return
	}
	defer up.Close()
	if !b.track(c, up) {
		return
	}
	defer b.untrack(c, up)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		// A plain copy: io.Copy between TCP connections would splice(2)
		// through a pipe pair per direction, two more descriptors each.
		buf := make([]byte, 16<<10)
		_, _ = io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}

func (b *balancer) track(cs ...net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.closing:
		return false
	default:
	}
	for _, c := range cs {
		b.conns[c] = struct{}{}
	}
	return true
}

func (b *balancer) untrack(cs ...net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range cs {
		delete(b.conns, c)
	}
}
