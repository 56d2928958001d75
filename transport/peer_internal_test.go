package transport

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParsePeer: whatever extension headers a peer sends on the upgrade,
// parsePeer takes only values in range, as the peer wrote them, and
// ignores the rest.
func FuzzParsePeer(f *testing.F) {
	for _, s := range [][3]string{
		{"reset", "10000", "128"}, {"reset, other", "100", "65536"}, {"", "99", "0"}, {"RESET", "3600001", "65537"},
		{"x", "9223372036854775807", "-1"}, {"reset", "9223372036854776", "1e3"}, {"reset", " 250 ", " 7 "}, {"reset", "18446744074710", "1"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, ext, keepAlive, maxStreams string) {
		h := http.Header{}
		h.Set(HeaderExtensions, ext)
		h.Set(HeaderKeepAlive, keepAlive)
		h.Set(HeaderMaxStreams, maxStreams)
		p := parsePeer(h)
		if p.interval != 0 {
			ms, err := strconv.ParseInt(strings.TrimSpace(keepAlive), 10, 64)
			if err != nil || ms < minAnnouncedInterval.Milliseconds() || ms > maxAnnouncedInterval.Milliseconds() {
				t.Fatalf("keep-alive %q taken as %v", keepAlive, p.interval)
			}
			if p.interval != time.Duration(ms)*time.Millisecond {
				t.Fatalf("keep-alive %q taken as %v", keepAlive, p.interval)
			}
		}
		if p.maxStreams != 0 {
			n, err := strconv.Atoi(strings.TrimSpace(maxStreams))
			if err != nil || n != p.maxStreams || n < 1 || n > 1<<16 {
				t.Fatalf("max streams %q taken as %d", maxStreams, p.maxStreams)
			}
		}
	})
}
