package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/internal/testutil"
)

// system is one edge and its files; agents join it with addAgent.
type system struct {
	t        testing.TB
	pki      *certstest.PKI
	dir      string
	addr     string // edge listen address
	token    string // the "ops" client's token: every right on every device
	limited  string // the "limited" client's token: tcp to 127.0.0.1:1-1024 only
	edge     *proc
	edgeArgs []string
}

type agentOpts struct {
	id       string
	edgeAddr string // defaults to the edge; a fault proxy's address otherwise
	allowTCP []string
	extra    string // more YAML appended to agent.yaml
}

// newSystem writes an edge config for a fresh PKI and starts tether-edge.
func newSystem(t testing.TB) *system {
	t.Helper()
	return newSystemWith(t, "")
}

// newSystemWith is newSystem with more YAML appended to edge.yaml, in
// which {{listen}} stands for the edge's address.
func newSystemWith(t testing.TB, edgeExtra string) *system {
	t.Helper()
	pki := certstest.New(t)
	s := &system{t: t, pki: pki, dir: pki.Dir, addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	var opsSum, limSum string
	s.token, opsSum = testutil.NewToken(t)
	s.limited, limSum = testutil.NewToken(t)
	cfg := fmt.Sprintf(`listen: %q
tls: {cert: edge.crt, key: edge.key}
device_ca: ca.crt
revoked: revoked.txt
clients:
  - name: ops
    token_sha256: %q
    devices: ["*"]
    allow:
      tcp: ["127.0.0.1:*", "127.0.0.2:*", "localhost:*"]
      udp: ["127.0.0.1:*"]
      pty: true
      exec: true
      reload: true
      files: true
  - name: limited
    token_sha256: %q
    devices: ["dev-*"]
    allow:
      tcp: ["127.0.0.1:1-1024"]
audit_log: audit.jsonl
`, s.addr, opsSum, limSum) + strings.ReplaceAll(edgeExtra, "{{listen}}", s.addr)
	require.NoError(t, os.WriteFile(filepath.Join(s.dir, "edge.yaml"), []byte(cfg), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(s.dir, "revoked.txt"), nil, 0o600))
	s.edgeArgs = []string{"--config", filepath.Join(s.dir, "edge.yaml")}
	s.startEdge()
	return s
}

func (s *system) startEdge() {
	s.t.Helper()
	s.edge = start(s.t, "tether-edge", s.edgeArgs...)
	s.waitHealthy()
}

func (s *system) httpClient() *http.Client {
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: certs.ClientTLSConfig(s.pki.Pool()), DisableKeepAlives: true},
	}
}

func (s *system) waitHealthy() {
	s.t.Helper()
	hc := s.httpClient()
	require.Eventually(s.t, func() bool { return testutil.Healthy(hc, "https://"+s.addr) }, 30*time.Second, 50*time.Millisecond, "edge did not become healthy:\n%s", s.edge.Output())
}

// listedDevice is a device as the edge's API lists it.
type listedDevice struct {
	ID             string `json:"id"`
	ConnectedSince string `json:"connected_since"`
	RemoteAddr     string `json:"remote_addr"`
	Streams        int    `json:"streams"`
}

func (s *system) devices() ([]listedDevice, error) {
	var out []listedDevice
	err := testutil.GetJSON(s.httpClient(), "https://"+s.addr+"/api/devices", s.token, &out)
	return out, err
}

func (s *system) connected(id string) bool {
	devs, err := s.devices()
	if err != nil {
		return false
	}
	for _, d := range devs {
		if d.ID == id {
			return true
		}
	}
	return false
}

func (s *system) waitConnected(id string) {
	s.t.Helper()
	require.Eventually(s.t, func() bool { return s.connected(id) }, 30*time.Second, 50*time.Millisecond,
		"device %s did not connect", id)
}

// addAgent issues a device certificate, writes an agent config and starts
// tether-agent. It waits until the edge lists the device.
func (s *system) addAgent(o agentOpts) *proc {
	s.t.Helper()
	p := start(s.t, "tether-agent", "--config", s.agentConfig(o))
	s.waitConnected(o.id)
	return p
}

// agentConfig issues a device certificate and writes the agent config of
// o; it returns the config's path.
func (s *system) agentConfig(o agentOpts) string {
	s.t.Helper()
	if o.edgeAddr == "" {
		o.edgeAddr = s.addr
	}
	if o.allowTCP == nil {
		o.allowTCP = []string{"127.0.0.1:*"}
	}
	s.pki.Device(o.id)
	crt, key := s.pki.DeviceFiles(o.id)
	quoted := make([]string, len(o.allowTCP))
	for i, a := range o.allowTCP {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	cfg := fmt.Sprintf(`edge: "https://%s/device"
cert: %s
key: %s
ca: ca.crt
allow:
  tcp: [%s]
  udp: ["127.0.0.1:*"]
pty: {enabled: true, shell: "/bin/sh", user: ""}
exec: {enabled: true}
%s`, o.edgeAddr, filepath.Base(crt), filepath.Base(key), strings.Join(quoted, ", "), o.extra)
	path := s.agentConfigPath(o.id)
	require.NoError(s.t, os.WriteFile(path, []byte(cfg), 0o600))
	return path
}

// cli runs the tether CLI as the ops client (or with the given token).
func (s *system) cli(stdin string, args ...string) (string, string, int) {
	s.t.Helper()
	return s.cliAs(s.token, stdin, args...)
}

func (s *system) cliAs(token, stdin string, args ...string) (string, string, int) {
	s.t.Helper()
	full := append([]string{"--edge", "https://" + s.addr, "--ca", s.pki.CAFile, "--token", token}, args...)
	return run(s.t, stdin, "tether", full...)
}

// startCLI starts a long-running tether command (tcp, udp forwards).
func (s *system) startCLI(args ...string) *proc {
	s.t.Helper()
	full := append([]string{"--edge", "https://" + s.addr, "--ca", s.pki.CAFile, "--token", s.token}, args...)
	return start(s.t, "tether", full...)
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
