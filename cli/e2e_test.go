//go:build linux

package cli

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport/client"
	"gopkg.in/yaml.v3"
)

// These tests run the built tether binary against a real tether-edge and
// tether-agent on loopback.

func TestDevices(t *testing.T) {
	f := newFleet(t)

	// No device yet: an empty list in JSON and YAML, and a note instead
	// of a table.
	out, errOut, code := f.tether("", "devices", "-o", "json")
	require.Equal(t, 0, code, errOut)
	require.JSONEq(t, "[]", out)
	out, errOut, code = f.tether("", "devices", "-o", "yaml")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "[]\n", out)
	out, errOut, code = f.tether("", "devices")
	require.Equal(t, 0, code, errOut)
	require.Empty(t, out)
	require.Equal(t, "No devices found.\n", errOut)
	out, errOut, code = f.tether("", "devices", "gw-*")
	require.Equal(t, 0, code, errOut)
	require.Empty(t, out)
	require.Equal(t, "No devices match 'gw-*'.\n", errOut)

	f.addAgent("gw-1", "")
	f.addAgent("gw-2", "")
	f.addAgent("lab-2", "")
	agentVersion := builtAgentVersion(t)
	platform := runtime.GOOS + "/" + runtime.GOARCH

	// Online, with what each agent said at connect.
	devs := f.devicesJSON("-o", "json")
	require.Equal(t, []string{"gw-1", "gw-2", "lab-2"}, deviceIDs(devs))
	for _, d := range devs {
		require.Equal(t, client.StatusOnline, d.Status, d.ID)
		require.Equal(t, agentVersion, d.Version, d.ID)
		require.Equal(t, platform, d.Platform, d.ID)
		require.NotNil(t, d.ConnectedSince, d.ID)
		require.WithinDuration(t, time.Now(), *d.ConnectedSince, 10*time.Minute)
		require.Nil(t, d.LastSeen, d.ID)
		host, _, err := net.SplitHostPort(d.RemoteAddr)
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1", host)
	}

	// The table and its wide form.
	out, errOut, code = f.tether("", "devices")
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	require.Regexp(t, `^ID\s+STATUS\s+EDGE\s+AGE\s+VERSION$`, lines[0])
	require.Regexp(t, `^gw-1\s+online\s+-\s+\d+[smhd]\s+`+regexp.QuoteMeta(agentVersion)+`$`, lines[1])
	out, errOut, code = f.tether("", "devices", "-o", "wide")
	require.Equal(t, 0, code, errOut)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	require.Regexp(t, `^ID\s+STATUS\s+EDGE\s+AGE\s+VERSION\s+PLATFORM\s+OS\s+ADDRESS\s+SINCE\s+STREAMS$`, lines[0])
	require.Contains(t, lines[1], platform)
	require.Regexp(t, `127\.0\.0\.1:\d+\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+0$`, lines[1])

	// A glob, in every format.
	require.Equal(t, []string{"gw-1", "gw-2"}, deviceIDs(f.devicesJSON("gw-*", "-o", "json")))
	out, errOut, code = f.tether("", "devices", "gw-?", "-o", "yaml")
	require.Equal(t, 0, code, errOut)
	var fromYAML []client.Device
	require.NoError(t, yaml.Unmarshal([]byte(out), &fromYAML), out)
	require.Equal(t, []string{"gw-1", "gw-2"}, deviceIDs(fromYAML))
	require.Equal(t, agentVersion, fromYAML[0].Version)
	out, errOut, code = f.tether("", "devices", "lab-*")
	require.Equal(t, 0, code, errOut)
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 2, out)

	// An agent that stops is listed offline, with when it was last seen.
	stopped := time.Now()
	require.NoError(t, f.agents["gw-2"].Stop())
	var gone client.Device
	require.Eventually(t, func() bool {
		for _, d := range f.devicesJSON("-o", "json") {
			if d.ID == "gw-2" && d.Status == client.StatusOffline {
				gone = d
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "gw-2 was not listed offline")
	require.NotNil(t, gone.LastSeen)
	require.WithinDuration(t, stopped, *gone.LastSeen, 5*time.Minute)
	require.Nil(t, gone.ConnectedSince)
	require.Equal(t, agentVersion, gone.Version, "an offline device keeps what it said")
	require.Equal(t, []string{"gw-1", "lab-2"}, deviceIDs(f.devicesJSON("--status", "online", "-o", "json")))
	require.Equal(t, []string{"gw-2"}, deviceIDs(f.devicesJSON("--status", "offline", "-o", "json")))
	out, errOut, code = f.tether("", "devices", "gw-*")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `(?m)^gw-2\s+offline\s+-\s+\d+[smhd]\s+`, out)

	// Shell completion offers the online devices only.
	out, errOut, code = f.tether("", "__complete", "shell", "")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, strings.Fields(out), "gw-1")
	require.Contains(t, strings.Fields(out), "lab-2")
	require.NotContains(t, strings.Fields(out), "gw-2")
	out, _, _ = f.tether("", "__complete", "reload", "la")
	require.Contains(t, strings.Fields(out), "lab-2")
	require.NotContains(t, strings.Fields(out), "gw-1")

	// The limited token sees only the devices its globs match.
	out, errOut, code = runTether(t, baseEnv(t), "", f.args(f.limited, "devices", "-o", "json")...)
	require.Equal(t, 0, code, errOut)
	require.NotContains(t, out, `"gw-1"`)
	require.Contains(t, out, `"lab-2"`)

	// Bad input says what to do, before anything is sent.
	_, errOut, code = f.tether("", "devices", "-o", "xml")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, `unknown output format "xml": use -o with one of table, wide, json, yaml`)
	_, errOut, code = f.tether("", "devices", "gw-[")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, `pattern "gw-["`)
}

