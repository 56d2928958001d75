package edge

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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

// TestKeyFileRecoversFromAFailedAppend: an append that failed may have
// left part of its line; the next add starts a new file, so that the
// keys recorded after it are kept and the next start reads the file.
func TestKeyFileRecoversFromAFailedAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web-signouts")
	k, err := openKeyFile(path, "sign-outs")
	require.NoError(t, err)
	defer k.close()
	until := time.Now().Add(time.Hour)
	first, lost, next := fmt.Sprintf("%032x", 1), fmt.Sprintf("%032x", 2), fmt.Sprintf("%032x", 3)
	_, err = k.add(first, until, false)
	require.NoError(t, err)

	// A full disk: part of the line is written, then the write fails.
	require.NoError(t, k.f.Close())
	torn, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = torn.WriteString(lost[:10])
	require.NoError(t, err)
	require.NoError(t, torn.Close())
	_, err = k.add(lost, until, false)
	require.ErrorContains(t, err, "cannot record it in the sign-outs file")
	require.False(t, k.has(lost), "a key that was not recorded counts as recorded")

	_, err = k.add(next, until, false)
	require.NoError(t, err, "the file stayed broken after one failed append")
	require.NoError(t, k.close())

	again, err := openKeyFile(path, "sign-outs")
	require.NoError(t, err, "the next start cannot read the file")
	defer again.close()
	require.True(t, again.has(first))
	require.True(t, again.has(next))
	require.False(t, again.has(lost))
}
