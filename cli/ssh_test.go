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

	"github.com/tetherhq/tether/internal/testutil"
)

var execLookPath = exec.LookPath

// findSSHD returns the path of OpenSSH's sshd, or "" when it is missing.
func findSSHD() string {
	if p, err := exec.LookPath("sshd"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

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
