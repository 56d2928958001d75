package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
)

// clusterSection is a valid cluster: section for edge-1 of three, with the
// files writeClusterPKI writes.
const clusterSection = `cluster:
  edge_id: edge-1
  peer_listen: "127.0.0.1:8444"
  peer_ca: peer-ca.crt
  peer_cert: {cert: peer.crt, key: peer.key}
  nats:
    embedded:
      listen: "127.0.0.1:6222"
      routes: ["127.0.0.1:6223", "127.0.0.1:6224"]
      store: nats
`

// clusterPKI is a test PKI with a peer CA of its own, and files beside
// edge.yaml: peer-ca.crt, peer.crt/peer.key (edge-1, both EKUs), and the
// certificates the error cases need.
type clusterPKI struct {
	*certstest.PKI
	peerCA *certs.KeyPair
}

func writeClusterPKI(t *testing.T) *clusterPKI {
	t.Helper()
	pki := certstest.New(t)
	peerCA, err := certs.NewCA("Test Peer CA", certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := &clusterPKI{PKI: pki, peerCA: peerCA}
	if err := certs.WriteFile(filepath.Join(pki.Dir, "peer-ca.crt"), peerCA.CertPEM(), 0o644, true); err != nil {
		t.Fatal(err)
	}
	p.savePeer(t, "peer", "edge-1", []string{"127.0.0.1"})
	// The error cases: a peer certificate from another CA, one with
	// ClientAuth only, and one for another edge ID.
	other, err := certs.NewCA("Other CA", certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := other.IssuePeer("edge-1", nil, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := kp.Save(filepath.Join(pki.Dir, "foreign.crt"), filepath.Join(pki.Dir, "foreign.key"), true); err != nil {
		t.Fatal(err)
	}
	kp, err = peerCA.IssueClientWithEKU("edge-1", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := kp.Save(filepath.Join(pki.Dir, "clientonly.crt"), filepath.Join(pki.Dir, "clientonly.key"), true); err != nil {
		t.Fatal(err)
	}
	p.savePeer(t, "edge2", "edge-2", nil)
	if err := os.WriteFile(filepath.Join(pki.Dir, "edge.creds"), []byte("creds"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *clusterPKI) savePeer(t *testing.T, name, edgeID string, hosts []string) {
	t.Helper()
	kp, err := p.peerCA.IssuePeer(edgeID, hosts, certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := kp.Save(filepath.Join(p.Dir, name+".crt"), filepath.Join(p.Dir, name+".key"), true); err != nil {
		t.Fatal(err)
	}
}

// writeClusterConfig writes the issue's config plus cluster into the PKI
// directory and returns its path.
func (p *clusterPKI) writeConfig(t *testing.T, cluster string) string {
	t.Helper()
	path := filepath.Join(p.Dir, "edge.yaml")
	cfg := strings.Replace(issueConfig, "<64 hex chars>", hex64, 1) + cluster
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.Dir, "revoked.txt"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// lineAt returns the 1-based line of the first line of text holding s.
func lineAt(t *testing.T, text, s string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q is not in the config", s)
	return 0
}

func TestClusterConfigLoads(t *testing.T) {
	p := writeClusterPKI(t)
	path := p.writeConfig(t, clusterSection)
	c, err := loadConfig(path)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	s := c.cluster
	if s == nil {
		t.Fatal("cluster settings are nil; want the cluster section")
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"edge ID", s.EdgeID, "edge-1"},
		{"peer listen", s.PeerListen, "127.0.0.1:8444"},
		{"advertise (derived from peer_listen)", s.Advertise, "https://127.0.0.1:8444"},
		{"replicas (default for three embedded servers)", s.Replicas, 3},
		{"store (relative to the config file)", s.Embedded.Store, filepath.Join(p.Dir, "nats")},
		{"routes", strings.Join(s.Embedded.Routes, ","), "127.0.0.1:6223,127.0.0.1:6224"},
		{"peer certificate CN", s.PeerCert.Leaf.Subject.CommonName, "edge-1"},
		{"takeover hold (0 = the edge's default)", s.TakeoverHold, time.Duration(0)},
		{"warnings", len(c.warnings), 0},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v; want %v", ch.what, ch.got, ch.want)
		}
	}
	rt := s.RouteTLS
	if rt == nil {
		t.Fatal("no route TLS for the embedded servers")
	}
	if rt.MinVersion != tls.VersionTLS13 || rt.ClientAuth != tls.RequireAndVerifyClientCert || rt.ClientCAs == nil || rt.RootCAs == nil || len(rt.Certificates) != 1 {
		t.Errorf("route TLS: got MinVersion %x, ClientAuth %v, ClientCAs %v, RootCAs %v, %d certificates; want TLS 1.3, mutual, on the peer CA, with the peer certificate",
			rt.MinVersion, rt.ClientAuth, rt.ClientCAs != nil, rt.RootCAs != nil, len(rt.Certificates))
	}
	// The peer certificate verifies against the route TLS roots: both
	// ends of a route trust the same CA.
	if _, err := s.PeerCert.Leaf.Verify(x509.VerifyOptions{Roots: rt.RootCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the peer certificate does not verify against the route roots: %v", err)
	}

	// A config without the section is a single edge.
	c, err = loadConfig(p.writeConfig(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if c.cluster != nil {
		t.Errorf("cluster = %+v without a cluster section; want nil", c.cluster)
	}
}

func TestClusterConfigDefaultsAndVariants(t *testing.T) {
	p := writeClusterPKI(t)
	tests := []struct {
		name     string
		section  string
		check    func(t *testing.T, c *config)
		warnings []string
	}{
		{"one embedded edge: replicas 1, no warning", strings.Replace(clusterSection, `routes: ["127.0.0.1:6223", "127.0.0.1:6224"]`, `routes: []`, 1),
			func(t *testing.T, c *config) {
				if c.cluster.Replicas != 1 {
					t.Errorf("replicas: got %d; want 1", c.cluster.Replicas)
				}
			}, nil},
		{"two embedded edges: replicas 1 and the quorum warning", strings.Replace(clusterSection, `, "127.0.0.1:6224"`, ``, 1),
			func(t *testing.T, c *config) {
				if c.cluster.Replicas != 1 {
					t.Errorf("replicas: got %d; want 1", c.cluster.Replicas)
				}
			}, []string{"2 edges have no quorum: losing either stops the cluster state"}},
		{"store left out", strings.Replace(clusterSection, "      store: nats\n", "", 1),
			func(t *testing.T, c *config) {
				if want := filepath.Join(p.Dir, defaultNATSStore); c.cluster.Embedded.Store != want {
					t.Errorf("store: got %s; want %s", c.cluster.Embedded.Store, want)
				}
			}, nil},
		{"wildcard peer_listen with advertise; takeover_hold", strings.Replace(clusterSection, `peer_listen: "127.0.0.1:8444"`,
			"peer_listen: \"0.0.0.0:8444\"\n  advertise: https://10.0.0.1:8444/\n  takeover_hold: 1m", 1),
			func(t *testing.T, c *config) {
				if c.cluster.Advertise != "https://10.0.0.1:8444" {
					t.Errorf("advertise: got %s; want https://10.0.0.1:8444", c.cluster.Advertise)
				}
				if c.cluster.TakeoverHold != time.Minute {
					t.Errorf("takeover_hold: got %v; want 1m", c.cluster.TakeoverHold)
				}
			}, nil},
		{"external NATS with credentials and CA", strings.Replace(clusterSection, `    embedded:
      listen: "127.0.0.1:6222"
      routes: ["127.0.0.1:6223", "127.0.0.1:6224"]
      store: nats
`, `    url: "tls://n1:4222, tls://n2:4222"
    creds: edge.creds
    ca: ca.crt
  replicas: 3
`, 1),
			func(t *testing.T, c *config) {
				s := c.cluster
				if s.Embedded != nil || s.URL != "tls://n1:4222,tls://n2:4222" || s.Creds != filepath.Join(p.Dir, "edge.creds") || s.Replicas != 3 {
					t.Errorf("got embedded %v, URL %q, creds %q, replicas %d; want the external cluster's settings", s.Embedded, s.URL, s.Creds, s.Replicas)
				}
				if s.NATSTLS == nil || s.NATSTLS.RootCAs == nil {
					t.Error("no TLS roots for the external cluster; want nats.ca")
				}
				if s.RouteTLS != nil {
					t.Error("route TLS set for an external cluster")
				}
			}, nil},
		{"embedded listen the peer certificate does not name", strings.Replace(clusterSection, `listen: "127.0.0.1:6222"`, `listen: "10.9.9.9:6222"`, 1),
			func(*testing.T, *config) {}, []string{"cluster.peer_cert does not name 10.9.9.9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(p.writeConfig(t, tt.section))
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			tt.check(t, c)
			if len(c.warnings) != len(tt.warnings) {
				t.Fatalf("warnings: got %q; want %d", c.warnings, len(tt.warnings))
			}
			for i, w := range tt.warnings {
				if !strings.Contains(c.warnings[i], w) {
					t.Errorf("warning %d: got %q; want it to contain %q", i, c.warnings[i], w)
				}
			}
		})
	}
}

func TestClusterConfigErrorsNameKeyAndLine(t *testing.T) {
	p := writeClusterPKI(t)
	base := strings.Replace(issueConfig, "<64 hex chars>", hex64, 1)
	sub := func(old, new string) func(string) string {
		return func(s string) string {
			if !strings.Contains(s, old) {
				panic(fmt.Sprintf("%q is not in the section", old))
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	tests := []struct {
		name   string
		edit   func(string) string
		key    string // the dotted key the error names; "" for YAML's own errors
		marker string // text on the line the error must name
		msg    string
	}{
		{"unknown key", sub("  peer_ca:", "  peer_cas: x\n  peer_ca:"), "", "peer_cas:", `unknown key "peer_cas"`},
		{"unknown embedded key", sub("      store: nats", "      stor: nats"), "", "stor:", `unknown key "stor"`},
		{"empty section", func(string) string { return "cluster:\n" }, "cluster", "cluster:", "empty"},
		{"edge_id missing", sub("  edge_id: edge-1\n", ""), "cluster.edge_id", "cluster:", "required"},
		{"edge_id invalid", sub("edge_id: edge-1", `edge_id: "edge 1"`), "cluster.edge_id", "edge_id:", "not a valid edge ID"},
		{"edge_id is not the certificate's CN", sub("edge_id: edge-1", "edge_id: edge-9"), "cluster.edge_id", "edge_id:", `not the CN of peer_cert ("edge-1")`},
		{"peer_listen missing", sub("  peer_listen: \"127.0.0.1:8444\"\n", ""), "cluster.peer_listen", "cluster:", "required"},
		{"peer_listen without a port", sub(`"127.0.0.1:8444"`, `"127.0.0.1"`), "cluster.peer_listen", "peer_listen:", "not host:port"},
		{"peer_listen on port 0", sub(`"127.0.0.1:8444"`, `"127.0.0.1:0"`), "cluster.peer_listen", "peer_listen:", "1 to 65535"},
		{"peer_listen is the public port", sub(`"127.0.0.1:8444"`, `"0.0.0.0:8443"`), "cluster.peer_listen", "peer_listen:", "a listener of their own"},
		{"wildcard peer_listen without advertise", sub(`"127.0.0.1:8444"`, `"0.0.0.0:8444"`), "cluster.advertise", "cluster:", "wildcard"},
		{"advertise not https", sub("  peer_ca:", "  advertise: http://10.0.0.1:8444\n  peer_ca:"), "cluster.advertise", "advertise:", "want https://host:port"},
		{"advertise with a path", sub("  peer_ca:", "  advertise: https://10.0.0.1:8444/peer\n  peer_ca:"), "cluster.advertise", "advertise:", "no path"},
		{"peer_ca missing", sub("  peer_ca: peer-ca.crt\n", ""), "cluster.peer_ca", "cluster:", "required"},
		{"peer_ca is the device CA", sub("peer_ca: peer-ca.crt", "peer_ca: ca.crt"), "cluster.peer_ca", "peer_ca:", "every device would pass for an edge"},
		{"peer_cert.key missing", sub("{cert: peer.crt, key: peer.key}", "{cert: peer.crt}"), "cluster.peer_cert.key", "peer_cert:", "required"},
		{"peer_cert from another CA", sub("{cert: peer.crt, key: peer.key}", "{cert: foreign.crt, key: foreign.key}"), "cluster.peer_cert.cert", "peer_cert:", "verify peer certificate"},
		{"peer_cert without ServerAuth", sub("{cert: peer.crt, key: peer.key}", "{cert: clientonly.crt, key: clientonly.key}"), "cluster.peer_cert.cert", "peer_cert:", "lacks the ServerAuth EKU"},
		{"peer_cert file missing", sub("{cert: peer.crt, key: peer.key}", "{cert: nope.crt, key: peer.key}"), "cluster.peer_cert", "peer_cert:", "cannot load"},
		{"peer_cert key of another certificate", sub("{cert: peer.crt, key: peer.key}", "{cert: peer.crt, key: edge2.key}"), "cluster.peer_cert", "peer_cert:", "cannot load"},
		{"nats missing", sub("  nats:\n    embedded:\n      listen: \"127.0.0.1:6222\"\n      routes: [\"127.0.0.1:6223\", \"127.0.0.1:6224\"]\n      store: nats\n", ""),
			"cluster.nats", "cluster:", "required: embedded"},
		{"nats both embedded and url", sub("    embedded:", "    url: nats://n1:4222\n    embedded:"), "cluster.nats", "nats:", "not both"},
		{"creds with embedded", sub("    embedded:", "    creds: edge.creds\n    embedded:"), "cluster.nats.creds", "creds:", "only with nats.url"},
		{"embedded listen missing", sub("      listen: \"127.0.0.1:6222\"\n", ""), "cluster.nats.embedded.listen", "embedded:", "required"},
		{"embedded listen not host:port", sub(`listen: "127.0.0.1:6222"`, `listen: "6222"`), "cluster.nats.embedded.listen", `listen: "6222"`, "not host:port"},
		{"embedded listen is the peer listener", sub(`listen: "127.0.0.1:6222"`, `listen: "127.0.0.1:8444"`), "cluster.nats.embedded.listen", `      listen: "127.0.0.1:8444"`, "a port of their own"},
		{"route not host:port", sub(`"127.0.0.1:6224"]`, `"n3"]`), "cluster.nats.embedded.routes.1", "routes:", "not host:port"},
		{"route is this edge", sub(`"127.0.0.1:6224"]`, `"127.0.0.1:6222"]`), "cluster.nats.embedded.routes.1", "routes:", "own listen address"},
		{"route twice", sub(`"127.0.0.1:6224"]`, `"127.0.0.1:6223"]`), "cluster.nats.embedded.routes.1", "routes:", "listed twice"},
		{"url with another scheme", sub("    embedded:\n      listen: \"127.0.0.1:6222\"\n      routes: [\"127.0.0.1:6223\", \"127.0.0.1:6224\"]\n      store: nats\n", "    url: http://n1:4222\n"),
			"cluster.nats.url", "url:", "want nats://host:port"},
		{"url with no server", sub("    embedded:\n      listen: \"127.0.0.1:6222\"\n      routes: [\"127.0.0.1:6223\", \"127.0.0.1:6224\"]\n      store: nats\n", "    url: \" , \"\n"),
			"cluster.nats.url", "url:", "names no server"},
		{"creds file missing", sub("    embedded:\n      listen: \"127.0.0.1:6222\"\n      routes: [\"127.0.0.1:6223\", \"127.0.0.1:6224\"]\n      store: nats\n", "    url: nats://n1:4222\n    creds: nope.creds\n"),
			"cluster.nats.creds", "creds:", "cannot read the NATS credentials"},
		{"replicas 2", func(s string) string { return s + "  replicas: 2\n" }, "cluster.replicas", "replicas:", "must be 1, 3 or 5"},
		{"replicas above the embedded servers", func(s string) string { return s + "  replicas: 5\n" }, "cluster.replicas", "replicas:", "more than the 3 embedded NATS servers"},
		{"negative takeover_hold", func(s string) string { return s + "  takeover_hold: -1s\n" }, "cluster.takeover_hold", "takeover_hold:", "must not be negative"},
		{"bad takeover_hold", func(s string) string { return s + "  takeover_hold: soon\n" }, "cluster.takeover_hold", "takeover_hold:", "soon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			section := tt.edit(clusterSection)
			path := p.writeConfig(t, section)
			_, err := loadConfig(path)
			if err == nil {
				t.Fatal("loadConfig succeeded; want an error")
			}
			line := lineAt(t, base+section, tt.marker)
			want := fmt.Sprintf("%s:%d: %s", path, line, tt.key)
			if tt.key == "" {
				want = fmt.Sprintf("%s:%d: ", path, line)
			}
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got %q; want it to start with %q", err, want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %q; want it to say %q", err, tt.msg)
			}
		})
	}
}