// TestDevicesLastSeenExpires: with a short devices.last_seen_ttl, a
// device that disconnected is listed offline, then not at all.
func TestDevicesLastSeenExpires(t *testing.T) {
	f := newFleetWith(t, "devices: {last_seen_ttl: 10s}\n")
	f.addAgent("gw-1", "")
	require.NoError(t, f.agents["gw-1"].Stop())
	require.Eventually(t, func() bool {
		devs := f.devicesJSON("-o", "json")
		return len(devs) == 1 && devs[0].Status == client.StatusOffline
	}, 30*time.Second, 50*time.Millisecond, "gw-1 was not listed offline")
	require.Eventually(t, func() bool { return len(f.devicesJSON("-o", "json")) == 0 },
		60*time.Second, 200*time.Millisecond, "gw-1 was still listed after devices.last_seen_ttl")
}

// devicesJSON runs tether devices with args (which include -o json) and
// decodes its output.
func (f *fleet) devicesJSON(args ...string) []client.Device {
	f.t.Helper()
	out, errOut, code := f.tether("", append([]string{"devices"}, args...)...)
	require.Equal(f.t, 0, code, errOut)
	var devs []client.Device
	require.NoError(f.t, json.Unmarshal([]byte(out), &devs), out)
	return devs
}

func deviceIDs(devs []client.Device) []string {
	ids := []string{}
	for _, d := range devs {
		ids = append(ids, d.ID)
	}
	return ids
}

// builtAgentVersion is the version the built tether-agent reports.
func builtAgentVersion(t *testing.T) string {
	out, err := exec.Command(binPath("tether-agent"), "--version").Output()
	require.NoError(t, err)
	// "tether-agent VERSION (protocol ..., commit ..., go..., os/arch)"
	f := strings.Fields(string(out))
	require.GreaterOrEqual(t, len(f), 2, "tether-agent --version: %q", out)
	require.Equal(t, "tether-agent", f[0], "tether-agent --version: %q", out)
	return f[1]
}

func TestNCHalfClose(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	target := testutil.TCPServer(t, testutil.EchoAfterEOF)
	out, errOut, code := f.tether("ping through the tunnel", "nc", "d1", target)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "echo:PING THROUGH THE TUNNEL", out)
}

