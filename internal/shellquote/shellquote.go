// Package shellquote quotes words for a POSIX shell, for the commands
// that Tether prints for people to paste or hands to ssh.
package shellquote

import "strings"

// Quote quotes s for a POSIX shell when it holds anything but letters,
// digits and -_./:=@+, (an empty s included); otherwise s is returned as
// it is.
func Quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
