package main

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/tetherhq/tether/certs"
)

// natsClusterName is the name the embedded NATS servers of a cluster share.
const natsClusterName = "tether"

// natsStartTimeout bounds the start of the embedded NATS server.
const natsStartTimeout = 30 * time.Second

// embeddedNATS is the NATS settings of an edge that runs NATS itself: its
// server joins the other edges' servers over routes, with mTLS on the peer
// certificates, and the edge talks to it in-process (no client port).
type embeddedNATS struct {
	Listen string   `yaml:"listen"` // host:port of the route listener
	Routes []string `yaml:"routes"` // the other edges' route addresses, host:port
	Store  string   `yaml:"store"`  // JetStream's directory, relative to the config file
}

// clusterSettings is the cluster: section, validated, with files loaded.
type clusterSettings struct {
	EdgeID       string
	PeerListen   string
	Advertise    string // https://host:port
	Replicas     int    // 1, 3 or 5
	TakeoverHold time.Duration
	PeerCA       *x509.CertPool
	PeerCert     tls.Certificate // as loaded and checked with the configuration
	PeerCertFile string
	PeerKeyFile  string
	Embedded     *embeddedNATS // nil for an external cluster
	URL          string        // the external cluster's URLs, comma-separated
	Creds        string        // its credentials file; empty for none
	NATSTLS      *tls.Config   // for an external cluster over TLS; nil for plain
	RouteTLS     *tls.Config   // mTLS between embedded servers
}

// natsConn is this edge's NATS: the connection and, when embedded, the
// server it runs.
type natsConn struct {
	conn   *nats.Conn
	server *server.Server // nil for an external cluster
	stop   func()         // closes the connection, then stops the server
}

// current reports whether JetStream can answer: for an embedded server,
// that the servers know their leader and this one caught up (a request
// sent before is dropped, and its caller waits out its timeout); always
// for an external cluster, whose state the requests themselves find out.
func (n *natsConn) current() bool {
	if n.server == nil {
		return true
	}
	jsi, err := n.server.Jsz(&server.JSzOptions{})
	return err == nil && (jsi.Meta == nil || jsi.Meta.Leader != "") && n.server.JetStreamIsCurrent()
}

// leads reports whether this edge's embedded server leads JetStream's
// metadata; false for an external cluster.
func (n *natsConn) leads() bool { return n.server != nil && n.server.JetStreamIsLeader() }

// serversUp returns how many of the embedded servers, this one included,
// its JetStream metadata sees online; 0 for an external cluster.
func (n *natsConn) serversUp() int {
	if n.server == nil {
		return 0
	}
	jsi, err := n.server.Jsz(&server.JSzOptions{})
	if err != nil || jsi.Meta == nil {
		return 1
	}
	up := 1
	for _, r := range jsi.Meta.Replicas {
		if !r.Offline {
			up++
		}
	}
	return up
}

