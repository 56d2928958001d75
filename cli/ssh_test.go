//go:build linux

package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/internal/testutil"
)

var execLookPath = exec.LookPath

// startSSHD runs sshd on 127.0.0.1:<free port> with a generated host key
// and one authorized client key, and returns its address.
func startSSHD(t *testing.T, sshd string) string {
	t.Helper()
	dir := sshDir(t)
	port := testutil.FreePort(t)
	conf := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PidFile %s
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers %s
Subsystem sftp internal-sftp
`, port, filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "sshd.pid"), currentUser(t))
	cfgPath := filepath.Join(dir, "sshd_config")
	require.NoError(t, os.WriteFile(cfgPath, []byte(conf), 0o600))
	// sshd refuses to start without its privilege separation directory.
	_ = os.MkdirAll("/run/sshd", 0o755)
	p := spawnPath(t, sshd, "-D", "-e", "-f", cfgPath)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, 20*time.Second, 50*time.Millisecond, "sshd did not listen:\n%s", p.Stderr())
	return addr
}

// sshDir makes the keys of a test once per test.
func sshDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, k := range []string{"host_key", "id_ed25519"} {
		out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput()
		require.NoError(t, err, "ssh-keygen: %s", out)
	}
	pub, err := os.ReadFile(filepath.Join(dir, "id_ed25519.pub"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600))
	sshKeyDir = dir
	return dir
}

// sshKeyDir is the directory of the last keys made by sshDir.
var sshKeyDir string

func currentUser(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("id", "-un").Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

// spawnPath is spawn for a binary outside binDir, in this process's
// environment.
func spawnPath(t *testing.T, path string, args ...string) *testutil.Proc {
	t.Helper()
	return testutil.StartWith(t, procOptions(nil, false), path, args...)
}

// runSSH runs one command over ssh with proxy as its ProxyCommand.
func runSSH(t *testing.T, sshBin string, environ []string, stdin []byte, proxy, host, command string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sshBin, "-F", "/dev/null",
		"-i", filepath.Join(sshKeyDir, "id_ed25519"),
		"-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR",
		"-o", "ProxyCommand="+proxy,
		currentUser(t)+"@"+host, command)
	cmd.Env = environ
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Stdin = bytes.NewReader(stdin)
	err := cmd.Run()
	require.NoError(t, err, "ssh: %s", errOut.String())
	return out.String(), errOut.String()
}

// sshCall is what tether ssh would have run.
type sshCall struct {
	path      string
	argv, env []string
	ran       bool
}

// fakeSSH replaces the system calls of tether ssh for one test.
func fakeSSH(t *testing.T, self string, environ []string, found bool) *sshCall {
	t.Helper()
	call := &sshCall{}
	look, exe, envf, run := sshLookPath, sshExecutable, sshEnviron, sshExec
	t.Cleanup(func() { sshLookPath, sshExecutable, sshEnviron, sshExec = look, exe, envf, run })
	sshLookPath = func(name string) (string, error) {
		if !found {
			return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
		}
		return "/usr/bin/" + name, nil
	}
	sshExecutable = func() (string, error) { return self, nil }
	sshEnviron = func() []string { return environ }
	sshExec = func(path string, argv, env []string) error {
		call.path, call.argv, call.env, call.ran = path, argv, env, true
		return nil
	}
	return call
}

func TestSSHCommandLine(t *testing.T) {
	pki := certstest.New(t)
	call := fakeSSH(t, "/opt/my tools/tether%1", []string{"PATH=/usr/bin", "TETHER_TOKEN_FILE=/elsewhere", "TETHER_EDGE=https://other:1"}, true)
	secret := "s3cret-token-value"
	out, errOut, code := runMain(t, "", env{EnvTokenFile: "/elsewhere"},
		"--edge", "https://edge.example.com:8443", "--token", secret, "--ca", pki.CAFile, "-v", "--connect-timeout", "5s",
		"ssh", "root@gw-1", "-p", "2222", "-o", "ServerAliveInterval=10", "uptime", "-p")
	require.Equal(t, 0, code, errOut)
	require.Empty(t, out)
	require.True(t, call.ran)
	require.Equal(t, "/usr/bin/ssh", call.path)
	require.Equal(t, []string{"ssh",
		"-o", `ProxyCommand='/opt/my tools/tether%%1' -v --connect-timeout 5s nc gw-1 127.0.0.1:%p`,
		"-o", "HostKeyAlias=gw-1.tether",
		"root@gw-1", "-p", "2222", "-o", "ServerAliveInterval=10", "uptime", "-p"}, call.argv)
	for _, a := range call.argv {
		require.NotContains(t, a, secret, "the token is on ssh's command line")
	}
	require.ElementsMatch(t, []string{"PATH=/usr/bin", "TETHER_EDGE=https://edge.example.com:8443",
		"TETHER_TOKEN=" + secret, "TETHER_CA=" + pki.CAFile}, call.env)

	// A profile and its config file reach tether nc too.
	call = fakeSSH(t, "/usr/local/bin/tether", nil, true)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "lab.token"), []byte("lab-token\n"), 0o600))
	require.NoError(t, os.WriteFile(cfg, []byte("profiles:\n  lab:\n    edge: https://lab:8443\n    token_file: lab.token\n"), 0o600))
	_, errOut, code = runMain(t, "", nil, "--config", cfg, "--profile", "lab", "ssh", "gw-2")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, []string{"ssh", "-o", "ProxyCommand=/usr/local/bin/tether nc gw-2 127.0.0.1:%p",
		"-o", "HostKeyAlias=gw-2.tether", "gw-2"}, call.argv)
	require.ElementsMatch(t, []string{"TETHER_EDGE=https://lab:8443", "TETHER_TOKEN=lab-token",
		"TETHER_CONFIG=" + cfg, "TETHER_PROFILE=lab"}, call.env)
}

func TestSSHCommandErrors(t *testing.T) {
	settings := env{EnvEdge: "https://edge.example.com:8443", EnvToken: "t"}
	tests := []struct {
		name     string
		env      env
		found    bool
		args     []string
		wantCode int
		want     string
	}{
		{"ssh not installed", settings, false, []string{"ssh", "root@d1"}, ExitError, "ssh is not installed (not found in PATH): install OpenSSH's client"},
		{"no device", settings, true, []string{"ssh", "root@"}, ExitUsage, `"root@" names no device`},
		{"no device at all", settings, true, []string{"ssh"}, ExitUsage, "usage: tether ssh"},
		{"a URI", settings, true, []string{"ssh", "ssh://root@d1:2222"}, ExitUsage, "-p PORT"},
		{"no edge", env{EnvToken: "t"}, true, []string{"ssh", "d1"}, ExitUsage, "no edge URL"},
		{"a missing CA", env{EnvEdge: "https://e", EnvToken: "t", EnvCA: "/nonexistent/ca.crt"}, true, []string{"ssh", "d1"}, ExitUsage, "/nonexistent/ca.crt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			call := fakeSSH(t, "/usr/bin/tether", nil, tt.found)
			_, errOut, code := runMain(t, "", tt.env, tt.args...)
			require.Equal(t, tt.wantCode, code, errOut)
			require.Contains(t, errOut, tt.want)
			require.False(t, call.ran, "ssh ran")
		})
	}
}

// TestSSHCommand runs tether ssh against a real OpenSSH server on the
// device side, on a port of its own given with ssh's -p.
func TestSSHCommand(t *testing.T) {
	sshd := testutil.NeedTool(t, "sshd", "openssh-server")
	testutil.NeedTool(t, "ssh", "openssh-client")
	f := newFleet(t)
	f.addAgent("d1", "")
	addr := startSSHD(t, sshd)
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	sshArgs := func(checking string) []string {
		return f.args(f.token, "ssh", currentUser(t)+"@d1", "-p", port, "-F", "/dev/null",
			"-i", filepath.Join(sshKeyDir, "id_ed25519"), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
			"-o", "StrictHostKeyChecking="+checking, "-o", "UserKnownHostsFile="+knownHosts,
			"-o", "LogLevel=ERROR", "echo tether-ssh $((6*7))")
	}
	out, errOut, code := runTether(t, baseEnv(t), "", sshArgs("accept-new")...)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "tether-ssh 42\n", out)
	require.Empty(t, errOut)

	// The host key is remembered under the device's alias, and matches
	// the next time.
	kh, err := os.ReadFile(knownHosts)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(kh), "d1.tether "), "known_hosts:\n%s", kh)
	out, errOut, code = runTether(t, baseEnv(t), "", sshArgs("yes")...)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "tether-ssh 42\n", out)
	require.Empty(t, errOut)

	// A device that is not connected: ssh fails, and tether nc says why.
	args := sshArgs("yes")
	for i, a := range args {
		if a == currentUser(t)+"@d1" {
			args[i] = "root@d9"
		}
	}
	_, errOut, code = runTether(t, baseEnv(t), "", args...)
	require.Equal(t, 255, code, errOut)
	require.Contains(t, errOut, "device d9 is not connected")
}

// runSCP copies with scp through proxy as its ProxyCommand and returns
// its stderr.
func runSCP(t *testing.T, environ []string, proxy string, args ...string) string {
	t.Helper()
	scp, err := execLookPath("scp")
	require.NoError(t, err, "scp comes with ssh")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, scp, append([]string{"-F", "/dev/null", "-q",
		"-i", filepath.Join(sshKeyDir, "id_ed25519"),
		"-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR",
		"-o", "ProxyCommand=" + proxy}, args...)...)
	cmd.Env = environ
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	require.NoError(t, cmd.Run(), "scp: %s", errOut.String())
	return errOut.String()
}
