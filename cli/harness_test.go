//go:build linux

package cli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/internal/testutil"
	"go.uber.org/goleak"
)

// binDir holds tether, tether-edge and tether-agent, built once in TestMain.
var binDir string

// buildAndRun builds the three binaries, runs the tests, and fails the run
// when goroutines outlive them.
func buildAndRun(m *testing.M) int {
	return testutil.RunWithBinaries(m, "cli tests", func(dir string) error {
		binDir = dir
		// tether itself is built with the race detector, so that a race in
		// the CLI makes it exit 66 and fails the test that ran it;
		// benchmarks build it as users get it.
		flag.Parse()
		race := []string{"-race"}
		if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
			race = nil
		}
		if err := (testutil.Build{Flags: race}).Binaries(dir, "../cmd/tether"); err != nil {
			return err
		}
		return testutil.BuildBinaries(dir, "../cmd/tether-edge", "../cmd/tether-agent", "../internal/testoidc/cmd/testoidc")
	}, func() error { return goleak.Find() })
}

func binPath(name string) string { return filepath.Join(binDir, name) }

// spawn starts a built binary with stdout and stderr kept apart.
// withStdin keeps a pipe to its stdin open. It is stopped when the test
// ends.
func spawn(t testing.TB, withStdin bool, environ []string, name string, args ...string) *testutil.Proc {
	t.Helper()
	return testutil.StartWith(t, procOptions(environ, withStdin), binPath(name), args...)
}

// procOptions are how the tests here run a binary: SIGTERM gives it 20 s
// before the process group is killed.
func procOptions(environ []string, withStdin bool) testutil.Options {
	return testutil.Options{Env: environ, Stdin: withStdin, SplitOutput: true, StopTimeout: 20 * time.Second}
}

// exitCode waits for p to exit and returns its code.
func exitCode(t testing.TB, p *testutil.Proc) int {
	t.Helper()
	_ = p.Wait(t, 60*time.Second)
	return p.ExitCode()
}

// baseEnv is a clean environment: no TETHER_* settings and no config file
// from the machine running the tests.
func baseEnv(t testing.TB) []string {
	// The race runtime sleeps a second before exiting unless told not to.
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LANG=C", "GORACE=atexit_sleep_ms=0"}
}

// fleet is a real tether-edge with one or more tether-agents on loopback.
type fleet struct {
	t       testing.TB
	pki     *certstest.PKI
	dir     string
	addr    string
	token   string // every right on every device
	limited string // may reach devices named "lab-*" only
	edge    *testutil.Proc
	agents  map[string]*testutil.Proc
	clients []*testutil.Proc // long-running tether commands
}

// newFleet writes an edge config for a fresh PKI and starts tether-edge.
func newFleet(t testing.TB) *fleet {
	t.Helper()
	return newFleetWith(t, "")
}

// newFleetWith is newFleet with extra YAML appended to the edge's config.
func newFleetWith(t testing.TB, extra string) *fleet {
	t.Helper()
	pki := certstest.New(t)
	f := &fleet{t: t, pki: pki, dir: pki.Dir, addr: testutil.FreeAddr(t), agents: map[string]*testutil.Proc{}}
	var sum, limSum string
	f.token, sum = testutil.NewToken(t)
	f.limited, limSum = testutil.NewToken(t)
	cfg := fmt.Sprintf(`listen: %q
tls: {cert: edge.crt, key: edge.key}
device_ca: ca.crt
clients:
  - name: ops
    token_sha256: %q
    devices: ["*"]
    allow:
      tcp: ["127.0.0.1:*", "localhost:*"]
      udp: ["127.0.0.1:*"]
      pty: true
      exec: true
      reload: true
      files: true
  - name: lab
    token_sha256: %q
    devices: ["lab-*"]
    allow:
      tcp: ["127.0.0.1:1-1024"]
%s`, f.addr, sum, limSum, extra)
	require.NoError(t, os.WriteFile(filepath.Join(f.dir, "edge.yaml"), []byte(cfg), 0o600))
	f.startEdge()
	return f
}

func (f *fleet) edgeURL() string { return "https://" + f.addr }

