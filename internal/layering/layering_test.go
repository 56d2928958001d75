package layering_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const mod = "github.com/tetherhq/tether"

// runCheck runs scripts/deps-check.sh with GOFLAGS=-overlay for files
// (path in the module -> content; none: the real tree) and returns its
// combined output and whether it passed.
func runCheck(t *testing.T, files map[string]string) (string, bool) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "deps-check.sh"))
	cmd.Dir = root
	cmd.Env = os.Environ()
	if len(files) > 0 {
		dir := t.TempDir()
		overlay := struct{ Replace map[string]string }{Replace: map[string]string{}}
		for path, content := range files {
			src := filepath.Join(dir, strings.ReplaceAll(path, "/", "_"))
			require.NoError(t, os.WriteFile(src, []byte(content), 0o644))
			overlay.Replace[filepath.Join(root, path)] = src
		}
		js, err := json.Marshal(overlay)
		require.NoError(t, err)
		ov := filepath.Join(dir, "overlay.json")
		require.NoError(t, os.WriteFile(ov, js, 0o644))
		cmd.Env = append(cmd.Env, "GOFLAGS=-overlay="+ov)
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, ctx.Err(), "the script did not finish: %s", out)
	if err != nil {
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "the script did not run: %s", out)
		return string(out), false
	}
	return string(out), true
}

// importing returns a Go file of package pkg that imports path.
func importing(pkg, path string) string {
	return "package " + pkg + "\n\nimport _ \"" + path + "\"\n"
}

func TestRealTreePasses(t *testing.T) {
	t.Parallel()
	out, ok := runCheck(t, nil)
	require.True(t, ok, "deps-check fails on the tree as it is:\n%s", out)
	require.Contains(t, out, "imports flow one way")
}

// TestUpwardImportsFail: each overlay adds one file with an import the
// layering forbids; the check must fail and name the importer and what it
// imported, or say that go list itself failed (an import cycle, a missing
// package), never pass.
func TestUpwardImportsFail(t *testing.T) {
	tests := []struct {
		name string
		file string // the file the overlay adds
		pkg  string // its package clause
		imp  string // its import
		want []string
	}{
		{"standard-library package imports a runtime", "transport/target/zz_layering.go", "target", mod + "/transport/client",
			[]string{"transport/target must not import", mod + "/transport/client"}},
		{"session layer imports certs", "transport/zz_layering.go", "transport", mod + "/certs",
			[]string{"transport must not import", mod + "/certs"}},
		{"device runtime imports a stream type", "device/zz_layering.go", "device", mod + "/transport/tcp",
			[]string{"device must not import", mod + "/transport/tcp"}},
		{"edge imports the device runtime", "edge/zz_layering.go", "edge", mod + "/device",
			[]string{"edge must not import", mod + "/device"}},
		{"agent binary links the CLI", "cmd/tether-agent/zz_layering.go", "main", mod + "/cli",
			[]string{"cmd/tether-agent must not import", mod + "/cli"}},
		{"product code imports a test rig", "udp/zz_layering.go", "udp", mod + "/internal/testutil",
			[]string{"udp must not import " + mod + "/internal/testutil", "test rigs are for _test.go files"}},
		{"an import cycle: udp imports cli", "udp/zz_layering.go", "udp", mod + "/cli",
			[]string{"go list", "failed", "import cycle"}},
		{"a package that does not exist", "transport/wire/zz_layering.go", "wire", mod + "/no/such/package",
			[]string{"go list", "failed", "no/such/package"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, ok := runCheck(t, map[string]string{tt.file: importing(tt.pkg, tt.imp)})
			require.False(t, ok, "deps-check passed with %s importing %s:\n%s", tt.file, tt.imp, out)
			for _, w := range tt.want {
				require.Contains(t, out, w)
			}
			require.NotContains(t, out, "imports flow one way")
		})
	}
}