// startNATS starts this edge's NATS (embedded) or connects to the external
// cluster. An external cluster that cannot be reached is no error: the
// connection keeps trying in the background (its state is the presence's
// health).
func startNATS(c *clusterSettings, peerCert *certs.FileCert, log *slog.Logger) (*natsConn, error) {
	opts := []nats.Option{
		nats.Name("tether-edge " + c.EdgeID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("lost the connection to NATS; local devices keep working, cross-edge opens fail until it is back", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("reconnected to NATS") }),
	}
	if c.Embedded == nil {
		if c.Creds != "" {
			opts = append(opts, nats.UserCredentials(c.Creds))
		}
		if c.NATSTLS != nil {
			opts = append(opts, nats.Secure(c.NATSTLS))
		}
		opts = append(opts, nats.RetryOnFailedConnect(true),
			nats.ConnectHandler(func(*nats.Conn) { log.Info("connected to NATS", "url", c.URL) }))
		nc, err := nats.Connect(c.URL, opts...)
		if err != nil {
			return nil, fmt.Errorf("connect to NATS at %s: %w (check cluster.nats)", c.URL, err)
		}
		if !nc.IsConnected() {
			log.Warn("NATS is not reachable yet; serving local devices and retrying", "url", c.URL)
		}
		return &natsConn{conn: nc, stop: nc.Close}, nil
	}

	e := c.Embedded
	host, portStr, err := net.SplitHostPort(e.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster.nats.embedded.listen %q: %w", e.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("cluster.nats.embedded.listen %q: bad port", e.Listen)
	}
	var routes []*url.URL
	for _, r := range e.Routes {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: r})
	}
	if err := os.MkdirAll(e.Store, 0o700); err != nil {
		return nil, fmt.Errorf("cluster.nats.embedded.store: %w", err)
	}
	sopts := &server.Options{
		ServerName: c.EdgeID,
		DontListen: true, // the edge connects in-process
		JetStream:  true,
		StoreDir:   e.Store,
		NoSigs:     true,
		NoLog:      true, // logs go through natsLogger instead
	}
	if len(routes) > 0 {
		// The server starts its routes only once its client listener is
		// up (nats-server waits for it), so a clustered server listens for
		// clients: on a random loopback port, behind a token that only
		// this process knows, and never advertised to clients.
		token, err := randomToken()
		if err != nil {
			return nil, err
		}
		sopts.DontListen = false
		sopts.Host, sopts.Port = "127.0.0.1", server.RANDOM_PORT
		sopts.Authorization = token
		sopts.Cluster = server.ClusterOpts{
			Name:           natsClusterName,
			Host:           host,
			Port:           port,
			TLSConfig:      renewingTLS(c.RouteTLS, peerCert),
			TLSTimeout:     5,
			NoAdvertise:    true,
			ConnectRetries: 0, // explicit routes are retried for ever: peers start in any order
			ConnectBackoff: true,
		}
		sopts.Routes = routes
		opts = append(opts, nats.Token(token))
	}
	// Else one edge alone: plain JetStream, no cluster to form, no port.
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	nl := &natsLogger{log: log.With("component", "nats")}
	srv.SetLoggerV2(nl, false, false, false)
	srv.Start()
	shutdown := func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
	deadline := time.Now().Add(natsStartTimeout)
	for !srv.ReadyForConnections(100 * time.Millisecond) {
		if msg := nl.fatal(); msg != "" {
			shutdown()
			return nil, fmt.Errorf("embedded NATS: %s (check cluster.nats.embedded.listen: is another edge using %s?)", msg, e.Listen)
		}
		if time.Now().After(deadline) {
			shutdown()
			return nil, fmt.Errorf("embedded NATS did not start within %v", natsStartTimeout)
		}
	}
	opts = append(opts, nats.InProcessServer(srv), nats.IgnoreDiscoveredServers())
	nc, err := nats.Connect("", opts...)
	if err != nil {
		shutdown()
		return nil, fmt.Errorf("connect to the embedded NATS: %w", err)
	}
	log.Info("embedded NATS started", "routes_listen", e.Listen, "routes", e.Routes, "store", e.Store)
	return &natsConn{conn: nc, server: srv, stop: func() {
		nc.Close()
		shutdown()
	}}, nil
}

// randomToken returns 256 random bits in hex.
func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("embedded NATS: token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// natsLogger passes the embedded NATS server's warnings and errors to the
// edge's log as warnings (a route to an edge that is restarting is an
// error to NATS, and an everyday event to a cluster), its fatal errors as
// errors, and its notices at debug level. It remembers the last fatal
// error, which a server that could not start leaves behind.
type natsLogger struct {
	log *slog.Logger

	mu sync.Mutex
	// mu guards the following.
	lastFatal string
}

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Debugf(string, ...any)           {}
func (l *natsLogger) Tracef(string, ...any)           {}

func (l *natsLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	l.mu.Lock()
	l.lastFatal = msg
	l.mu.Unlock()
}

func (l *natsLogger) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastFatal
}

var _ server.Logger = (*natsLogger)(nil)

// renewingTLS returns a copy of tc that presents cert, read again when its
// files change, in place of tc's own certificates, as server and client.
func renewingTLS(tc *tls.Config, cert *certs.FileCert) *tls.Config {
	tc = tc.Clone()
	tc.Certificates = nil
	tc.GetCertificate = cert.GetCertificate
	tc.GetClientCertificate = cert.GetClientCertificate
	return tc
}
