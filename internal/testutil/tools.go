package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// NeedTool returns the path of the program name, which a test drives (tmux,
// sshd, dpkg-deb...). When it is not installed, the test skips on a
// developer's machine, saying which Debian package has it, and fails under
// CI (TETHER_CI set, as .ci/run does), where it must be installed: a test
// that CI skips proves nothing.
func NeedTool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	Missing(t, "%s is not installed: install Debian's %s package (.ci/run does)", name, debianPackage)
	return ""
}

// Missing ends a test that cannot run without something this machine
// lacks, with a message that says how to get it: a skip on a developer's
// machine, a failure under CI (TETHER_CI set).
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("TETHER_CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
