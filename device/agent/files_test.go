package agent

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport/files"
	"github.com/tetherhq/tether/transport/wire"
)

func TestFilesConfig(t *testing.T) {
	base := "edge: https://e/device\ncert: a\nkey: b\nca: c\n" // lines 1-4
	c, err := ParseConfig([]byte(base), "/d")
	require.NoError(t, err)
	fc := c.FilesConfig()
	require.Empty(t, fc.Read, "no file access by default")
	require.Empty(t, fc.Write)
	require.Equal(t, fs.FileMode(0o022), fc.Umask)
	require.False(t, fc.Chown)

	c, err = ParseConfig([]byte(base+`files:
  read: ["/var/log", "/home/*/out"]
  write: ["/data/in"]
  max_size_mib: 10
  max_entries: 50
  umask: "077"
  follow_symlinks: true
  owner: root
  group: root
`), "/d")
	require.NoError(t, err)
	fc = c.FilesConfig()
	require.Equal(t, []string{"/var/log", "/home/*/out"}, fc.Read)
	require.Equal(t, []string{"/data/in"}, fc.Write)
	require.Equal(t, int64(10<<20), fc.MaxSize)
	require.Equal(t, 50, fc.MaxEntries)
	require.Equal(t, fs.FileMode(0o077), fc.Umask)
	require.True(t, fc.FollowSymlinks)
	require.True(t, fc.Chown)
	require.Equal(t, [2]int{0, 0}, [2]int{fc.UID, fc.GID})
}

func TestFilesConfigErrors(t *testing.T) {
	base := "edge: https://e/device\ncert: a\nkey: b\nca: c\n" // lines 1-4
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"relative root", "files:\n  read:\n    - var/log\n", `config line 7: files.read: "var/log" is not an absolute path`},
		{"dot dot root", "files:\n  write: [\"/data/../etc\"]\n", `config line 6: files.write: "/data/../etc" is not in canonical form`},
		{"bad glob", "files: {read: [\"/data/[\"]}\n", `config line 5: files.read: "/data/["`},
		{"bad umask", "files: {umask: \"999\"}\n", `config line 5: files.umask: "999" is not an octal umask`},
		{"unknown owner", "files: {owner: no-such-user-tether}\n", `config line 5: files.owner: "no-such-user-tether": no such user`},
		{"negative size", "files: {max_size_mib: -1}\n", `config line 5: files.max_size_mib: -1 must not be negative`},
		{"size past an int64 of bytes", "files: {max_size_mib: 9007199254740992}\n", `config line 5: files.max_size_mib: 9007199254740992 is more than 1073741824 (1 PiB)`},
		{"unknown key", "files: {root: /}\n", `config line 5: unknown key "root" in section files; valid keys: follow_symlinks, group, max_entries, max_size_mib, owner, read, umask, write`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(base+tc.yaml), "/d")
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrInvalidConfig))
			require.True(t, strings.HasPrefix(err.Error(), tc.want), "got %q; want prefix %q", err.Error(), tc.want)
		})
	}
}

// TestAgentFilesFollowReloads: no file access until agent.yaml grants it,
// and a reload grants or takes it away for new transfers.
func TestAgentFilesFollowReloads(t *testing.T) {
	data, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(data, "log"), []byte("hello"), 0o644))
	env, c := startAgent(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	download := func() (string, error) {
		var buf bytes.Buffer
		_, err := c.Download(ctx, filepath.Join(data, "log"), &buf, nil)
		return buf.String(), err
	}
	_, err = download()
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re, "refused by default")
	require.Contains(t, re.Reason, "files.read")

	env.writeConfig(t, "files: {read: [\""+data+"\"]}\n")
	require.NoError(t, env.agent.Reload(ctx))
	got, err := download()
	require.NoError(t, err)
	require.Equal(t, "hello", got)
	_, err = c.Upload(ctx, filepath.Join(data, "new"), bytes.NewReader([]byte("x")), &files.UploadOptions{Size: 1, Name: "new"})
	require.ErrorAs(t, err, &re, "reading does not grant writing")
	require.Contains(t, re.Reason, "files.write")

	env.writeConfig(t, "")
	require.NoError(t, env.agent.Reload(ctx))
	_, err = download()
	require.ErrorAs(t, err, &re, "the reload took it away")
}

func TestFilesOwnerDefaultsToTheShellUser(t *testing.T) {
	base := "edge: https://e/device\ncert: a\nkey: b\nca: c\n"
	c, err := ParseConfig([]byte(base+"pty: {enabled: true, user: root}\nfiles: {write: [\"/data\"]}\n"), "/d")
	require.NoError(t, err)
	fc := c.FilesConfig()
	require.True(t, fc.Chown, "uploads belong to pty.user")
	require.Equal(t, [2]int{0, 0}, [2]int{fc.UID, fc.GID})
	c, err = ParseConfig([]byte(base+"pty: {enabled: false, user: root}\nfiles: {write: [\"/data\"]}\n"), "/d")
	require.NoError(t, err)
	require.False(t, c.FilesConfig().Chown, "no shells, no shell user")
	require.Nil(t, c.FilesConfig().RunAs)
}

// TestFilesRunAsTheShellUser: transfers act as pty.user, as shells do,
// and may give files only to that user and the user's groups.
func TestFilesRunAsTheShellUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the test's user, nobody, is another user only when the agent runs as root")
	}
	base := "edge: https://e/device\ncert: a\nkey: b\nca: c\n"
	c, err := ParseConfig([]byte(base+"pty: {enabled: true, user: nobody}\nfiles: {write: [\"/data\"]}\n"), "/d")
	require.NoError(t, err)
	fc := c.FilesConfig()
	require.NotNil(t, fc.RunAs)
	require.Equal(t, uint32(65534), fc.RunAs.UID)
	require.Equal(t, 65534, fc.UID)

	_, err = ParseConfig([]byte(base+"pty: {enabled: true, user: nobody}\nfiles: {write: [\"/data\"], owner: root}\n"), "/d")
	require.ErrorContains(t, err, "who cannot give files to another user")
	_, err = ParseConfig([]byte(base+"pty: {enabled: true, user: nobody}\nfiles: {write: [\"/data\"], group: root}\n"), "/d")
	require.ErrorContains(t, err, "who is not in that group")
}
