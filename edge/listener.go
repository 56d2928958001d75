package edge

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Listener returns ln wrapped to serve s over TLS with tlsConf (passed
// through TLSConfig): serve the http.Server from HTTPServer with it, as
// hs.Serve(s.Listener(ln, hs.TLSConfig)), instead of hs.ServeTLS(ln, ...).
//
// Beyond what ServeTLS does, it watches each request head as it arrives,
// which lets the edge refuse what net/http would otherwise normalize
// without a trace: a header line folded onto the previous one (obs-fold,
// RFC 9112 section 5.2), which net/http joins and a proxy in front may read
// differently. The TLS handshake is bounded by the HandshakeTimeout of
// Server.Transport.
// Closing the returned listener closes ln.
func (s *Server) Listener(ln net.Listener, tlsConf *tls.Config) net.Listener {
	s.init()
	return &headListener{Listener: ln, conf: s.TLSConfig(tlsConf), timeout: s.tcfg.HandshakeTimeout}
}

type headListener struct {
	net.Listener
	conf    *tls.Config
	timeout time.Duration
}

func (l *headListener) Accept() (net.Conn, error) {
	c, err := gatherListener{l.Listener}.Accept()
	if err != nil {
		return nil, err
	}
	return &headConn{Conn: tls.Server(c, l.conf), timeout: l.timeout}, nil
}

// headConn is a server-side TLS connection that follows the request heads
// read from it, until the edge takes the connection over for a session.
type headConn struct {
	*tls.Conn
	timeout   time.Duration
	handshook atomic.Bool
	stopped   atomic.Bool // the connection was upgraded: stop scanning

	mu sync.Mutex
	// mu guards the following.
	sc headScanner
}

type headConnKey struct{}

// connContext is the http.Server's ConnContext: it lets the handler find
// the headConn of its request.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if hc, ok := c.(*headConn); ok {
		return context.WithValue(ctx, headConnKey{}, hc)
	}
	return ctx
}

func headConnOf(r *http.Request) *headConn {
	hc, _ := r.Context().Value(headConnKey{}).(*headConn)
	return hc
}

// handshake runs the TLS handshake once, within the handshake timeout
// (reads and writes alike).
func (c *headConn) handshake() error {
	if c.handshook.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if err := c.Conn.HandshakeContext(ctx); err != nil {
		return err
	}
	c.handshook.Store(true)
	return nil
}

// ConnectionState completes the handshake first: net/http asks for the
// state of a connection that is not a *tls.Conn as soon as it starts
// serving it, to fill in Request.TLS.
func (c *headConn) ConnectionState() tls.ConnectionState {
	_ = c.handshake() // a failed handshake fails the first Read too
	return c.Conn.ConnectionState()
}

func (c *headConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if n > 0 && !c.stopped.Load() {
		c.mu.Lock()
		c.sc.scan(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// nextHead reports whether the head of the next request handed to the
// edge had a folded line. net/http serves the requests of a connection one
// after another and the edge sees every one of them (no request reaches
// another handler, and net/http closes the connection after any request it
// answers itself), so the n-th call is about the n-th head.
func (c *headConn) nextHead() (folded bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sc.next()
}

// stop ends the scanning: what follows on the connection is not HTTP.
func (c *headConn) stop() { c.stopped.Store(true) }

// maxFoldedHeads bounds the folded heads a scanner remembers ahead of the
// handler; past it every later request of the connection counts as folded.
const maxFoldedHeads = 16

// headScanner follows HTTP/1.1 request heads in the bytes of a connection
// and notes which heads hold a line that starts with a space or a tab
// (obs-fold). It assumes that the next head follows the empty line that
// ends a head; the edge refuses requests with a body and closes their
// connection, so a body never gets the scanner out of step with requests
// that are served. An upload, whose body the edge takes, stops the
// scanner, as an upgrade does.
type headScanner struct {
	lineLen  int   // bytes of the current line so far, CRs left out
	lines    int   // complete lines of the current head
	folded   bool  // the current head has a folded line
	heads    int   // heads completed
	foldedAt []int // indexes of completed heads with a folded line, not yet handed out
	overflow bool  // more folded heads than maxFoldedHeads were pending
	served   int   // heads handed out by next
}

func (s *headScanner) scan(p []byte) {
	for _, b := range p {
		switch b {
		case '\n':
			switch {
			case s.lineLen > 0:
				s.lines++
			case s.lines > 0:
				s.endHead()
			}
			s.lineLen = 0
		case '\r':
		default:
			if s.lineLen == 0 && s.lines > 0 && (b == ' ' || b == '\t') {
				s.folded = true
			}
			s.lineLen++
		}
	}
}

func (s *headScanner) endHead() {
	if s.folded {
		if len(s.foldedAt) >= maxFoldedHeads {
			s.overflow = true
		} else {
			s.foldedAt = append(s.foldedAt, s.heads)
		}
	}
	s.heads++
	s.lines, s.folded = 0, false
}

func (s *headScanner) next() bool {
	n := s.served
	s.served++
	folded := s.overflow || slices.Contains(s.foldedAt, n)
	s.foldedAt = slices.DeleteFunc(s.foldedAt, func(i int) bool { return i <= n })
	return folded
}