func TestTCPForwards(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	a, b := testutil.TCPServer(t, testutil.EchoAfterEOF), testutil.TCPServer(t, testutil.EchoAfterEOF)
	closed := testutil.ClosedAddr(t)
	fwd := f.startTether(false, "tcp", "d1", "0:"+a, "127.0.0.1:0:"+b, "0:"+closed)
	locals := forwardLines(t, fwd, 3)
	require.Contains(t, fwd.Stdout(), " -> d1 "+a+"\n")
	require.Contains(t, fwd.Stdout(), " -> d1 "+b+"\n")

	// A connection the device cannot make is closed, and the reason shown.
	c, err := net.Dial("tcp", locals[2])
	require.NoError(t, err)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = io.ReadAll(c)
	require.NoError(t, err)
	c.Close()
	require.Eventually(t, func() bool {
		return strings.Contains(fwd.Stderr(), locals[2]+" -> d1 "+closed+": dial tcp "+closed)
	}, 30*time.Second, 20*time.Millisecond, "no reason for the refused connection:\n%s", fwd.Stderr())

	for i, local := range locals[:2] {
		require.True(t, strings.HasPrefix(local, "127.0.0.1:"), local)
		require.NotEqual(t, "127.0.0.1:0", local, "port 0 was not replaced by the port picked")
		for j := 0; j < 3; j++ {
			got, err := roundTrip(local, fmt.Sprintf("fwd %d req %d", i, j))
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("echo:FWD %d REQ %d", i, j), got)
		}
	}
	// Ctrl-C ends it, as interrupted.
	require.NoError(t, fwd.Cmd.Process.Signal(os.Interrupt))
	require.Equal(t, ExitInterrupted, exitCode(t, fwd), fwd.Stderr())
	_, err = net.Dial("tcp", locals[0])
	require.Error(t, err, "the listener outlived the command")
}

// roundTrip sends msg to addr, half-closes, and reads the answer.
func roundTrip(addr, msg string) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// TestForwardsSurviveEdgeRestart: TCP and UDP forwards keep their local
// sockets while the edge is down and carry traffic again once it is back.
func TestForwardsSurviveEdgeRestart(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	target := testutil.TCPServer(t, testutil.EchoAfterEOF)
	fwd := f.startTether(false, "tcp", "d1", "0:"+target)
	local := forwardLines(t, fwd, 1)[0]
	got, err := roundTrip(local, "before")
	require.NoError(t, err)
	require.Equal(t, "echo:BEFORE", got)
	ufwd := f.startTether(false, "udp", "d1", "0:"+testutil.UDPEcho(t))
	uc, err := net.Dial("udp", forwardLines(t, ufwd, 1)[0])
	require.NoError(t, err)
	defer uc.Close()
	require.Eventually(t, func() bool { return udpRoundTrip(uc, "before") }, 30*time.Second, 10*time.Millisecond)

	f.edge.Kill9()
	require.Eventually(t, func() bool {
		return strings.Contains(fwd.Stderr(), "lost the connection to the edge")
	}, 30*time.Second, 20*time.Millisecond, "the forward did not notice the lost edge:\n%s", fwd.Stderr())
	// The listener stays open while the edge is down.
	c, err := net.Dial("tcp", local)
	require.NoError(t, err, "the forward closed its listener")
	c.Close()

	f.startEdge()
	f.waitListed("d1")
	require.Eventually(t, func() bool {
		got, err := roundTrip(local, "after")
		return err == nil && got == "echo:AFTER"
	}, 60*time.Second, 200*time.Millisecond, "the forward did not recover:\n%s", fwd.Stderr())
	require.Contains(t, fwd.Stderr(), "reconnected to the edge")
	require.Eventually(t, func() bool { return udpRoundTrip(uc, "after") }, 60*time.Second, 10*time.Millisecond,
		"the UDP forward did not recover:\n%s", ufwd.Stderr())
	for _, p := range []*testutil.Proc{fwd, ufwd} {
		select {
		case <-p.Done():
			t.Fatalf("a forward exited instead of reconnecting:\n%s", p.Stderr())
		default:
		}
	}
}

