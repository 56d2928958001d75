package edge

import (
	"testing"
	"time"

	"github.com/tetherhq/tether/internal/ratelimit"
)

// The audit limiter lets a burst through, holds back the rest, and hands
// the count of those held back to the next record it lets through.
func TestAuditLimiterCarriesTheSuppressedCount(t *testing.T) {
	l := &auditLimiter{b: ratelimit.Bucket{Rate: 1, Burst: 2}} // 1 record per second, burst 2
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at             time.Duration
		ok             bool
		wantSuppressed int64
	}{
		{0, true, 0},
		{0, true, 0},
		{0, false, 0},
		{500 * time.Millisecond, false, 0},
		{time.Second, true, 2},
		{time.Second, false, 0},
		{3 * time.Second, true, 1},
		{3 * time.Second, true, 0},
	}
	for i, st := range steps {
		ok, n := l.take(t0.Add(st.at))
		if ok != st.ok || n != st.wantSuppressed {
			t.Errorf("step %d at +%v: got (%v, %d); want (%v, %d)", i, st.at, ok, n, st.ok, st.wantSuppressed)
		}
	}
}

// The head scanner finds folded lines in each of several heads, whatever
// the reads look like.
func TestHeadScannerFindsFoldedLines(t *testing.T) {
	heads := "GET /a HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /b HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  more\r\n\r\n" +
		"GET /c HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /d HTTP/1.1\nHost: x\n\tmore\n\n"
	want := []bool{false, true, false, true, false}
	for _, chunk := range []int{1, 3, 7, len(heads)} {
		var s headScanner
		for i := 0; i < len(heads); i += chunk {
			s.scan([]byte(heads[i:min(i+chunk, len(heads))]))
		}
		for i, w := range want {
			if got := s.next(); got != w {
				t.Errorf("reads of %d bytes: head %d: got folded=%v; want %v", chunk, i, got, w)
			}
		}
	}
}

func FuzzHeadScanner(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"), 3)
	f.Add([]byte("\r\n\r\n\n\n \t"), 1)
	f.Fuzz(func(t *testing.T, b []byte, chunk int) {
		if chunk <= 0 || chunk > len(b) {
			chunk = len(b) + 1
		}
		var whole, split headScanner
		whole.scan(b)
		for i := 0; i < len(b); i += chunk {
			split.scan(b[i:min(i+chunk, len(b))])
		}
		if whole.heads != split.heads || len(split.foldedAt) > maxFoldedHeads {
			t.Fatalf("heads %d and %d; folded %v and %v", whole.heads, split.heads, whole.foldedAt, split.foldedAt)
		}
		for i := 0; i < whole.heads+1; i++ {
			if a, b := whole.next(), split.next(); a != b {
				t.Fatalf("head %d: folded %v in one read, %v in pieces", i, a, b)
			}
		}
	})
}
