package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/edge"
)

// clusterConfig is edge.yaml's cluster: section. Without it the edge is a
// single edge and runs no cluster code at all.
type clusterConfig struct {
	EdgeID       string        `yaml:"edge_id"`       // this edge's ID: the CN of peer_cert
	PeerListen   string        `yaml:"peer_listen"`   // host:port of the peer listener
	Advertise    string        `yaml:"advertise"`     // https://host:port other edges dial
	PeerCA       string        `yaml:"peer_ca"`       // CA of the peer certificates
	PeerCert     tlsConfig     `yaml:"peer_cert"`     // this edge's peer certificate and key
	NATS         natsConfig    `yaml:"nats"`          // where the cluster state lives
	Replicas     int           `yaml:"replicas"`      // bucket replicas: 1, 3 or 5
	TakeoverHold time.Duration `yaml:"takeover_hold"` // see edge.Cluster.TakeoverHold
}

// natsConfig is cluster.nats: exactly one of Embedded and URL.
type natsConfig struct {
	Embedded *embeddedNATS `yaml:"embedded"`
	URL      string        `yaml:"url"`   // comma-separated nats:// or tls:// URLs
	Creds    string        `yaml:"creds"` // NATS credentials file (url only)
	CA       string        `yaml:"ca"`    // CA of the NATS servers' certificates (url only)
}

// defaultNATSStore is embedded.store when it is left out, relative to the
// configuration file.
const defaultNATSStore = "nats"

// quorumWarning is logged for a cluster of two embedded edges.
const quorumWarning = "cluster.nats.embedded: 2 edges have no quorum: losing either stops the cluster state; run 1, 3 or 5 edges"

