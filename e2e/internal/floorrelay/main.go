// Command floorrelay is the floor relay of the benchmarks: the same
// processes and TLS 1.3 hops as Tether's full path (client → edge → agent
// → service), with nothing of Tether in them. Each hop is one persistent
// TLS connection copied with io.Copy: no multiplexer, no messages. What it
// costs is the cost of the path itself.
//
//	floorrelay edge -cert C -key K -ready FILE
//	floorrelay agent -edge ADDR -ca CA -target HOST:PORT
//	floorrelay client -edge ADDR -ca CA -ready FILE
//
// The edge listens on two loopback ports, one for the agent and one for
// the client, writes "CLIENTADDR AGENTADDR" to -ready, and copies the one
// client connection to the one agent connection both ways. The agent
// dials the edge (as a device dials out) and the target, and copies them
// both ways. The client stands where `tether tcp` does, between an
// application and the edge: it dials the edge's client port, listens on a
// loopback port, writes its address to -ready, and copies the one
// application connection to the edge both ways. Each exits when its
// connections end.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: floorrelay edge|agent [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	cert := fs.String("cert", "", "edge: TLS certificate")
	key := fs.String("key", "", "edge: TLS key")
	ready := fs.String("ready", "", "edge: where to write the listening addresses")
	edge := fs.String("edge", "", "agent: the edge's agent address")
	ca := fs.String("ca", "", "agent: the CA that signed the edge's certificate")
	target := fs.String("target", "", "agent: the service to relay to")
	_ = fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "edge":
		err = runEdge(*cert, *key, *ready)
	case "agent":
		err = runAgent(*edge, *ca, *target)
	case "client":
		err = runClient(*edge, *ca, *ready)
	default:
		err = fmt.Errorf("unknown mode %q: use edge, agent or client", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floorrelay:", err)
		os.Exit(1)
	}
}

func runEdge(certFile, keyFile, ready string) error {
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS13}
	cln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		return err
	}
	aln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(ready, fmt.Appendf(nil, "%s %s", cln.Addr(), aln.Addr()), 0o600); err != nil {
		return err
	}
	agent, err := aln.Accept()
	if err != nil {
		return err
	}
	client, err := cln.Accept()
	if err != nil {
		return err
	}
	return relay(client, agent)
}

func runAgent(edge, caFile, target string) error {
	up, err := dialEdge(edge, caFile)
	if err != nil {
		return err
	}
	svc, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		return err
	}
	return relay(up, svc)
}

func runClient(edge, caFile, ready string) error {
	up, err := dialEdge(edge, caFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if err := os.WriteFile(ready, []byte(ln.Addr().String()), 0o600); err != nil {
		return err
	}
	app, err := ln.Accept()
	ln.Close()
	if err != nil {
		return err
	}
	return relay(app, up)
}

// dialEdge makes the TLS connection of one hop to the floor's edge.
func dialEdge(edge, caFile string) (*tls.Conn, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no certificate in " + caFile)
	}
	up, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", edge,
		&tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13})
	if err != nil {
		return nil, err
	}
	if err := up.Handshake(); err != nil {
		up.Close()
		return nil, err
	}
	return up, nil
}

// relay copies a and b both ways until either side ends, then closes both.
func relay(a, b net.Conn) error {
	done := make(chan error, 2)
	go func() { _, err := io.Copy(a, b); done <- err }()
	go func() { _, err := io.Copy(b, a); done <- err }()
	err := <-done
	a.Close()
	b.Close()
	<-done
	return err
}
