//go:build linux

package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/internal/testutil"
)

// playInTmux runs the built `tether play` with args in a tmux pane of
// 100x30 through a script that records the terminal mode before and after
// (files before and after in dir) and the exit code (code), and waits
// until the pane shows want.
func playInTmux(t *testing.T, want string, args ...string) (m *tmux, dir string) {
	t.Helper()
	testutil.NeedTool(t, "tmux", "tmux")
	dir = t.TempDir()
	m = &tmux{t: t, sock: filepath.Join(dir, "tmux.sock")}
	script := filepath.Join(dir, "run.sh")
	cmdline := strings.Join(quoteAll(append([]string{binPath("tether"), "play"}, args...)), " ")
	require.NoError(t, os.WriteFile(script, []byte(fmt.Sprintf(`#!/bin/sh
stty -g > %[1]s/before
%[2]s
echo $? > %[1]s/code.tmp
stty -g > %[1]s/after
mv %[1]s/code.tmp %[1]s/code
sleep 60
`, dir, cmdline)), 0o700))
	out, err := m.run("new-session", "-d", "-s", "s", "-x", "100", "-y", "30", script)
	require.NoError(t, err, out)
	t.Cleanup(func() { _, _ = m.run("kill-server") })
	m.wait("the replay did not start", func(p string) bool { return strings.Contains(p, want) })
	return m, dir
}

// paneTitle is the title the pane's program set (OSC 2).
func (m *tmux) paneTitle() string {
	out, _ := m.run("display-message", "-p", "-t", "s", "#{pane_title}")
	return strings.TrimSpace(out)
}

// TestPlayOnTerminal replays on a real terminal: the title the recording
// sets does not reach it (but with --raw), a recorded terminal larger than
// the pane gets a notice, and Ctrl-C and q stop the replay with the
// terminal restored.
func TestPlayOnTerminal(t *testing.T) {
	rec := castFile(t, map[string]any{"width": 120, "height": 40},
		castEvent{0.01, "o", "\x1b]2;evil-title\x07frame-one\r\n"},
		castEvent{3600, "o", "frame-two\r\n"}, // an hour later: not reached
	)
	path := writeCast(t, "long.cast", rec)

	t.Run("Ctrl-C", func(t *testing.T) {
		m, dir := playInTmux(t, "frame-one", path)
		m.wait("no notice of the larger terminal", func(p string) bool {
			return strings.Contains(p, "tether: the recorded terminal is 120x40, larger than this one (100x30)")
		})
		require.NotEqual(t, "evil-title", m.paneTitle(), "the recording set the window title")
		_, err := m.run("send-keys", "-t", "s", "C-c")
		require.NoError(t, err)
		require.Equal(t, "130", finished(t, m, dir))
		require.NotContains(t, m.pane(), "frame-two")
	})

	t.Run("q", func(t *testing.T) {
		m, dir := playInTmux(t, "frame-one", path)
		_, err := m.run("send-keys", "-t", "s", "q")
		require.NoError(t, err)
		require.Equal(t, "0", finished(t, m, dir))
	})

	t.Run("raw", func(t *testing.T) {
		m, dir := playInTmux(t, "frame-one", "--raw", path)
		require.Eventually(t, func() bool { return m.paneTitle() == "evil-title" }, 30*time.Second, 50*time.Millisecond,
			"with --raw the title passes; the pane's title is %q", m.paneTitle())
		_, err := m.run("send-keys", "-t", "s", "q")
		require.NoError(t, err)
		require.Equal(t, "0", finished(t, m, dir))
	})
}

// alternateOn reports whether the pane shows its alternate screen.
func (m *tmux) alternateOn() string {
	out, _ := m.run("display-message", "-p", "-t", "s", "#{alternate_on}")
	return strings.TrimSpace(out)
}

// TestPlayStoppedInAlternateScreen: a replay of a full-screen program
// stopped while it shows (q or Ctrl-C, with or without --raw) leaves the
// terminal on its normal screen, as the program would have on quitting.
func TestPlayStoppedInAlternateScreen(t *testing.T) {
	rec := castFile(t, nil,
		castEvent{0.01, "o", "before-the-program\r\n"},
		castEvent{0.02, "o", "\x1b[?1049h\x1b[H\x1b[2Jtop - full-screen-frame"},
		castEvent{3600, "o", "\x1b[?1049l"}, // an hour later: not reached
	)
	path := writeCast(t, "top.cast", rec)
	for _, tc := range []struct {
		name, key, code string
		args            []string
	}{
		{"q", "q", "0", nil},
		{"Ctrl-C", "C-c", "130", nil},
		{"raw q", "q", "0", []string{"--raw"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, dir := playInTmux(t, "full-screen-frame", append(tc.args, path)...)
			require.Equal(t, "1", m.alternateOn(), "the replay did not enter the alternate screen")
			_, err := m.run("send-keys", "-t", "s", tc.key)
			require.NoError(t, err)
			require.Equal(t, tc.code, finished(t, m, dir))
			require.Equal(t, "0", m.alternateOn(), "the terminal was left in the alternate screen:\n%s", m.pane())
			require.Contains(t, m.pane(), "before-the-program")
			require.NotContains(t, m.pane(), "full-screen-frame")
		})
	}

	t.Run("ended normally", func(t *testing.T) {
		path := writeCast(t, "vi.cast", castFile(t, nil,
			castEvent{0.01, "o", "before-vi\r\n"},
			castEvent{0.02, "o", "\x1b[?1049hvi-frame"},
			castEvent{0.03, "o", "\x1b[?1049lafter-vi\r\n"},
		))
		m, dir := playInTmux(t, "after-vi", path)
		require.Equal(t, "0", finished(t, m, dir))
		require.Equal(t, "0", m.alternateOn())
		require.Contains(t, m.pane(), "before-vi")
	})
}
