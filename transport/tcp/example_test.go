package tcp_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testedge"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

// A device's HTTP service, reached with net/http through the edge: tcp.Dial
// is the DialContext of an http.Transport, so each connection the
// transport makes is a tunnel, and the address it dials is the one on the
// device's side.
func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := testedge.Start() // a real edge on loopback, with a throw-away PKI
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()
	// The device serves tunnels to its loopback addresses (the zero
	// Handler), where its web server listens.
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.URL.Path)
	}))
	defer web.Close()
	dc, err := e.StartDevice(ctx, "gw-17", map[wire.MsgType]device.Handler{wire.MsgTCP: (&tcp.Handler{}).Serve})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dc.Close()

	cl, err := (&client.Dialer{Edge: e.URL, Token: e.Token, TLSConfig: e.ClientTLS()}).Dial(ctx, "gw-17")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return tcp.Dial(ctx, cl, addr)
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(web.URL + "/status")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.Status, string(body))
	// Output: 200 OK hello from /status
}

// A local port forwarded to a service on the device's side, like ssh -L:
// every connection to the local listener is a tunnel of its own.
func ExampleForward() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := testedge.Start() // a real edge on loopback, with a throw-away PKI
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()
	// The device's service answers once the request has ended.
	svc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer svc.Close()
	go func() {
		for {
			c, err := svc.Accept()
			if err != nil {
				return
			}
			req, _ := io.ReadAll(c)
			fmt.Fprintf(c, "pong: %s", req)
			c.Close()
		}
	}()
	dc, err := e.StartDevice(ctx, "gw-17", map[wire.MsgType]device.Handler{wire.MsgTCP: (&tcp.Handler{}).Serve})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dc.Close()
	cl, err := (&client.Dialer{Edge: e.URL, Token: e.Token, TLSConfig: e.ClientTLS()}).Dial(ctx, "gw-17")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0") // the local port
	if err != nil {
		fmt.Println(err)
		return
	}
	fw := &tcp.Forward{Listener: ln, Opener: cl, Remote: svc.Addr().String()}
	if err := fw.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer fw.Close() // closes the listener and every forwarded connection

	for _, req := range []string{"ping 1", "ping 2"} {
		c, err := net.Dial("tcp", fw.Addr().String())
		if err != nil {
			fmt.Println(err)
			return
		}
		io.WriteString(c, req)
		c.(*net.TCPConn).CloseWrite()
		answer, _ := io.ReadAll(c)
		c.Close()
		fmt.Println(string(answer))
	}
	// Output:
	// pong: ping 1
	// pong: ping 2
}
