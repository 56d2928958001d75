//go:build linux

package cli

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRemoteTextReachesTheTerminalEscaped: a refusal that quotes what the
// user asked for, here a path with an escape sequence that would set the
// terminal's clipboard, is printed with the sequence spelled out.
func TestRemoteTextReachesTheTerminalEscaped(t *testing.T) {
	f := newFleet(t)
	remote := evalDir(t)
	f.addAgent("d1", "files:\n  read: [\""+remote+"\"]\n")
	path := "/etc/\x1b]52;c;ZWNobyBoaQ==\x07x"
	_, errOut, code := f.tether("", "cp", "d1:"+path, filepath.Join(t.TempDir(), "x"))
	require.Equal(t, ExitRemote, code, errOut)
	require.Contains(t, errOut, `/etc/\x1b]52;c;ZWNobyBoaQ==\x07x`)
	require.NotContains(t, errOut, "\x1b")
	require.NotContains(t, errOut, "\x07")
}
