package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/shellquote"
	"github.com/tetherhq/tether/internal/testutil"
)

var edgeBin string

func TestMain(m *testing.M) {
	os.Exit(testutil.RunWithBinaries(m, "tether-edge tests", func(dir string) error {
		edgeBin = filepath.Join(dir, "tether-edge")
		return testutil.BuildBinaries(dir, ".")
	}, func() error { return goleak.Find() }))
}

// startEdge runs the built binary with stdout and stderr kept apart; it
// is killed at the end of the test if still running, and its output
// logged on failure.
func startEdge(t *testing.T, args ...string) *testutil.Proc {
	t.Helper()
	return testutil.StartWith(t, testutil.Options{SplitOutput: true, KillAtCleanup: true}, edgeBin, args...)
}

// stopEdge sends SIGTERM and returns the exit error.
func stopEdge(t *testing.T, p *testutil.Proc) error {
	t.Helper()
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	return p.Wait(t, 30*time.Second)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpsClient(t *testing.T, caFile string) *http.Client {
	pool, err := certs.LoadPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: certs.ClientTLSConfig(pool), DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 5 * time.Second, Transport: tr}
}

func listDevices(hc *http.Client, addr, token string) ([]string, error) {
	var out []struct {
		ID string `json:"id"`
	}
	if err := testutil.GetJSON(hc, "https://"+addr+"/api/devices", token, &out); err != nil {
		return nil, err
	}
	var ids []string
	for _, d := range out {
		ids = append(ids, d.ID)
	}
	return ids, nil
}

func TestTokenCommand(t *testing.T) {
	out, err := exec.Command(edgeBin, "token").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %q; want a token line and a token_sha256 line", out)
	}
	sum := sha256.Sum256([]byte(lines[0]))
	want := fmt.Sprintf("token_sha256: %q", hex.EncodeToString(sum[:]))
	if lines[1] != want {
		t.Errorf("second line %q; want %q", lines[1], want)
	}
	if len(lines[0]) < 32 {
		t.Errorf("token %q is too short", lines[0])
	}
}

// TestTokenHashCommand: token hash prints the same token_sha256 line as
// token for the token on stdin, and refuses empty input.
func TestTokenHashCommand(t *testing.T) {
	out, err := exec.Command(edgeBin, "token").Output()
	if err != nil {
		t.Fatal(err)
	}
	tok, line, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	cmd := exec.Command(edgeBin, "token", "hash")
	cmd.Stdin = strings.NewReader("  " + tok + "\n")
	got, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != line {
		t.Errorf("token hash printed %q; want %q", got, line)
	}
	if strings.Contains(string(got), tok) {
		t.Error("token hash repeated the token")
	}
	cmd = exec.Command(edgeBin, "token", "hash")
	cmd.Stdin = strings.NewReader("\n")
	got, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(got), "no token on stdin") {
		t.Errorf("empty stdin: got %v, %q; want an error saying no token on stdin", err, got)
	}
}

func TestDevCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev x") // printed commands quote it
	addr := testutil.FreeAddr(t)
	p := startEdge(t, "dev", "--dir", dir, "--listen", addr, "--device", "bench-1")
	q := shellquote.Quote
	waitFor(t, "the dev edge to print its commands", func() bool { return strings.Contains(p.Stdout(), "devices") })
	out := p.Stdout()
	for _, want := range []string{
		"tether-agent --config '" + filepath.Join(dir, "agent.yaml") + "'",
		fmt.Sprintf("tether --edge https://%s --ca %s --token-file %s devices", addr, q(filepath.Join(dir, "ca.crt")), q(filepath.Join(dir, "client.token"))),
		fmt.Sprintf("File transfers (tether cp) reach %[4]s on the device, and nothing else:\n  tether --edge https://%[1]s --ca %[2]s --token-file %[3]s cp ./notes.txt '%[5]s'\n",
			addr, q(filepath.Join(dir, "ca.crt")), q(filepath.Join(dir, "client.token")), filepath.Join(dir, "files"), "bench-1:"+filepath.Join(dir, "files")+"/"),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for name, mode := range map[string]os.FileMode{"ca.key": 0o600, "edge.key": 0o600, "device.key": 0o600, "client.token": 0o600,
		"ca.crt": 0o644, "edge.crt": 0o644, "device.crt": 0o644, "edge.yaml": 0o600, "agent.yaml": 0o600} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s has mode %v; want %v", name, st.Mode().Perm(), mode)
		}
	}
	agentYAML, err := os.ReadFile(filepath.Join(dir, "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var agent map[string]any
	if err := yaml.Unmarshal(agentYAML, &agent); err != nil {
		t.Fatal(err)
	}
	if agent["edge"] != "https://"+addr+"/device" || agent["cert"] != "device.crt" || agent["key"] != "device.key" || agent["ca"] != "ca.crt" {
		t.Errorf("agent.yaml = %v", agent)
	}
	checkDevFiles(t, dir, filepath.Join(dir, "edge.yaml"), "bench-1")

	// The generated device connects with mTLS and the token lists it.
	kp, err := certs.Load(filepath.Join(dir, "device.crt"), filepath.Join(dir, "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := certs.LoadPool(filepath.Join(dir, "ca.crt"))
	dc := &device.Client{URL: agent["edge"].(string), TLSConfig: certs.DeviceTLSConfig(kp.TLSCertificate(), pool), Config: nil, Logger: nil}
	if err := dc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	tok, err := os.ReadFile(filepath.Join(dir, "client.token"))
	if err != nil {
		t.Fatal(err)
	}
	hc := httpsClient(t, filepath.Join(dir, "ca.crt"))
	waitFor(t, "the device to be listed", func() bool {
		ids, err := listDevices(hc, addr, strings.TrimSpace(string(tok)))
		return err == nil && len(ids) == 1 && ids[0] == "bench-1"
	})
	dc.Close()
	if err := stopEdge(t, p); err != nil {
		t.Fatalf("tether-edge dev exited with %v after SIGTERM; want 0", err)
	}

	// A second run reuses the set-up, on the address it was created for.
	p2 := startEdge(t, "dev", "--dir", dir)
	waitFor(t, "the second run to serve", func() bool { return strings.Contains(p2.Stdout(), "devices") })
	if !strings.Contains(p2.Stdout(), "https://"+addr) {
		t.Errorf("second run does not serve on %s:\n%s", addr, p2.Stdout())
	}
	if !strings.Contains(p2.Stdout(), "Using the dev set-up") {
		t.Errorf("second run did not reuse the set-up:\n%s", p2.Stdout())
	}
	tok2, _ := os.ReadFile(filepath.Join(dir, "client.token"))
	if !bytes.Equal(tok, tok2) {
		t.Error("the second run replaced client.token")
	}
	if err := stopEdge(t, p2); err != nil {
		t.Fatalf("exit %v; want 0", err)
	}
}

func TestServeReloadRevokesAndTermDrains(t *testing.T) {
	path, pki := writeIssueConfig(t)
	dir := filepath.Dir(path)
	token, sum, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(issueConfig, "<64 hex chars>", sum, 1)
	metricsAddr := testutil.FreeAddr(t)
	cfg = strings.Replace(cfg, "127.0.0.1:9090", metricsAddr, 1)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreeAddr(t)
	p := startEdge(t, "--config", path, "--listen", addr)
	hc := httpsClient(t, filepath.Join(dir, "ca.crt"))
	waitFor(t, "the edge to be healthy", func() bool { return testutil.Healthy(hc, "https://"+addr) })

	kp := pki.Device("dev-1")
	dc := &device.Client{URL: "https://" + addr + "/device", TLSConfig: pki.DeviceTLS(kp), Config: nil, Logger: nil}
	dc.BackoffInitial, dc.BackoffMax = 50*time.Millisecond, 200*time.Millisecond
	if err := dc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	waitFor(t, "the device to be listed", func() bool {
		ids, err := listDevices(hc, addr, token)
		return err == nil && len(ids) == 1
	})

	// Metrics are served on metrics_listen.
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^tether_edge_devices_connected 1$`).Match(body.Bytes()) {
		t.Errorf("metrics lack tether_edge_devices_connected 1:\n%.2000s", body.String())
	}

	// A broken config on SIGHUP keeps the running policy.
	if err := os.WriteFile(path, []byte(cfg+"bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.Cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the failed reload to be logged", func() bool { return strings.Contains(p.Stderr(), "reload failed") })
	if ids, err := listDevices(hc, addr, token); err != nil || len(ids) != 1 {
		t.Fatalf("after a failed reload: %v, %v", ids, err)
	}

	// A device CA file that no longer holds the device's CA cuts it at the
	// next SIGHUP; the file put back takes it in again.
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewCA("another device CA", certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, other.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = p.Cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the untrusted device to be cut", func() bool { return strings.Contains(p.Stderr(), "certificate no longer trusted") })
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	_ = p.Cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the device to be back", func() bool {
		ids, err := listDevices(hc, addr, token)
		return err == nil && len(ids) == 1
	})

	// Log rotation: rename the audit log; SIGHUP starts a new one.
	if err := os.Rename(filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "audit.jsonl.1")); err != nil {
		t.Fatal(err)
	}

	// Revoke by SIGHUP: the live session ends and reconnects are refused.
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "revoked.txt"), []byte(certs.SerialHex(kp.Cert)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.Cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the revoked device to be cut", func() bool {
		ids, err := listDevices(hc, addr, token)
		return err == nil && len(ids) == 0
	})
	waitFor(t, "a reconnect to be refused as revoked", func() bool { return strings.Contains(p.Stderr(), "is revoked") })
	dc.Close()

	var audit []byte
	waitFor(t, "the revocation in the new audit log", func() bool {
		audit, _ = os.ReadFile(filepath.Join(dir, "audit.jsonl"))
		return strings.Contains(string(audit), `"reason":"certificate revoked"`)
	})
	if strings.Contains(string(audit), token) {
		t.Error("the token leaked into the audit log")
	}
	if err := stopEdge(t, p); err != nil {
		t.Fatalf("exit %v after SIGTERM; want 0", err)
	}
}

// TestHelpPointsAtTheReference: --help names the configuration reference.
func TestHelpPointsAtTheReference(t *testing.T) {
	out, err := exec.Command(edgeBin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	for _, want := range []string{"docs/edge.md", "tether-edge token hash < TOKEN_FILE"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--help does not mention %q:\n%s", want, out)
		}
	}
}

// TestServeFollowsACertificateRenewal: new certificate files are served
// from the next handshake on, with no signal, while the device connected
// before stays, and the metrics say when the served certificate expires;
// files that do not load keep the certificate served.
func TestServeFollowsACertificateRenewal(t *testing.T) {
	path, pki := writeIssueConfig(t)
	dir := filepath.Dir(path)
	token, sum, err := newToken()
	require.NoError(t, err)
	metricsAddr := testutil.FreeAddr(t)
	cfg := strings.Replace(strings.Replace(issueConfig, "<64 hex chars>", sum, 1), "127.0.0.1:9090", metricsAddr, 1)
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	addr := testutil.FreeAddr(t)
	p := startEdge(t, "--config", path, "--listen", addr)
	hc := httpsClient(t, filepath.Join(dir, "ca.crt"))
	waitFor(t, "the edge to be healthy", func() bool { return testutil.Healthy(hc, "https://"+addr) })

	dc := &device.Client{URL: "https://" + addr + "/device", TLSConfig: pki.DeviceTLS(pki.Device("dev-1"))}
	require.NoError(t, dc.Start(context.Background()))
	defer dc.Close()
	waitFor(t, "the device to be listed", func() bool {
		ids, err := listDevices(hc, addr, token)
		return err == nil && len(ids) == 1
	})

	// served is the serial of the certificate a new connection gets.
	served := func() string {
		c, err := tls.Dial("tcp", addr, certs.ClientTLSConfig(pki.Pool()))
		require.NoError(t, err)
		defer c.Close()
		return certs.SerialHex(c.ConnectionState().PeerCertificates[0])
	}
	require.Equal(t, certs.SerialHex(pki.Edge.Cert), served())
	// expiry is the metric of the served certificate's end.
	expiry := func() int64 {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		m := regexp.MustCompile(`(?m)^tether_edge_tls_certificate_expiry_timestamp_seconds (\S+)$`).FindSubmatch(body)
		require.NotNil(t, m, "no certificate expiry in the metrics:\n%.3000s", body)
		v, err := strconv.ParseFloat(string(m[1]), 64)
		require.NoError(t, err)
		return int64(v)
	}
	require.Equal(t, pki.Edge.Cert.NotAfter.Unix(), expiry())

	renewed, err := pki.CA.IssueServer([]string{"127.0.0.1"}, certs.Options{Lifetime: 48 * time.Hour})
	require.NoError(t, err)
	require.NoError(t, renewed.Save(pki.EdgeCertFile, pki.EdgeKeyFile, true))
	later := time.Now().Add(time.Minute) // a new modification time, however coarse the clock
	require.NoError(t, os.Chtimes(pki.EdgeCertFile, later, later))
	require.Equal(t, certs.SerialHex(renewed.Cert), served(), "a new connection got the old certificate")
	require.Equal(t, renewed.Cert.NotAfter.Unix(), expiry())
	waitFor(t, "the reload to be logged", func() bool { return strings.Contains(p.Stderr(), "edge certificate reloaded from disk") })
	ids, err := listDevices(hc, addr, token)
	require.NoError(t, err)
	require.Equal(t, []string{"dev-1"}, ids)
	require.Equal(t, 1, strings.Count(p.Stderr(), "device connected"), "the device reconnected:\n%s", p.Stderr())

	require.NoError(t, os.WriteFile(pki.EdgeKeyFile, []byte("not a key"), 0o600))
	require.Equal(t, certs.SerialHex(renewed.Cert), served(), "broken files replaced the certificate")
	waitFor(t, "the failed reload to be logged", func() bool {
		return strings.Contains(p.Stderr(), "edge certificate files changed but do not load; still using the previous certificate")
	})
}
