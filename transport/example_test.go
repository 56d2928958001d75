package transport_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// Example runs the three parties of a session on loopback with nothing
// but this package and wire: an edge that upgrades sessions and splices
// each client stream to a stream it opens on the device's session, a
// device that dials out and answers the streams it accepts, and a client
// that opens a stream, writes a request, half-closes, and reads the whole
// answer. The device, transport/client and transport/tcp packages are
// built on these calls; embedders normally use those.
func Example() {
	// A throw-away PKI: a CA, the edge's certificate, a device certificate.
	ca, _ := certs.NewCA("Example CA", certs.Options{})
	edgeKP, _ := ca.IssueServer([]string{"127.0.0.1"}, certs.Options{})
	devKP, _ := ca.IssueDevice("d1", certs.Options{})
	roots := certs.PoolOf(ca.Cert)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The edge: one device session; every client stream goes to it.
	var (
		mu       sync.Mutex
		devSess  *transport.Session
		sessions []*transport.Session
		wg       sync.WaitGroup // accept loops and splices
	)
	devReady := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/device", func(w http.ResponseWriter, r *http.Request) {
		s, err := transport.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		mu.Lock()
		devSess, sessions = s, append(sessions, s)
		mu.Unlock()
		close(devReady)
	})
	mux.HandleFunc("/client/", func(w http.ResponseWriter, r *http.Request) {
		// A real edge checks the bearer token here, before Upgrade, and
		// reads each opening message to authorize it.
		s, err := transport.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		mu.Lock()
		sessions = append(sessions, s)
		dev := devSess
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				cs, err := s.Accept()
				if err != nil {
					return
				}
				ds, err := dev.Open()
				if err != nil {
					cs.Close()
					continue
				}
				wg.Add(1)
				go func() { defer wg.Done(); transport.Splice(ctx, cs, ds, nil) }()
			}
		}()
	})
	ln, _ := tls.Listen("tcp", "127.0.0.1:0", certs.EdgeTLSConfig(edgeKP.TLSCertificate()))
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	edgeURL := "https://" + ln.Addr().String()
	defer func() {
		srv.Close()
		mu.Lock()
		for _, s := range sessions {
			s.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()

	// The device: dial out, then answer each stream the edge opens. (A
	// device.Client does this with a handler per stream type, and
	// reconnects.)
	dev, err := transport.Dial(ctx, edgeURL+"/device", "", certs.DeviceTLSConfig(devKP.TLSCertificate(), roots), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			st, err := dev.Accept()
			if err != nil {
				return // the session is closed
			}
			if m, err := wire.ReadMessage(st); err != nil || m.Type != wire.MsgTCP {
				wire.WriteError(st, "unsupported stream type")
			} else {
				wire.WriteOK(st, nil)
				req, _ := io.ReadAll(st) // to the client's CloseWrite
				fmt.Fprintf(st, "hello, %s", req)
			}
			st.Close()
		}
	}()
	defer func() { dev.Close(); <-served }()
	<-devReady

	// The client: a session bound to device d1, and one stream on it.
	cl, err := transport.Dial(ctx, edgeURL+"/client/d1", "Bearer token", certs.ClientTLSConfig(roots), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	st, _, err := cl.OpenStream(ctx, wire.MsgTCP, []byte("127.0.0.1:7"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()
	io.WriteString(st, "tunnel")
	st.CloseWrite() // the device reads EOF; we keep reading
	answer, _ := io.ReadAll(st)
	fmt.Println(string(answer))
	// Output: hello, tunnel
}

// ExampleSplice relays a connection to a backend, as the edge, the device
// and the CLI relay theirs: the request's end (a half-close) passes
// through, the answer comes back, and Splice returns once both directions
// are done, with both ends closed.
func ExampleSplice() {
	// A backend that answers once the request has ended.
	backend, _ := net.Listen("tcp", "127.0.0.1:0")
	defer backend.Close()
	go func() {
		c, err := backend.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, _ := io.ReadAll(c)
		fmt.Fprintf(c, "%d bytes received", len(req))
	}()

	// The relay: one connection, spliced to a new connection to the backend.
	front, _ := net.Listen("tcp", "127.0.0.1:0")
	defer front.Close()
	result := make(chan string, 1)
	go func() {
		c, err := front.Accept()
		if err != nil {
			result <- err.Error()
			return
		}
		b, err := net.Dial("tcp", backend.Addr().String())
		if err != nil {
			c.Close()
			result <- err.Error()
			return
		}
		up, down, err := transport.Splice(context.Background(), c, b, nil)
		result <- fmt.Sprintf("spliced %d bytes up, %d down; error: %v", up, down, err)
	}()

	c, _ := net.Dial("tcp", front.Addr().String())
	defer c.Close()
	io.WriteString(c, "ping")
	c.(*net.TCPConn).CloseWrite()
	answer, _ := io.ReadAll(c)
	fmt.Println(string(answer))
	fmt.Println(<-result)
	// Output:
	// 4 bytes received
	// spliced 4 bytes up, 16 down; error: <nil>
}
