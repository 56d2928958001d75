//go:build linux

package term_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/pty/term"
)

// termCheckEnv makes the test binary run termCheck instead of the tests.
const termCheckEnv = "TETHER_PTY_TERMCHECK"

// termCheck runs inside a tmux pane: it prints the terminal size, puts the
// terminal in raw mode, reports every key byte and every resize, and on
// "q" restores the terminal and exits.
func termCheck() int {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		fmt.Println("not a terminal")
		return 1
	}
	cols, rows, err := term.Size(fd)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	restore, err := term.MakeRaw(fd)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer restore()
	fmt.Printf("size=%dx%d\r\n", cols, rows)
	stop := term.WatchResize(context.Background(), fd, func(cols, rows int) {
		fmt.Printf("resize=%dx%d\r\n", cols, rows)
	})
	defer stop()
	buf := make([]byte, 1)
	for {
		if _, err := os.Stdin.Read(buf); err != nil {
			return 1
		}
		fmt.Printf("key=%02x\r\n", buf[0])
		if buf[0] == 'q' {
			stop()
			if err := restore(); err != nil {
				fmt.Printf("restore failed: %v\r\n", err)
				return 1
			}
			fmt.Println("restored")
			return 0
		}
	}
}

// TestTerminalHelpersInTmux drives the terminal helpers in a real terminal
// emulator: raw mode delivers keys one by one (Ctrl-C as a byte, not a
// signal), a window resize reaches the SIGWINCH watcher, and the terminal
// is cooked again after restore.
func TestTerminalHelpersInTmux(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed")
	}
	self, err := os.Executable()
	require.NoError(t, err)
	// A socket of this run's own: a server that an earlier run (-count)
	// killed may still be exiting on a shared one.
	sock := filepath.Join(t.TempDir(), "tmux")
	tmux := func(args ...string) string {
		out, err := exec.Command("tmux", append([]string{"-S", sock, "-f", "/dev/null"}, args...)...).CombinedOutput()
		require.NoError(t, err, "tmux %v: %s", args, out)
		return string(out)
	}
	script := fmt.Sprintf("%s=1 %q -test.run=^$; stty -a | tr ' ' '\\n' | grep -x -- '-\\{0,1\\}icanon'; sleep 1000", termCheckEnv, self)
	tmux("new-session", "-d", "-x", "100", "-y", "30", "sh", "-c", script)
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", sock, "kill-server").Run() })
	waitFor := func(want string) {
		t.Helper()
		var screen string
		require.Eventually(t, func() bool {
			screen = tmux("capture-pane", "-p")
			return regexp.MustCompile(want).MatchString(screen)
		}, patience, 20*time.Millisecond, "waiting for %q; screen:\n%s", want, screen)
	}

	waitFor("size=100x30")
	tmux("send-keys", "a")
	waitFor("key=61")
	tmux("send-keys", "C-c")
	waitFor("key=03")
	tmux("resize-window", "-x", "120", "-y", "40")
	waitFor("resize=120x40")
	tmux("send-keys", "q")
	waitFor("restored")
	// stty prints "icanon" for a cooked terminal and "-icanon" for a raw one.
	waitFor(`(?m)^-?icanon$`)
	require.NotRegexp(t, `(?m)^-icanon$`, tmux("capture-pane", "-p"), "the terminal should be back in canonical mode")
}
