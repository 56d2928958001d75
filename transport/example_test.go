package transport_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

// Example runs the three parties on loopback: an edge that upgrades
// sessions and splices each client stream to the device, a device that
// serves TCP tunnels, and a client that reaches a TCP service next to the
// device, writes a request, half-closes, and reads the whole answer.
func Example() {
	// A throw-away PKI: a CA, the edge's certificate, a device certificate.
	ca, _ := certs.NewCA("Example CA", certs.Options{})
	edgeKP, _ := ca.IssueServer([]string{"127.0.0.1"}, certs.Options{})
	devKP, _ := ca.IssueDevice("d1", certs.Options{})
	roots := certs.PoolOf(ca.Cert)

	// A service on the device's network: it answers after the request ends.
	svc, _ := net.Listen("tcp", "127.0.0.1:0")
	defer svc.Close()
	go func() {
		c, err := svc.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, _ := io.ReadAll(c)
		fmt.Fprintf(c, "hello, %s", req)
	}()

	// The edge: one device session; every client stream goes to it.
	var (
		mu       sync.Mutex
		devSess  *transport.Session
		sessions []*transport.Session
		wg       sync.WaitGroup
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
		// A real edge checks the bearer token here, before Upgrade.
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
				go func() { defer wg.Done(); transport.Splice(context.Background(), cs, ds, nil) }()
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

	// The device: dial out, serve TCP tunnels.
	dc := &device.Client{URL: edgeURL + "/device", TLSConfig: certs.DeviceTLSConfig(devKP.TLSCertificate(), roots), Config: nil, Logger: nil}
	dc.Handle(wire.MsgTCP, func(ctx context.Context, st *transport.Stream, payload []byte) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", string(payload))
		if err != nil {
			wire.WriteError(st, err.Error())
			return nil
		}
		wire.WriteOK(st, nil)
		transport.Splice(context.Background(), st, c, nil)
		return nil
	})
	dc.Start(context.Background())
	defer dc.Close()
	<-devReady

	// The client: a tunnel to the service, through the edge and the device.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := (&client.Dialer{Edge: edgeURL, Token: "token", TLSConfig: certs.ClientTLSConfig(roots), Config: nil}).Dial(ctx, "d1")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	conn, err := tcp.Dial(ctx, cl, svc.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	io.Copy(conn, strings.NewReader("tunnel"))
	conn.(*transport.Stream).CloseWrite() // the service sees EOF; we keep reading
	answer, _ := io.ReadAll(conn)
	fmt.Println(string(answer))
	// Output: hello, tunnel
}

// ExampleWriteMessage shows the bytes of an opening message: type, length
// (2 bytes, big endian), payload.
func ExampleWriteMessage() {
	var b strings.Builder
	wire.WriteMessage(&b, wire.MsgTCP, []byte("127.0.0.1:22"))
	fmt.Printf("% x\n", b.String())
	// Output: 10 00 0c 31 32 37 2e 30 2e 30 2e 31 3a 32 32
}
