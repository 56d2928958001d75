package cli

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

func TestEscapeReader(t *testing.T) {
	cases := []struct {
		name, in, want string
		quit           bool
	}{
		{"plain text passes", "ls -l\nexit\n", "ls -l\nexit\n", false},
		{"quit at the start", "~.rest", "", true},
		{"quit after a newline", "echo a\n~.echo b\n", "echo a\n", true},
		{"quit after a carriage return (raw mode)", "echo a\r~.", "echo a\r", true},
		{"not mid-line", "a~.b\n", "a~.b\n", false},
		{"double escape sends one", "~~.\n", "~.\n", false},
		{"other characters pass with the escape", "~x\n", "~x\n", false},
		{"help is not sent", "~?ls\n", "ls\n", false},
		{"a lone escape at the end is data", "a\n~", "a\n~", false},
		{"Ctrl-C and Ctrl-D are data", "\x03\x04\n", "\x03\x04\n", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var help bytes.Buffer
			// One byte per read: escapes split across reads still count.
			e := newEscapeReader(iotest.OneByteReader(strings.NewReader(tc.in)), '~', &help, false)
			got, err := io.ReadAll(e)
			if tc.quit {
				require.True(t, errors.Is(err, errEscaped), "err = %v; want errEscaped", err)
				select {
				case <-e.Quit():
				default:
					t.Fatal("Quit was not closed")
				}
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.want, string(got))
			if strings.Contains(tc.in, "~?") {
				require.Contains(t, help.String(), "~.  close the session")
			}
		})
	}
}

func TestEscapeReaderOtherCharacter(t *testing.T) {
	e := newEscapeReader(strings.NewReader("~.\n^.\n"), '^', io.Discard, true)
	got, err := io.ReadAll(e)
	require.ErrorIs(t, err, errEscaped)
	require.Equal(t, "~.\n", string(got))
}

func TestParseEscape(t *testing.T) {
	for in, want := range map[string]int{"~": '~', "none": escNoEsc, "^]": 0x1d, "^a": 1, "#": '#'} {
		got, err := parseEscape(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "ab", "é", "^1"} {
		_, err := parseEscape(bad)
		require.Error(t, err, bad)
	}
}
