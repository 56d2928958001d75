package cli

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoginDir(t *testing.T) {
	cfg := filepath.Join("/home/a", ".config", "tether", "config.yaml")
	require.Equal(t, filepath.Join("/home/a", ".config", "tether", "logins", "prod"), loginDirFor(cfg, "prod", "https://x:1"))
	require.Equal(t, filepath.Join("/home/a", ".config", "tether", "logins", "edge-edge.example.com_8443"), loginDirFor(cfg, "", "https://edge.example.com:8443/"))
	require.Equal(t, filepath.Join("/home/a", ".config", "tether", "logins", "edge-__1_8443"), loginDirFor(cfg, "", "https://[::1]:8443"))
	require.Empty(t, loginDirFor("", "prod", "https://x:1"))
	require.Empty(t, loginDirFor(cfg, "", ""))
}
