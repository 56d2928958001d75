package main

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/internal/testoidc"
	"github.com/tetherhq/tether/internal/testutil"
)

// TestServeClusterExchangesAnIDTokenOnce: an edge of a cluster records
// the ID tokens it exchanged in the cluster's state, not only in its
// memory: after a restart (which forgets the memory) a copy of one is
// still refused.
func TestServeClusterExchangesAnIDTokenOnce(t *testing.T) {
	idp, err := testoidc.Start("127.0.0.1:0", testoidc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	peerAddr, routeAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	s := newEdgeSetup(t, "audit.jsonl", fmt.Sprintf(`roles:
  - name: field-eng
    match: {groups: [field-eng]}
    devices: {ids: ["*"]}
    allow: {pty: true}
auth:
  user_ca: {cert: user-ca.crt, key: user-ca.key}
  oidc: {issuer: %q, client_id: %s}
cluster:
  edge_id: edge-1
  peer_listen: %q
  peer_ca: peer-ca.crt
  peer_cert: {cert: edge-1.crt, key: edge-1.key}
  nats:
    embedded: {listen: %q, routes: [], store: nats}
`, idp.Issuer, idp.ClientID, peerAddr, routeAddr))
	writePeerFiles(t, s.dir)
	userCA, err := certs.NewCA("user CA", certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := userCA.Save(filepath.Join(s.dir, "user-ca.crt"), filepath.Join(s.dir, "user-ca.key"), true); err != nil {
		t.Fatal(err)
	}
	tok, err := idp.Mint(testoidc.Claims{})
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(addr string) (int, string) {
		key, err := certs.NewUserKey()
		if err != nil {
			t.Fatal(err)
		}
		csr, err := certs.UserCSR(key)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(map[string]string{"id_token": tok,
			"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
		resp, err := httpsClient(t, filepath.Join(s.dir, "ca.crt")).Post("https://"+addr+"/api/auth/exchange", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	joined := func(p *testutil.Proc) {
		waitFor(t, "the edge to join the cluster state", func() bool {
			return p.Exited() || strings.Contains(p.Stderr(), `msg="joined the cluster state"`)
		})
		if p.Exited() {
			t.Fatalf("the edge exited:\n%s", p.Stderr())
		}
	}

	p, addr := s.start(t)
	joined(p)
	if code, body := exchange(addr); code != http.StatusOK {
		t.Fatalf("first exchange: %d %s; want 200", code, body)
	}
	if err := stopEdge(t, p); err != nil {
		t.Fatalf("stop: %v\n%s", err, p.Stderr())
	}
	p, addr = s.start(t)
	joined(p)
	if code, body := exchange(addr); code != http.StatusUnauthorized || !strings.Contains(body, "exchanged already") {
		t.Errorf("the same ID token after a restart: %d %s; want 401, exchanged already", code, body)
	}
}
