package edge

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"time"

	"github.com/tetherhq/tether/transport"
)

// Cluster makes an edge one of several behind one load balancer: devices
// connect to any edge, and a client reaches every device from any edge.
// The edges learn where each device is from Presence, and carry a client's
// stream to the device's edge over a peer session: one mTLS session per
// pair of edges, with the same qbee-v1 upgrade and smux v2 as everything
// else, on a listener of its own with a CA of its own.
type Cluster struct {
	// EdgeID names this edge in the cluster: the CN of its peer
	// certificate. Required.
	EdgeID string
	// Presence is the cluster's device presence (edge/cluster.Presence).
	// Required.
	Presence Presence
	// PeerCA verifies the peer certificates of other edges. Required.
	PeerCA *x509.CertPool
	// PeerCert is this edge's peer certificate, presented when it dials
	// another edge and served by the peer listener (see PeerListener).
	PeerCert tls.Certificate
	// GetPeerCertificate, when set, is asked for the peer certificate at
	// each new peer connection, either way, in place of PeerCert: a
	// certificate renewed on disk (certs.FileCert) is presented from the
	// next connection on, and the sessions open stay.
	GetPeerCertificate func() (*tls.Certificate, error)
	// PeerTransport tunes peer sessions; nil means DefaultPeerTransport:
	// a short keep-alive, since peers share a data centre and an edge that
	// stops must be found within seconds.
	PeerTransport *transport.Config
	// TakeoverHold is how soon after one edge took a device over from
	// another a further takeover is refused: a second device presenting
	// the same certificate is told 409 instead of pushing the first off in
	// a loop. Zero means DefaultTakeoverHold (30 s).
	TakeoverHold time.Duration
}

// Cluster defaults.
const (
	// DefaultTakeoverHold: see Cluster.TakeoverHold.
	DefaultTakeoverHold = 30 * time.Second
	// reconcileEvery is how often an edge checks, in its local view, that
	// the presence records of its own devices are in place.
	reconcileEvery = time.Second
)

// DefaultPeerTransport is the session configuration of peer sessions:
// keep-alive every second, dead after three seconds of silence.
func DefaultPeerTransport() *transport.Config {
	return &transport.Config{KeepAliveInterval: time.Second, KeepAliveTimeout: 3 * time.Second}
}

// PeerListener returns the peer listener on ln: TLS 1.3 with this edge's
// peer certificate, and a client certificate from PeerCA required of
// every connection. The caller listens; PeerHandler serves. It returns
// nil on an edge without a Cluster.
func (s *Server) PeerListener(ln net.Listener) net.Listener {
	conf := s.peerTLSConfig()
	if conf == nil {
		return nil
	}
	return tls.NewListener(gatherListener{ln}, conf)
}

// gatherListener passes the connections it accepts through
// transport.GatherRecords, for the TLS layer to go over.
type gatherListener struct{ net.Listener }

func (l gatherListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return transport.GatherRecords(c), nil
}

// peerCertificate returns the peer certificate to present now.
func (c *Cluster) peerCertificate() (*tls.Certificate, error) {
	if c.GetPeerCertificate != nil {
		return c.GetPeerCertificate()
	}
	return &c.PeerCert, nil
}

func (s *Server) peerTLSConfig() *tls.Config {
	c := s.Cluster
	if c == nil {
		return nil
	}
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		GetCertificate:         func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.peerCertificate() },
		ClientAuth:             tls.RequireAndVerifyClientCert,
		ClientCAs:              c.PeerCA,
		SessionTicketsDisabled: true,
		NextProtos:             []string{"http/1.1"},
	}
}

// PeerHandler returns the handler of the peer listener: the upgrade of
// another edge's peer session on /peer. It answers 404 on an edge without
// a Cluster.
func (s *Server) PeerHandler() http.Handler {
	return http.HandlerFunc(s.servePeer)
}
