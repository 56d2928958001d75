package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
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

// BrowserTools returns Debian's Chromium ($TETHER_CHROMIUM, else
// /usr/bin/chromium) and node, for the Playwright tests in dir (which
// holds package.json and, once `npm ci` ran there, node_modules), or
// ends tb with Missing saying what is missing.
func BrowserTools(tb testing.TB, dir string) (chromium, node string) {
	tb.Helper()
	chromium = os.Getenv("TETHER_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		Missing(tb, "chromium not found at %s (apt-get install chromium; .ci/run does)", chromium)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		Missing(tb, "node not found (install Node.js 20; .ci/run's machine has it)")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		Missing(tb, "playwright-core is not installed: run npm ci in %s (.ci/run does)", filepath.Clean(dir))
	}
	return chromium, node
}
