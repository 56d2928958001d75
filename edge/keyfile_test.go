package edge_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/edge"
)

func sessionID(i int) string { return fmt.Sprintf("%032x", i+1) }

func TestWebSignOutsSurviveReopening(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "web-signouts")
	r, err := edge.OpenWebRevocations(path)
	require.NoError(t, err)
	live, ended := sessionID(1), sessionID(2)
	require.NoError(t, r.Revoke(ctx, live, time.Now().Add(time.Hour)))
	require.NoError(t, r.Revoke(ctx, ended, time.Now().Add(-time.Second)))
	for _, id := range []string{live, ended, sessionID(3)} {
		got, err := r.Revoked(ctx, id)
		require.NoError(t, err)
		require.Equal(t, id == live, got, id)
	}
	require.NoError(t, r.Close())
	require.ErrorContains(t, r.Revoke(ctx, sessionID(4), time.Now().Add(time.Hour)), "shutting down")

	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	r, err = edge.OpenWebRevocations(path)
	require.NoError(t, err)
	defer r.Close()
	got, err := r.Revoked(ctx, live)
	require.NoError(t, err)
	require.True(t, got, "a sign-out did not survive reopening the file")
	// Opening drops the ended sign-out from the file.
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(b), "\n"), string(b))
	require.Contains(t, string(b), live)
}

func TestWebSignOutsFileIsCompacted(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "web-signouts")
	r, err := edge.OpenWebRevocations(path)
	require.NoError(t, err)
	defer r.Close()
	keep := sessionID(0)
	require.NoError(t, r.Revoke(ctx, keep, time.Now().Add(time.Hour)))
	// Sign-outs that have ended: the file must not keep them all.
	for i := 1; i <= 2100; i++ {
		require.NoError(t, r.Revoke(ctx, sessionID(i), time.Now().Add(-time.Second)))
	}
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Less(t, strings.Count(string(b), "\n"), 1100, "the file keeps ended sign-outs")
	got, err := r.Revoked(ctx, keep)
	require.NoError(t, err)
	require.True(t, got)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	// What was appended after a rewrite is read back too.
	later := sessionID(5000)
	require.NoError(t, r.Revoke(ctx, later, time.Now().Add(time.Hour)))
	require.NoError(t, r.Close())
	r2, err := edge.OpenWebRevocations(path)
	require.NoError(t, err)
	defer r2.Close()
	for _, id := range []string{keep, later} {
		got, err := r2.Revoked(ctx, id)
		require.NoError(t, err)
		require.True(t, got, id)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, entries, 1, "temporary files left behind")
}

func TestWebSignOutsFileErrors(t *testing.T) {
	dir := t.TempDir()
	future := time.Now().Add(time.Hour).Unix()
	write := func(text string) string {
		p := filepath.Join(dir, "web-signouts")
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
		return p
	}
	// A last line cut short, as a stop mid-write leaves it, is dropped; a
	// file that group or others could read is rewritten private.
	p := write(fmt.Sprintf("%s %d\n%s %d", sessionID(1), future, sessionID(2), future))
	r, err := edge.OpenWebRevocations(p)
	require.NoError(t, err)
	got, _ := r.Revoked(context.Background(), sessionID(1))
	require.True(t, got)
	got, _ = r.Revoked(context.Background(), sessionID(2))
	require.False(t, got)
	require.NoError(t, r.Close())
	st, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	for _, tt := range []struct{ text, want string }{
		{fmt.Sprintf("%s %d\nnonsense\n", sessionID(1), future), "line 2: not \"<key> <Unix time>\""},
		{fmt.Sprintf("XYZ %d\n", future), "line 1: not a key"},
		{sessionID(1) + " soon\n", "line 1: not a Unix time"},
		{strings.Repeat("a", 300) + "\n", "a line of more than"},
	} {
		_, err := edge.OpenWebRevocations(write(tt.text))
		require.ErrorContains(t, err, tt.want)
		require.ErrorContains(t, err, "fix or remove that line")
	}
	_, err = edge.OpenWebRevocations(filepath.Join(dir, "missing", "web-signouts"))
	require.ErrorContains(t, err, "cannot write the sign-outs file")

	r, err = edge.OpenWebRevocations(filepath.Join(dir, "other"))
	require.NoError(t, err)
	defer r.Close()
	require.ErrorContains(t, r.Revoke(context.Background(), "../../etc", time.Now().Add(time.Hour)), "not a key this edge gives")
}

func TestExchangedTokensSurviveReopening(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "exchanged-id-tokens")
	ex, err := edge.OpenExchangedTokens(path)
	require.NoError(t, err)
	key := strings.Repeat("ab", 32) // a SHA-256, in hex
	until := time.Now().Add(time.Hour)
	fresh, err := ex.Claim(ctx, key, until)
	require.NoError(t, err)
	require.True(t, fresh)
	fresh, err = ex.Claim(ctx, key, until)
	require.NoError(t, err)
	require.False(t, fresh, "a token claimed twice")
	require.NoError(t, ex.Close())
	_, err = ex.Claim(ctx, strings.Repeat("cd", 32), until)
	require.ErrorContains(t, err, "shutting down")

	ex, err = edge.OpenExchangedTokens(path)
	require.NoError(t, err)
	defer ex.Close()
	fresh, err = ex.Claim(ctx, key, until)
	require.NoError(t, err)
	require.False(t, fresh, "after reopening the file, a token exchanged before is claimed again")
	fresh, err = ex.Claim(ctx, strings.Repeat("cd", 32), until)
	require.NoError(t, err)
	require.True(t, fresh)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}