// parseCluster checks the cluster: section and, with loadFiles, loads the
// files it names. listen is the public listen address and deviceCA the
// device CA file, both already resolved. It returns the settings and the
// warnings to log.
func parseCluster(cc *clusterConfig, listen, deviceCA string, loadFiles bool,
	bad func(msg string, keys ...string) error, rel func(string) string) (*clusterSettings, []string, error) {
	k := func(keys ...string) []string { return append([]string{"cluster"}, keys...) }
	var warnings []string
	s := &clusterSettings{EdgeID: cc.EdgeID, TakeoverHold: cc.TakeoverHold}

	if cc.EdgeID == "" {
		return nil, nil, bad("required: this edge's ID in the cluster, such as \"edge-1\" (the CN of peer_cert)", k("edge_id")...)
	}
	if err := certs.ValidDeviceID(cc.EdgeID); err != nil {
		return nil, nil, bad(fmt.Sprintf("%q is not a valid edge ID: 1 to 128 letters, digits, '.', '-', '_' and ':'", cc.EdgeID), k("edge_id")...)
	}

	if cc.PeerListen == "" {
		return nil, nil, bad("required: the address of the peer listener, such as \"0.0.0.0:8444\" (never the public port)", k("peer_listen")...)
	}
	peerHost, peerPort, err := fixedHostPort(cc.PeerListen)
	if err != nil {
		return nil, nil, bad(err.Error(), k("peer_listen")...)
	}
	if sameSocket(cc.PeerListen, listen) {
		return nil, nil, bad(fmt.Sprintf("%s is also listen: peers need a listener of their own", cc.PeerListen), k("peer_listen")...)
	}
	s.PeerListen = cc.PeerListen

	switch {
	case cc.Advertise != "":
		adv, err := parseAdvertise(cc.Advertise)
		if err != nil {
			return nil, nil, bad(err.Error(), k("advertise")...)
		}
		s.Advertise = adv
	case isWildcard(peerHost):
		return nil, nil, bad(fmt.Sprintf("required when peer_listen (%s) is a wildcard address: the URL other edges dial for this edge's peer listener, such as \"https://10.0.0.1:%s\"", cc.PeerListen, peerPort), k("advertise")...)
	default:
		s.Advertise = "https://" + net.JoinHostPort(peerHost, peerPort)
	}

	if cc.PeerCA == "" {
		return nil, nil, bad("required: the CA file of the peer certificates (its own CA, not the device CA)", k("peer_ca")...)
	}
	if cc.PeerCert.Cert == "" {
		return nil, nil, bad("required: this edge's peer certificate file (from its own peer CA; CN = edge_id)", k("peer_cert", "cert")...)
	}
	if cc.PeerCert.Key == "" {
		return nil, nil, bad("required: the key file of the peer certificate", k("peer_cert", "key")...)
	}
	cc.PeerCA, cc.PeerCert.Cert, cc.PeerCert.Key = rel(cc.PeerCA), rel(cc.PeerCert.Cert), rel(cc.PeerCert.Key)

	n := &cc.NATS
	servers := 0 // embedded NATS servers in the cluster; 0 for an external one
	switch {
	case n.Embedded != nil && n.URL != "":
		return nil, nil, bad("set either embedded or url, not both: run NATS in the edges, or use an external NATS cluster", k("nats")...)
	case n.Embedded == nil && n.URL == "":
		return nil, nil, bad("required: embedded (NATS runs in the edges) or url (an external NATS cluster)", k("nats")...)
	case n.Embedded != nil:
		e := n.Embedded
		if n.Creds != "" {
			return nil, nil, bad("only with nats.url: embedded servers authenticate each other with the peer certificates", k("nats", "creds")...)
		}
		if n.CA != "" {
			return nil, nil, bad("only with nats.url: embedded routes are verified with peer_ca", k("nats", "ca")...)
		}
		if e.Listen == "" {
			return nil, nil, bad("required: the address of this edge's NATS route listener, such as \"0.0.0.0:6222\"", k("nats", "embedded", "listen")...)
		}
		if _, _, err := fixedHostPort(e.Listen); err != nil {
			return nil, nil, bad(err.Error(), k("nats", "embedded", "listen")...)
		}
		for _, other := range []struct{ addr, key string }{{listen, "listen"}, {cc.PeerListen, "cluster.peer_listen"}} {
			if sameSocket(e.Listen, other.addr) {
				return nil, nil, bad(fmt.Sprintf("%s is also %s: NATS routes need a port of their own", e.Listen, other.key), k("nats", "embedded", "listen")...)
			}
		}
		seen := map[string]bool{}
		for i, r := range e.Routes {
			key := k("nats", "embedded", "routes", strconv.Itoa(i))
			if _, _, err := fixedHostPort(r); err != nil {
				return nil, nil, bad(err.Error(), key...)
			}
			if r == e.Listen {
				return nil, nil, bad(fmt.Sprintf("%s is this edge's own listen address: list the other edges' routes only", r), key...)
			}
			if seen[r] {
				return nil, nil, bad(fmt.Sprintf("%s is listed twice", r), key...)
			}
			seen[r] = true
		}
		if e.Store == "" {
			e.Store = defaultNATSStore
		}
		e.Store = rel(e.Store)
		servers = 1 + len(e.Routes)
		if servers == 2 {
			warnings = append(warnings, quorumWarning)
		}
		s.Embedded = e
	default:
		urls, err := parseNATSURLs(n.URL)
		if err != nil {
			return nil, nil, bad(err.Error(), k("nats", "url")...)
		}
		s.URL = urls
		n.Creds, n.CA = rel(n.Creds), rel(n.CA)
		s.Creds = n.Creds
	}

	switch {
	case cc.Replicas == 0 && servers >= 3:
		s.Replicas = 3
	case cc.Replicas == 0:
		s.Replicas = 1
	case cc.Replicas != 1 && cc.Replicas != 3 && cc.Replicas != 5:
		return nil, nil, bad(fmt.Sprintf("%d: must be 1, 3 or 5 (copies of the cluster state; 3 survives the loss of one server)", cc.Replicas), k("replicas")...)
	case servers > 0 && cc.Replicas > servers:
		return nil, nil, bad(fmt.Sprintf("%d is more than the %d embedded NATS servers (this edge and its %d routes)", cc.Replicas, servers, servers-1), k("replicas")...)
	default:
		s.Replicas = cc.Replicas
	}
	if cc.TakeoverHold < 0 {
		return nil, nil, bad(fmt.Sprintf("%v must not be negative (0 keeps the default, %v)", cc.TakeoverHold, edge.DefaultTakeoverHold), k("takeover_hold")...)
	}
	if !loadFiles {
		return s, warnings, nil
	}

	peerCAs, err := certs.LoadCertificates(cc.PeerCA)
	if err != nil {
		return nil, nil, bad(err.Error(), k("peer_ca")...)
	}
	if devCAs, err := certs.LoadCertificates(deviceCA); err == nil {
		for _, p := range peerCAs {
			for _, d := range devCAs {
				if bytes.Equal(p.Raw, d.Raw) {
					return nil, nil, bad(fmt.Sprintf("%s holds the device CA (%s): every device would pass for an edge; give the peers a CA of their own", cc.PeerCA, d.Subject.CommonName), k("peer_ca")...)
				}
			}
		}
	}
	s.PeerCA = certs.PoolOf(peerCAs...)
	s.PeerCertFile, s.PeerKeyFile = cc.PeerCert.Cert, cc.PeerCert.Key
	s.PeerCert, err = tls.LoadX509KeyPair(cc.PeerCert.Cert, cc.PeerCert.Key)
	if err != nil {
		return nil, nil, bad(fmt.Sprintf("cannot load the peer certificate and key: %v", err), k("peer_cert")...)
	}
	if err := checkPeerCert(s.PeerCert, s.PeerCA, cc.EdgeID); err != nil {
		return nil, nil, bad(err.Error(), k("peer_cert", "cert")...)
	}
	leaf := s.PeerCert.Leaf
	if cn := leaf.Subject.CommonName; cn != cc.EdgeID {
		return nil, nil, bad(fmt.Sprintf("%q is not the CN of peer_cert (%q): the edge ID is the peer certificate's CN; fix one of them", cc.EdgeID, cn), k("edge_id")...)
	}
	if s.Embedded != nil {
		if host, _, _ := net.SplitHostPort(s.Embedded.Listen); !isWildcard(host) && leaf.VerifyHostname(host) != nil {
			warnings = append(warnings, fmt.Sprintf("cluster.peer_cert does not name %s (cluster.nats.embedded.listen): the other edges' NATS routes to it will fail verification; issue the peer certificate for the addresses other edges dial", host))
		}
		s.RouteTLS = &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{s.PeerCert},
			RootCAs:      s.PeerCA,
			ClientCAs:    s.PeerCA,
			ClientAuth:   tls.RequireAndVerifyClientCert,
		}
	} else {
		if s.Creds != "" {
			if _, err := os.Stat(s.Creds); err != nil {
				return nil, nil, bad(fmt.Sprintf("cannot read the NATS credentials: %v", err), k("nats", "creds")...)
			}
		}
		if n.CA != "" {
			pool, err := certs.LoadPool(n.CA)
			if err != nil {
				return nil, nil, bad(err.Error(), k("nats", "ca")...)
			}
			s.NATSTLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
		}
	}
	return s, warnings, nil
}

