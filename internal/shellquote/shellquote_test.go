package shellquote_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/shellquote"
)

// TestQuote: safe words stay as they are; every other word comes back
// from a real shell as it went in.
func TestQuote(t *testing.T) {
	for _, s := range []string{"/tmp/dev", "demo:/srv/files/", "a=b,c@d+e"} {
		require.Equal(t, s, shellquote.Quote(s))
	}
	words := []string{"", "/tmp/dev x[1]", "it's", "$HOME `id` \\ \"q\" *", "line\nbreak", "'"}
	var script strings.Builder
	script.WriteString("printf '%s\\0'")
	for _, w := range words {
		script.WriteString(" " + shellquote.Quote(w))
	}
	out, err := exec.Command("sh", "-c", script.String()).Output()
	require.NoError(t, err)
	require.Equal(t, words, strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00"))
}
