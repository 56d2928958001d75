package edge_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
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

// Roles: people by group, a service account by token, devices by label;
// every denial says what would have allowed the request.
func ExampleNewRolePolicy() {
	policy, err := edge.NewRolePolicy(edge.RoleConfig{
		Tokens: []edge.TokenEntry{{Name: "ci-deploy", TokenSHA256: edge.HashToken("the CI token")}},
		Roles: []edge.Role{{
			Name:    "field-eng",
			Match:   edge.RoleMatch{Groups: []string{"field-eng"}, Tokens: []string{"ci-deploy"}},
			Devices: []string{"gw-*"},
			Labels:  map[string]string{"site": "berlin-*"},
			Allow:   edge.Allow{PTY: true, TCP: []target.Pattern{target.MustParsePattern("127.0.0.1:*")}},
		}},
		// The edge's labels file, on top of the certificates' labels.
		DeviceLabels: []edge.LabelRule{{Devices: "gw-1*", Labels: map[string]string{"site": "berlin-1"}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	alice := edge.Identity{Name: "alice@example.com", Method: edge.MethodOIDC, Groups: []string{"field-eng"}}
	gw := policy.LabelDevice(edge.DeviceRef{ID: "gw-17"})
	ssh, _ := target.Parse("10.0.0.5:22")
	fmt.Println(policy.Authorize(alice, gw, edge.Request{Type: wire.MsgPTY}))
	fmt.Println(policy.Authorize(alice, gw, edge.Request{Type: wire.MsgTCP, Target: ssh}))
	fmt.Println(policy.Authorize(alice, edge.DeviceRef{ID: "gw-2"}, edge.Request{Type: wire.MsgPTY}))
	// Output:
	// <nil>
	// not allowed: tcp 10.0.0.5:22 on device gw-17 for client alice@example.com: role field-eng allows tcp only to 127.0.0.1:*
	// not allowed: no role gives alice@example.com access to device gw-2
}
