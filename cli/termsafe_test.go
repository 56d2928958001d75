package cli

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTermSafe(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"not allowed: tcp 10.0.0.5:25", "not allowed: tcp 10.0.0.5:25"},
		{"two\nlines\tand a tab", "two\nlines\tand a tab"},
		{"clip \x1b]52;c;ZWNobyBoaQ==\x07 board", `clip \x1b]52;c;ZWNobyBoaQ==\x07 board`},
		{"back\rspace\x7f", `back\x0dspace\x7f`},
		{"c1 \u009b31m", `c1 \x9b31m`},
		{"right\u202eto left", `right\u202eto left`},
		{"bad \xff utf-8", `bad \xff utf-8`},
		{"a real \ufffd stays", "a real \ufffd stays"},
		{"ünïcödé, 日本", "ünïcödé, 日本"},
	} {
		require.Equal(t, c.want, termSafe(c.in), "%q", c.in)
	}
	long := termSafe(strings.Repeat("x", 3*maxMessage))
	require.Equal(t, strings.Repeat("x", maxMessage)+"...", long)
}
