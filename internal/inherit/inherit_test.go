package inherit

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// inheritable opens a pipe without close-on-exec, as an inherited
// descriptor would be, and returns its read end.
func inheritable(t *testing.T) int {
	t.Helper()
	var p [2]int
	require.NoError(t, unix.Pipe2(p[:], 0))
	unix.Close(p[1])
	t.Cleanup(func() { unix.Close(p[0]) })
	return p[0]
}

// childFDs lists the descriptors an executed program holds, besides the
// one it lists them with.
func childFDs(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-c", "cd /proc/self/fd && for f in *; do echo $f; done").Output()
	require.NoError(t, err)
	return strings.Fields(string(out))
}

func TestCloseOnExec(t *testing.T) {
	fd := inheritable(t)
	name := strconv.Itoa(fd)
	require.Contains(t, childFDs(t), name, "before: a child inherits descriptor %d", fd)

	n, err := CloseOnExec(3)
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, 1, "got %d descriptors marked; want at least the pipe", n)
	require.NotContains(t, childFDs(t), name, "after: a child still inherits descriptor %d", fd)

	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	require.NoError(t, err, "the process itself keeps the descriptor open")
	require.NotZero(t, flags&unix.FD_CLOEXEC)

	n, err = CloseOnExec(3)
	require.NoError(t, err)
	require.Zero(t, n, "a second call finds nothing left to mark")
}

func TestCloseOnExecKeepsLowerDescriptors(t *testing.T) {
	fd := inheritable(t)
	_, err := CloseOnExec(fd + 1)
	require.NoError(t, err)
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	require.NoError(t, err)
	require.Zero(t, flags&unix.FD_CLOEXEC, "descriptor %d is below from and must stay inheritable", fd)
}