// peerCertCheck is what a renewed peer certificate must pass, as the
// configured one does: checkPeerCert, and the edge ID for its CN.
func peerCertCheck(roots *x509.CertPool, edgeID string) func(*tls.Certificate) error {
	return func(c *tls.Certificate) error {
		if err := checkPeerCert(*c, roots, edgeID); err != nil {
			return err
		}
		if cn := c.Leaf.Subject.CommonName; cn != edgeID {
			return fmt.Errorf("its CN is %q, not this edge's ID %q: the edge ID is the peer certificate's CN", cn, edgeID)
		}
		return nil
	}
}

// checkPeerCert checks that cert chains to the peer CA and may serve both
// ends of a peer connection (ServerAuth and ClientAuth), as
// certs.IssuePeer makes them.
func checkPeerCert(cert tls.Certificate, roots *x509.CertPool, edgeID string) error {
	var chain []*x509.Certificate
	for _, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("cannot parse the peer certificate: %v", err)
		}
		chain = append(chain, c)
	}
	leaf := chain[0]
	if _, err := certs.VerifyPeer(chain, roots, time.Now()); err != nil {
		return fmt.Errorf("%v (issue it from peer_ca with both EKUs: ServerAuth and ClientAuth)", err)
	}
	hasServerAuth := false
	for _, u := range leaf.ExtKeyUsage {
		hasServerAuth = hasServerAuth || u == x509.ExtKeyUsageServerAuth
	}
	if !hasServerAuth {
		return fmt.Errorf("the peer certificate of %q lacks the ServerAuth EKU: a peer is dialed as well as dialing (issue it with both ServerAuth and ClientAuth)", edgeID)
	}
	return nil
}

// fixedHostPort splits addr, which others dial, so its port must be a
// fixed number.
func fixedHostPort(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("%q is not host:port: %v", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("%q: the port must be a number from 1 to 65535 (other edges dial it)", addr)
	}
	return host, port, nil
}

func isWildcard(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

// sameSocket reports whether two listen addresses would take the same port:
// the same port on the same host, or on a wildcard host.
func sameSocket(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb || pa == "0" {
		return false
	}
	return ha == hb || isWildcard(ha) || isWildcard(hb)
}

// parseAdvertise checks the URL other edges dial and returns it as
// https://host:port.
func parseAdvertise(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL: %v", s, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("%q: want https://host:port, the address of this edge's peer listener as other edges reach it", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%q: want only https://host:port (no path, query or user)", s)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "443"
	}
	if isWildcard(host) {
		return "", fmt.Errorf("%q: other edges cannot dial a wildcard address; name this edge's own address", s)
	}
	return "https://" + net.JoinHostPort(host, port), nil
}

// parseNATSURLs checks a comma-separated list of NATS server URLs.
func parseNATSURLs(s string) (string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := url.Parse(part)
		if err != nil {
			return "", fmt.Errorf("%q is not a URL: %v", part, err)
		}
		if (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
			return "", fmt.Errorf("%q: want nats://host:port or tls://host:port, comma-separated", part)
		}
		out = append(out, part)
	}
	if len(out) == 0 {
		return "", fmt.Errorf("%q names no server: want nats://host:port, comma-separated", s)
	}
	return strings.Join(out, ","), nil
}
