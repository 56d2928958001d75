package version

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLine(t *testing.T) {
	oldV, oldC := Version, Commit
	t.Cleanup(func() { Version, Commit = oldV, oldC })
	Version, Commit = "v1.2.3", "abc123"
	platform := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name    string
		details []string
		want    string
	}{
		{"plain", nil, "tether-edge v1.2.3 (commit abc123, " + runtime.Version() + ", " + platform + ")"},
		{"details first", []string{"protocol qbee-v1"}, "tether-edge v1.2.3 (protocol qbee-v1, commit abc123, " + runtime.Version() + ", " + platform + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Line("tether-edge", tc.details...))
		})
	}
}

func TestCommitFallback(t *testing.T) {
	oldC := Commit
	t.Cleanup(func() { Commit = oldC })
	Commit = ""
	// A test binary carries no VCS stamp; the line must still name a commit.
	require.NotEmpty(t, commit())
	require.Contains(t, Line("x"), "(commit "+commit()+", ")
}
