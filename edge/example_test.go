package edge_test

import (
	"context"
	"crypto/tls"
	"log"
	"net"
	"time"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/transport/target"
)

// An edge as cmd/tether-edge wires it: the caller owns the listener, the
// http.Server and the signals; the edge owns the sessions.
func ExampleServer() {
	var (
		cert     tls.Certificate // the edge's certificate
		deviceCA = edgeCAPool()  // signs device certificates
	)
	policy, err := edge.NewStaticPolicy([]edge.ClientRule{{
		Name:        "ops",
		TokenSHA256: edge.HashToken("the ops token"),
		Devices:     []string{"*"},
		TCP:         []target.Pattern{target.MustParsePattern("127.0.0.1:*")},
		PTY:         true,
	}})
	if err != nil {
		log.Fatal(err)
	}
	srv := &edge.Server{DeviceCA: deviceCA, Policy: policy, Metrics: &edge.Metrics{}}
	hs := srv.HTTPServer(&tls.Config{Certificates: []tls.Certificate{cert}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go hs.Serve(srv.Listener(ln, hs.TLSConfig))

	// On SIGHUP: srv.Reload(newPolicy, newRevocations).
	// On SIGTERM: stop listening, then drain.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = hs.Shutdown(ctx)
	_ = srv.Shutdown(ctx)
}
