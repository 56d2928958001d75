//go:build linux

package pty_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"os/user"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/pty"
)

// addUser creates a throw-away user with a home directory, /bin/sh as its
// login shell and one supplementary group, and removes both at the end.
func addUser(t *testing.T) (name, group string) {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	name, group = "tpty"+suffix, "tptyg"+suffix
	run := func(args ...string) {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		require.NoError(t, err, "%v: %s", args, out)
	}
	run("groupadd", group)
	t.Cleanup(func() { _ = exec.Command("groupdel", group).Run() })
	run("useradd", "-m", "-s", "/bin/sh", "-G", group, name)
	t.Cleanup(func() { _ = exec.Command("userdel", "-r", name).Run() })
	return name, group
}

func TestRunAsConfiguredUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root; the agent runs as root on devices")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("useradd is not installed, so no test user can be made")
	}
	name, group := addUser(t)
	u, err := user.Lookup(name)
	require.NoError(t, err)
	g, err := user.LookupGroup(group)
	require.NoError(t, err)

	r := newRig(t, pty.Config{Enabled: true, User: name})
	t.Run("command", func(t *testing.T) {
		p := r.shell(t, 80, 24, `echo "uid=$(id -u) gid=$(id -g) groups=$(id -G) home=$HOME user=$USER logname=$LOGNAME shell=$SHELL cwd=$(pwd)"`)
		out := strings.ReplaceAll(readAll(t, p), "\r", "")
		require.Contains(t, out, "uid="+u.Uid+" gid="+u.Gid+" ")
		require.Regexp(t, `groups=[0-9 ]*\b`+g.Gid+`\b`, out)
		require.Contains(t, out, "home="+u.HomeDir+" user="+name+" logname="+name+" shell=/bin/sh cwd="+u.HomeDir)
	})
	t.Run("login shell", func(t *testing.T) {
		p := r.open(t, pty.Request{Cols: 80, Rows: 24})
		_, err := p.Write([]byte("echo \"who=$(id -un) zero=$0\"; exit\n"))
		require.NoError(t, err)
		var seen bytes.Buffer
		expect(t, p, "who="+name+" zero=-sh", &seen)
		readAll(t, p)
	})
	t.Run("unknown user", func(t *testing.T) {
		r.srv.SetConfig(pty.Config{Enabled: true, User: "no-such-user-tether"})
		_, err := pty.Open(ctxT(t), r.cl, pty.Request{})
		require.Contains(t, remoteErr(t, err), "not in /etc/passwd")
	})
}
