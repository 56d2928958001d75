package target

// MatchGlob reports whether s matches pattern, where '*' matches any run
// of bytes, the empty one included, and every other byte matches only
// itself. It knows no separators: Pattern matches a host glob label by
// label with it, and the edge matches device-ID globs whole with it. It
// takes time linear in len(pattern) × len(s) at worst and allocates
// nothing.
func MatchGlob(pattern, s string) bool {
	px, sx := 0, 0
	starP, starS := -1, 0 // the last '*' seen, and where in s it began to match
	for sx < len(s) {
		switch {
		case px < len(pattern) && pattern[px] == '*':
			starP, starS = px, sx
			px++
		case px < len(pattern) && pattern[px] == s[sx]:
			px++
			sx++
		case starP >= 0:
			// Let the last '*' take one more byte and try again after it.
			starS++
			px, sx = starP+1, starS
		default:
			return false
		}
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}
