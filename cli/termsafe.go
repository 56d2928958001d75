package cli

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxMessage bounds a message printed for the user, in bytes.
const maxMessage = 4096

// termSafe makes a message safe to print on the user's terminal. A
// message may carry text from the edge or a device, such as the reason of
// a refusal or of a reset, and a device that was taken over could put an
// escape sequence in it for the terminal to act on: one that rewrites the
// clipboard, the window title or what is on the screen. Control and
// format characters other than newline and tab are shown as Go escapes
// (\x1b, \u202e), as are bytes that are not UTF-8, and a message longer
// than maxMessage is cut, with "..." after it.
func termSafe(s string) string {
	if len(s) <= maxMessage && utf8.ValidString(s) && !strings.ContainsFunc(s, escaped) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < maxMessage; {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case escaped(r) && r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case escaped(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
		if i < len(s) && b.Len() >= maxMessage {
			b.WriteString("...")
		}
	}
	return b.String()
}

// escaped reports whether termSafe spells r out: a control or format
// character other than newline and tab.
func escaped(r rune) bool {
	return r != '\n' && r != '\t' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r))
}