// udpRoundTrip sends msg on c and reports whether the echo came back.
// UDP may drop: callers retry.
func udpRoundTrip(c net.Conn, msg string) bool {
	if _, err := c.Write([]byte(msg)); err != nil {
		return false
	}
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	n, err := c.Read(buf)
	return err == nil && string(buf[:n]) == "udp:"+msg
}

func TestUDPForward(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	fwd := f.startTether(false, "udp", "d1", "0:"+testutil.UDPEcho(t))
	local := forwardLines(t, fwd, 1)[0]
	c, err := net.Dial("udp", local)
	require.NoError(t, err)
	defer c.Close()
	require.Eventually(t, func() bool { return udpRoundTrip(c, "hello") }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, fwd.Cmd.Process.Signal(os.Interrupt))
	require.Equal(t, ExitInterrupted, exitCode(t, fwd), fwd.Stderr())
	require.Equal(t, "tether: interrupted\n", fwd.Stderr())
}

func TestReload(t *testing.T) {
	f := newFleet(t)
	marker := filepath.Join(t.TempDir(), "reloaded")
	f.addAgent("d1", fmt.Sprintf("reload: {command: [\"/bin/sh\", \"-c\", \"touch %s\"]}\n", marker))
	out, errOut, code := f.tether("", "reload", "d1")
	require.Equal(t, 0, code, errOut)
	require.True(t, strings.HasPrefix(out, "d1: "), out)
	require.FileExists(t, marker)

	f.addAgent("d2", "reload: {command: [\"/bin/sh\", \"-c\", \"echo config is broken >&2; exit 3\"]}\n")
	_, errOut, code = f.tether("", "reload", "d2")
	require.Equal(t, ExitRemote, code, errOut)
	require.Contains(t, errOut, "config is broken")
}

// TestErrorClasses checks each failure a person can hit: its exit code and
// a message that says what to do.
func TestErrorClasses(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	target := testutil.TCPServer(t, testutil.EchoAfterEOF)
	closedAddr := testutil.ClosedAddr(t)
	other := certstest.New(t)
	// A listener that accepts and never speaks: the TLS handshake times out.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { silent.Close() })

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantMsg  []string
	}{
		{"edge refuses connections",
			[]string{"--edge", "https://" + closedAddr, "--ca", f.pki.CAFile, "--token", f.token, "nc", "d1", target},
			ExitUnreachable, []string{"refused", "is tether-edge running"}},
		{"edge name does not resolve",
			[]string{"--edge", "https://edge.invalid:8443", "--ca", f.pki.CAFile, "--token", f.token, "reload", "d1"},
			ExitUnreachable, []string{"cannot resolve", "edge.invalid"}},
		{"edge name does not resolve (devices)",
			[]string{"--edge", "https://edge.invalid:8443", "--ca", f.pki.CAFile, "--token", f.token, "devices"},
			ExitUnreachable, []string{"cannot resolve"}},
		{"edge does not answer",
			[]string{"--edge", "https://" + silent.Addr().String(), "--ca", f.pki.CAFile, "--token", f.token, "--connect-timeout", "1s", "reload", "d1"},
			ExitUnreachable, []string{"timed out", "HTTPS_PROXY"}},
		{"edge does not answer (devices)",
			[]string{"--edge", "https://" + silent.Addr().String(), "--ca", f.pki.CAFile, "--token", f.token, "--connect-timeout", "1s", "devices"},
			ExitUnreachable, []string{"timed out"}},
		{"unknown authority",
			[]string{"--edge", f.edgeURL(), "--token", f.token, "nc", "d1", target},
			ExitTLS, []string{"unknown authority", "pass --ca"}},
		{"wrong CA (devices)",
			[]string{"--edge", f.edgeURL(), "--ca", other.CAFile, "--token", f.token, "devices"},
			ExitTLS, []string{"not signed by the CA in " + other.CAFile, "pass --ca"}},
		{"wrong CA",
			[]string{"--edge", f.edgeURL(), "--ca", other.CAFile, "--token", f.token, "reload", "d1"},
			ExitTLS, []string{"not signed by the CA in " + other.CAFile}},
		{"token rejected", f.args("not-a-token", "nc", "d1", target), ExitAuth, []string{"rejected the token from --token", "401"}},
		{"token rejected (devices)", f.args("not-a-token", "devices"), ExitAuth, []string{"rejected the token"}},
		{"forbidden device", f.args(f.limited, "nc", "d1", target), ExitForbidden, []string{"403", "d1"}},
		{"device offline", f.args(f.token, "reload", "ghost"), ExitOffline, []string{"ghost", "not connected", "tether devices"}},
		{"remote error verbatim",
			f.args(f.token, "nc", "d1", closedAddr),
			ExitRemote, []string{closedAddr, "refused"}},
		{"edge policy denial", f.args(f.token, "nc", "d1", "10.9.8.7:22"), ExitRemote, []string{"not allowed", "10.9.8.7:22"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := runTether(t, baseEnv(t), "x", tt.args...)
			require.Equal(t, tt.wantCode, code, errOut)
			require.True(t, strings.HasPrefix(errOut, "tether: "), errOut)
			for _, m := range tt.wantMsg {
				require.Contains(t, errOut, m)
			}
		})
	}
}