func (f *fleet) startEdge() {
	f.t.Helper()
	f.edge = spawn(f.t, false, baseEnv(f.t), "tether-edge", "--config", filepath.Join(f.dir, "edge.yaml"))
	// Clients go first (cleanups run last-in first-out): an edge asked to
	// stop waits for its client sessions to drain.
	f.t.Cleanup(func() {
		for _, p := range f.clients {
			_ = p.Stop()
		}
	})
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: certs.ClientTLSConfig(f.pki.Pool()), DisableKeepAlives: true}}
	require.Eventually(f.t, func() bool { return testutil.Healthy(hc, f.edgeURL()) }, 30*time.Second, 50*time.Millisecond, "the edge did not come up:\n%s", f.edge.Stderr())
}

// addAgent starts tether-agent for id and waits until the edge lists it.
// extra is YAML appended to its config. Exec streams are enabled unless
// extra has an exec section of its own.
func (f *fleet) addAgent(id, extra string) {
	f.t.Helper()
	f.pki.Device(id)
	f.startAgent(id, extra)
}

// startAgent is addAgent with the device certificate already in
// Dir/<id>.crt and Dir/<id>.key.
func (f *fleet) startAgent(id, extra string) {
	f.t.Helper()
	crt, key := f.pki.DeviceFiles(id)
	cfg := fmt.Sprintf(`edge: "https://%s/device"
cert: %s
key: %s
ca: ca.crt
allow:
  tcp: ["127.0.0.1:*", "localhost:*"]
  udp: ["127.0.0.1:*"]
pty: {enabled: true, shell: "/bin/sh"}
%s`, f.addr, filepath.Base(crt), filepath.Base(key), extra)
	if !strings.Contains(extra, "exec:") {
		cfg += "\nexec: {enabled: true}\n"
	}
	path := filepath.Join(f.dir, id+".yaml")
	require.NoError(f.t, os.WriteFile(path, []byte(cfg), 0o600))
	f.agents[id] = spawn(f.t, false, baseEnv(f.t), "tether-agent", "--config", path)
	f.waitListed(id)
}

func (f *fleet) waitListed(id string) {
	f.t.Helper()
	require.Eventually(f.t, func() bool {
		out, _, code := f.tether("", "devices", "-o", "json", "--status", "online")
		return code == 0 && strings.Contains(out, `"`+id+`"`)
	}, 30*time.Second, 100*time.Millisecond, "device %s did not connect", id)
}

// args are the global flags of the ops client.
func (f *fleet) args(token string, more ...string) []string {
	return append([]string{"--edge", f.edgeURL(), "--ca", f.pki.CAFile, "--token", token}, more...)
}

// tether runs the built CLI as the ops client and returns stdout, stderr
// and the exit code.
func (f *fleet) tether(stdin string, args ...string) (string, string, int) {
	f.t.Helper()
	return runTether(f.t, baseEnv(f.t), stdin, f.args(f.token, args...)...)
}

func runTether(t testing.TB, environ []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return runCmd(t, environ, stdin, "tether", args...)
}

// runCmd runs the built binary name and returns stdout, stderr and the
// exit code.
func runCmd(t testing.TB, environ []string, stdin, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath(name), args...)
	cmd.Env = environ
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(t, ok, "run %s %v: %v", name, args, err)
		code = ee.ExitCode()
	}
	return out.String(), errOut.String(), code
}

// startTether starts a long-running tether command as the ops client.
func (f *fleet) startTether(withStdin bool, args ...string) *testutil.Proc {
	f.t.Helper()
	p := spawn(f.t, withStdin, baseEnv(f.t), "tether", f.args(f.token, args...)...)
	f.clients = append(f.clients, p)
	return p
}

// forwardLines waits for n "LOCAL -> DEVICE REMOTE" lines and returns the
// local addresses.
func forwardLines(t testing.TB, p *testutil.Proc, n int) []string {
	t.Helper()
	var addrs []string
	require.Eventually(t, func() bool {
		addrs = addrs[:0]
		for _, line := range strings.Split(p.Stdout(), "\n") {
			if i := strings.Index(line, " -> "); i > 0 {
				addrs = append(addrs, line[:i])
			}
		}
		return len(addrs) >= n
	}, 30*time.Second, 20*time.Millisecond, "forward did not start:\n%s\n%s", p.Stdout(), p.Stderr())
	return addrs
}
