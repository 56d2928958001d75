package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

// binDir holds tether-edge and tether-agent, built once for the package
// as they ship: stripped and trimmed.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testutil.RunWithBinaries(m, "tether-agent tests", func(dir string) error {
		binDir = dir
		// As they ship: stripped, trimmed and static.
		build := testutil.Build{Flags: []string{"-trimpath", "-ldflags", "-s -w"}, Env: []string{"CGO_ENABLED=0"}}
		return build.Binaries(dir, "../tether-edge", ".")
	}, func() error { return goleak.Find() }))
}

func bin(name string) string { return filepath.Join(binDir, name) }

// start runs a built binary, stdout and stderr in one buffer. It is killed
// at once at the end of the test, and its output logged if the test
// failed.
func start(t testing.TB, name string, args ...string) *testutil.Proc {
	t.Helper()
	return startEnv(t, nil, name, args...)
}

// startEnv is start with more environment variables ("KEY=value").
func startEnv(t testing.TB, env []string, name string, args ...string) *testutil.Proc {
	t.Helper()
	o := testutil.Options{Env: append(os.Environ(), env...), KillAtCleanup: true}
	return testutil.StartWith(t, o, bin(name), args...)
}

// signalAndWait sends sig to p and waits for the exit.
func signalAndWait(t testing.TB, p *testutil.Proc, sig syscall.Signal) error {
	t.Helper()
	require.NoError(t, p.Cmd.Process.Signal(sig))
	return p.Wait(t, 60*time.Second)
}

// runBin runs a binary to completion and returns its output and exit code.
func runBin(t testing.TB, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(name), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("run %s: %v", name, err)
		}
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// world is one tether-edge process and its PKI; agents join with addAgent.
type world struct {
	t     testing.TB
	pki   *certstest.PKI
	dir   string
	addr  string
	token string
	edge  *testutil.Proc
}

func newWorld(t testing.TB, edgeNames ...string) *world {
	t.Helper()
	return newWorldWith(t, "", edgeNames...)
}

// newWorldWith is newWorld with more YAML appended to the edge's config,
// such as a limits section.
func newWorldWith(t testing.TB, edgeExtra string, edgeNames ...string) *world {
	t.Helper()
	pki := certstest.New(t)
	if len(edgeNames) > 0 {
		// An edge certificate for more names than certstest's loopback ones.
		kp, err := pki.CA.IssueServer(append([]string{"127.0.0.1"}, edgeNames...), certs.Options{})
		require.NoError(t, err)
		require.NoError(t, kp.Save(pki.EdgeCertFile, pki.EdgeKeyFile, true))
	}
	w := &world{t: t, pki: pki, dir: pki.Dir, addr: testutil.FreeAddr(t)}
	var sum string
	w.token, sum = testutil.NewToken(t)
	cfg := fmt.Sprintf(`listen: %q
tls: {cert: edge.crt, key: edge.key}
device_ca: ca.crt
clients:
  - name: ops
    token_sha256: %q
    devices: ["*"]
    allow:
      tcp: ["127.0.0.1:*", "127.0.0.2:*", "localhost:*"]
      udp: ["127.0.0.1:*"]
      pty: true
      reload: true
%s`, w.addr, sum, edgeExtra)
	require.NoError(t, os.WriteFile(filepath.Join(w.dir, "edge.yaml"), []byte(cfg), 0o600))
	w.startEdge()
	return w
}

func (w *world) startEdge() {
	w.t.Helper()
	w.edge = start(w.t, "tether-edge", "--config", filepath.Join(w.dir, "edge.yaml"))
	hc := w.httpClient()
	require.Eventually(w.t, func() bool { return testutil.Healthy(hc, "https://"+w.addr) }, 30*time.Second, 50*time.Millisecond, "the edge did not become healthy")
}

func (w *world) httpClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: certs.ClientTLSConfig(w.pki.Pool()), DisableKeepAlives: true}}
}

// connected reports whether the edge lists the device.
func (w *world) connected(id string) bool {
	var devs []struct {
		ID string `json:"id"`
	}
	if testutil.GetJSON(w.httpClient(), "https://"+w.addr+"/api/devices", w.token, &devs) != nil {
		return false
	}
	for _, d := range devs {
		if d.ID == id {
			return true
		}
	}
	return false
}

func (w *world) waitConnected(id string) {
	w.t.Helper()
	require.Eventually(w.t, func() bool { return w.connected(id) }, 60*time.Second, 50*time.Millisecond, "device %s did not connect", id)
}

// agentProc is a device: its certificate, config file and process.
type agentProc struct {
	id, path string
	proc     *testutil.Proc
}

// writeAgentConfig issues a certificate for id (once) and writes its
// config with extra YAML appended.
func (w *world) writeAgentConfig(id, extra string) string {
	w.t.Helper()
	crt, key := w.pki.DeviceFiles(id)
	if _, err := os.Stat(crt); err != nil {
		w.pki.Device(id)
	}
	cfg := fmt.Sprintf("edge: \"https://%s/device\"\ncert: %s\nkey: %s\nca: ca.crt\n%s",
		w.addr, filepath.Base(crt), filepath.Base(key), extra)
	path := filepath.Join(w.dir, id+".yaml")
	tmp := path + ".tmp"
	require.NoError(w.t, os.WriteFile(tmp, []byte(cfg), 0o600))
	require.NoError(w.t, os.Rename(tmp, path))
	return path
}

func (w *world) addAgent(id, extra string) *agentProc {
	w.t.Helper()
	a := &agentProc{id: id, path: w.writeAgentConfig(id, extra)}
	a.proc = start(w.t, "tether-agent", "--config", a.path, "--log-level", "debug")
	w.waitConnected(id)
	return a
}

// client dials the edge as the ops client of device id.
func (w *world) client(id string) *client.Client {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := (&client.Dialer{Edge: "https://" + w.addr, Token: w.token, TLSConfig: w.pki.ClientTLS(), Config: nil}).Dial(ctx, id)
	require.NoError(w.t, err)
	w.t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func reasonOf(t testing.TB, err error) string {
	t.Helper()
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re, "want an Error answer from the device; got %v", err)
	return re.Reason
}

// connectProxy is an HTTP CONNECT proxy that sends every tunnel to one
// address, whatever host was asked for, and records what was asked.
type connectProxy struct {
	addr string
	mu   sync.Mutex
	// mu guards the following.
	asked []string
}

func newConnectProxy(t testing.TB, to string) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &connectProxy{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var cmu sync.Mutex
	conns := map[net.Conn]struct{}{}
	track := func(c net.Conn) {
		cmu.Lock()
		conns[c] = struct{}{}
		cmu.Unlock()
	}
	t.Cleanup(func() {
		ln.Close()
		cmu.Lock()
		for c := range conns {
			c.Close()
		}
		cmu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil || req.Method != http.MethodConnect {
					_, _ = io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
					return
				}
				_ = c.SetReadDeadline(time.Time{})
				p.mu.Lock()
				p.asked = append(p.asked, req.Host)
				p.mu.Unlock()
				up, err := net.Dial("tcp", to)
				if err != nil {
					_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
					return
				}
				track(up)
				_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
				_, _, _ = transport.Splice(context.Background(), c, up, nil)
			}()
		}
	}()
	return p
}

func (p *connectProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.asked...)
}

var _ = strings.Contains
