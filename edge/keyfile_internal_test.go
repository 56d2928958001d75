package edge

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// FuzzParseKeyFile checks that any file either fails to parse or gives
// sign-outs of valid IDs that end after now, which written back parse
// to the same.
func FuzzParseKeyFile(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef 4102444800\n"))
	f.Add([]byte("0123456789abcdef0123456789abcdef 4102444800\n0123456789abcdef 1\ncut"))
	f.Add([]byte("x 1\n"))
	f.Add([]byte(" \n"))
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseKeyFile(b, now)
		if err != nil {
			return
		}
		var out strings.Builder
		for id, end := range got {
			if !validStateKey(id) || !end.After(now) {
				t.Fatalf("kept %q until %v", id, end)
			}
			fmt.Fprintf(&out, "%s %d\n", id, end.Unix())
		}
		again, err := parseKeyFile([]byte(out.String()), now)
		if err != nil || len(again) != len(got) {
			t.Fatalf("written back: %v, %d of %d", err, len(again), len(got))
		}
		for id, end := range got {
			if !again[id].Equal(end) {
				t.Fatalf("%s: %v, then %v", id, end, again[id])
			}
		}
	})
}