// TestLostSessionMidTunnel: nc reports the loss and exits 255.
func TestLostSessionMidTunnel(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	target := testutil.TCPServer(t, testutil.LineEcho)
	nc := f.startTether(true, "nc", "d1", target)
	_, err := io.WriteString(nc.Stdin, "hello\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return nc.Stdout() == "hello\n" }, 30*time.Second, 10*time.Millisecond)
	f.edge.Kill9()
	code := exitCode(t, nc)
	require.Equal(t, ExitLost, code, nc.Stderr())
	require.Contains(t, nc.Stderr(), "lost")
	nc.Stdin.Close()
}

// TestProfileFromConfigFile runs against `tether-edge dev` with settings
// only from a profile in $XDG_CONFIG_HOME/tether/config.yaml.
func TestProfileFromConfigFile(t *testing.T) {
	dir := t.TempDir()
	port := testutil.FreePort(t)
	edge := spawn(t, false, baseEnv(t), "tether-edge", "dev", "--dir", dir, "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(dir, "agent.yaml"))
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "tether-edge dev wrote no agent.yaml:\n%s", edge.Stderr())
	spawn(t, false, baseEnv(t), "tether-agent", "--config", filepath.Join(dir, "agent.yaml"))

	xdg := t.TempDir()
	cfg := fmt.Sprintf(`default: broken
profiles:
  broken:
    edge: https://127.0.0.1:1
  dev:
    edge: https://127.0.0.1:%d
    token_file: %s
    ca: %s
`, port, filepath.Join(dir, "client.token"), filepath.Join(dir, "ca.crt"))
	require.NoError(t, os.MkdirAll(filepath.Join(xdg, "tether"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(xdg, "tether", "config.yaml"), []byte(cfg), 0o600))
	environ := append(baseEnv(t), "XDG_CONFIG_HOME="+xdg)

	require.Eventually(t, func() bool {
		out, _, code := runTether(t, environ, "", "--profile", "dev", "devices")
		return code == 0 && strings.Contains(out, "demo")
	}, 30*time.Second, 100*time.Millisecond)

	// TETHER_PROFILE selects it as well; without either the default
	// profile (a closed port) is used.
	out, errOut, code := runTether(t, append(environ, "TETHER_PROFILE=dev"), "", "devices", "--json")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, `"demo"`)
	_, errOut, code = runTether(t, environ, "", "devices")
	require.Equal(t, ExitUsage, code, errOut)
	require.Contains(t, errOut, "no token")
	// A flag beats the profile.
	_, errOut, code = runTether(t, append(environ, "TETHER_PROFILE=dev"), "", "--edge", "https://127.0.0.1:1", "devices")
	require.Equal(t, ExitUnreachable, code, errOut)
}

// TestSSHProxyCommand reaches a real OpenSSH server on the device side
// through `tether nc` as ssh's ProxyCommand.
func TestSSHProxyCommand(t *testing.T) {
	sshd := testutil.NeedTool(t, "sshd", "openssh-server")
	sshBin := testutil.NeedTool(t, "ssh", "openssh-client")
	f := newFleet(t)
	f.addAgent("d1", "")
	addr := startSSHD(t, sshd)

	// ssh runs the ProxyCommand through a shell; the settings come from
	// the environment so the command line stays short.
	proxy := fmt.Sprintf("%s nc %%h %s", binPath("tether"), addr)
	environ := append(baseEnv(t),
		"TETHER_EDGE="+f.edgeURL(), "TETHER_CA="+f.pki.CAFile, "TETHER_TOKEN="+f.token)
	out, errOut := runSSH(t, sshBin, environ, nil, proxy, "d1", "echo ssh-through-tether $((6*7))")
	require.Equal(t, "ssh-through-tether 42\n", out, errOut)
	// ssh ends its ProxyCommand with SIGHUP: tether nc exits quietly.
	require.Empty(t, errOut)

	// Megabytes both ways arrive intact.
	payload := make([]byte, 4<<20)
	_, err := rand.Read(payload)
	require.NoError(t, err)
	sum := sha256.Sum256(payload)
	out, errOut = runSSH(t, sshBin, environ, payload, proxy, "d1", "sha256sum; head -c 3000000 /dev/zero | wc -c")
	fields := strings.Fields(out)
	require.GreaterOrEqual(t, len(fields), 3, "ssh printed %q; stderr %s", out, errOut)
	require.Equal(t, hex.EncodeToString(sum[:]), fields[0])
	require.Equal(t, "3000000", fields[len(fields)-1])
	require.Empty(t, errOut)

	// scp (over sftp) both ways, and not a word from tether nc.
	src := filepath.Join(t.TempDir(), "payload")
	require.NoError(t, os.WriteFile(src, payload, 0o600))
	remote := filepath.Join(t.TempDir(), "copied")
	back := filepath.Join(t.TempDir(), "back")
	for _, args := range [][]string{{src, currentUser(t) + "@d1:" + remote}, {currentUser(t) + "@d1:" + remote, back}} {
		errOut = runSCP(t, environ, proxy, args...)
		require.Empty(t, errOut)
	}
	got, err := os.ReadFile(back)
	require.NoError(t, err)
	require.Equal(t, sum, sha256.Sum256(got))
}

// TestCertsDriveARealEdge: a PKI made with tether certs serves a real edge
// and agent.
func TestCertsDriveARealEdge(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"certs", "init", "--dir", dir},
		{"certs", "edge", "--dir", dir, "127.0.0.1", "localhost"},
		{"certs", "device", "--dir", dir, "pki-dev"},
	} {
		out, errOut, code := runTether(t, baseEnv(t), "", args...)
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "Your certificate has been saved in ")
	}
	addr := testutil.FreeAddr(t)
	token, sum := testutil.NewToken(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "edge.yaml"), []byte(fmt.Sprintf(`listen: %q
tls: {cert: edge.crt, key: edge.key}
device_ca: ca.crt
clients:
  - name: ops
    token_sha256: %q
    devices: ["*"]
    allow: {tcp: ["127.0.0.1:*"]}
`, addr, sum)), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte(fmt.Sprintf(`edge: "https://%s/device"
cert: pki-dev.crt
key: pki-dev.key
ca: ca.crt
allow: {tcp: ["127.0.0.1:*"]}
`, addr)), 0o600))
	spawn(t, false, baseEnv(t), "tether-edge", "--config", filepath.Join(dir, "edge.yaml"))
	spawn(t, false, baseEnv(t), "tether-agent", "--config", filepath.Join(dir, "agent.yaml"))
	require.Eventually(t, func() bool {
		out, _, code := runTether(t, baseEnv(t), "", "--edge", "https://"+addr, "--ca", filepath.Join(dir, "ca.crt"),
			"--token", token, "devices", "--json")
		return code == 0 && strings.Contains(out, `"pki-dev"`)
	}, 30*time.Second, 100*time.Millisecond, "the device with a tether certs certificate did not connect")
}
