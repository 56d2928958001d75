package device

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport"
)

func TestParseOSRelease(t *testing.T) {
	tests := []struct {
		name, text, want string
		ok               bool
	}{
		{"debian", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n", "Debian GNU/Linux 12 (bookworm)", true},
		{"unquoted, NAME only", "NAME=Buildroot\nVERSION=2024.02\n", "Buildroot", true},
		{"single quotes", "PRETTY_NAME='Yocto Poky 5.0'\n", "Yocto Poky 5.0", true},
		{"escapes", `PRETTY_NAME="Say \"hi\""` + "\n", `Say "hi"`, true},
		{"comments and blanks", "# comment\n\n  PRETTY_NAME=\"Alpine Linux v3.20\"  \n", "Alpine Linux v3.20", true},
		{"nothing useful", "ID=foo\nbroken line\n", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseOSRelease(strings.NewReader(tt.text))
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestOSPrettyNameFromFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "os-release")
	require.NoError(t, os.WriteFile(p, []byte("PRETTY_NAME=\"Test OS 1\"\n"), 0o644))
	got, ok := osPrettyName(p)
	require.True(t, ok)
	require.Equal(t, "Test OS 1", got)
	_, ok = osPrettyName(filepath.Join(t.TempDir(), "missing"))
	require.False(t, ok)
}

func TestPlatform(t *testing.T) {
	want := runtime.GOOS + "/" + runtime.GOARCH
	if runtime.GOARCH == "arm" {
		want += "/v7"
	}
	require.Equal(t, want, platform("7"))
	if runtime.GOARCH == "arm" {
		require.Equal(t, want, platform("7,softfloat"))
	} else {
		require.Equal(t, want, platform(""), "no ARM version off 32-bit ARM")
	}
}

func TestLocalAgentInfo(t *testing.T) {
	info := LocalAgentInfo("1.4.0\n")
	require.Equal(t, "1.4.0", info.Version, "cleaned like the edge cleans it")
	require.True(t, strings.HasPrefix(info.Platform, runtime.GOOS+"/"+runtime.GOARCH))
	require.Equal(t, info, info.Clean())
	require.Equal(t, info, transport.ParseAgentInfo(info.Header()))
}

// FuzzParseOSRelease: any file yields a name only when it has one, and
// never more than the file held.
func FuzzParseOSRelease(f *testing.F) {
	f.Add("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
	f.Add("NAME='x'\nPRETTY_NAME=\"\\\"\"")
	f.Add("=\n==\nNAME=\"unterminated\n")
	f.Add("NAME=\"\\xff\\u00e9\"")
	f.Fuzz(func(t *testing.T, text string) {
		name, ok := parseOSRelease(strings.NewReader(text))
		require.Equal(t, ok, name != "")
		require.LessOrEqual(t, len(name), len(text))
		require.True(t, utf8.ValidString(name), "%q", name)
	})
}
