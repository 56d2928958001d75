package termfilter_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/termfilter"
)

// filter runs s through a Filter in one Write, then Close.
func filter(t testing.TB, s string) string {
	var b bytes.Buffer
	f := termfilter.New(&b)
	n, err := f.Write([]byte(s))
	require.NoError(t, err)
	require.Equal(t, len(s), n)
	require.NoError(t, f.Close())
	return b.String()
}

// filterBytewise runs s through a Filter one byte per Write.
func filterBytewise(t testing.TB, s string) string {
	var b bytes.Buffer
	f := termfilter.New(&b)
	for i := 0; i < len(s); i++ {
		_, err := f.Write([]byte{s[i]})
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())
	return b.String()
}

const (
	esc = "\x1b"
	bel = "\x07"
	st  = "\x1b\\"
	csi = "\x1b["
	osc = "\x1b]"
	dcs = "\x1bP"
)

// TestRemoved: each kind the filter removes, between two words that stay.
// Each runs in one write and one byte per write.
func TestRemoved(t *testing.T) {
	tests := []struct{ name, seq string }{
		{"title OSC 0 BEL", osc + "0;evil title" + bel},
		{"title OSC 0 ST", osc + "0;evil title" + st},
		{"icon OSC 1", osc + "1;icon" + bel},
		{"window title OSC 2", osc + "2;user@host: ~" + bel},
		{"clipboard set OSC 52", osc + "52;c;ZWNobyBwd25lZAo=" + bel},
		{"clipboard query OSC 52", osc + "52;c;?" + st},
		{"colour query OSC 10", osc + "10;?" + bel},
		{"colour query OSC 11", osc + "11;?" + st},
		{"palette query OSC 4", osc + "4;1;?" + bel},
		{"palette query after a set", osc + "4;1;rgb:ff/00/00;2;?" + bel},
		{"cursor colour query OSC 12", osc + "12;?" + bel},
		{"working directory OSC 7", osc + "7;file://host/etc" + bel},
		{"notification OSC 9", osc + "9;hello" + bel},
		{"notification OSC 777", osc + "777;notify;a;b" + bel},
		{"iTerm2 file OSC 1337", osc + "1337;File=name=eA==;inline=0:aGk=" + bel},
		{"font OSC 50", osc + "50;?" + bel},
		{"log file OSC 46", osc + "46;/tmp/x" + bel},
		{"OSC without a number", osc + ";x" + bel},
		{"OSC with letters", osc + "l title" + st},
		{"DA1", csi + "c"},
		{"DA1 with 0", csi + "0c"},
		{"DA2", csi + ">c"},
		{"DA2 with 0", csi + ">0c"},
		{"DA3", csi + "=c"},
		{"DECID", esc + "Z"},
		{"DSR status", csi + "5n"},
		{"CPR", csi + "6n"},
		{"DECXCPR", csi + "?6n"},
		{"DSR colour scheme", csi + "?996n"},
		{"XTVERSION", csi + ">q"},
		{"XTVERSION with 0", csi + ">0q"},
		{"DECLL keyboard LEDs", csi + "1q"},
		{"DECRQM private", csi + "?2004$p"},
		{"DECRQM ANSI", csi + "4$p"},
		{"window op iconify", csi + "2t"},
		{"window op resize", csi + "8;100;200t"},
		{"report title", csi + "21t"},
		{"report text area size", csi + "18t"},
		{"DECREQTPARM", csi + "x"},
		{"XTSMGRAPHICS", csi + "?1;1;0S"},
		{"XTQMODKEYS", csi + "?4m"},
		{"kitty keyboard query", csi + "?u"},
		{"DECRQTSR", csi + "1$u"},
		{"DECRQPSR", csi + "1$w"},
		{"DECRQCRA", csi + "1;1;1;1;10;10*y"},
		{"DECRQLP", csi + "1'|"},
		{"media copy", csi + "5i"},
		{"XTREPORTSGR", csi + "1;1;1;1#R"},
		{"DECRQSS", dcs + "$qm" + st},
		{"XTGETTCAP", dcs + "+q544e" + st},
		{"XTSETTCAP", dcs + "+p544e" + st},
		{"DECUDK", dcs + "0;1|17/72656D" + st},
		// tmux doubles the ESC of what it passes through; a terminal that
		// is not tmux ends the DCS at the first ESC, so the filter parses
		// the rest as it would (leaving a stray ST, which does nothing).
		{"tmux passthrough", dcs + "tmux;" + esc + esc + "]52;c;eA==" + bel},
		{"APC kitty graphics query", esc + "_Gi=1,a=q;AAAA" + st},
		{"PM", esc + "^private" + st},
		{"SOS", esc + "Xstring" + st},
		{"screen title", esc + "kwindow" + st},
		{"ENQ", "\x05"},
		{"leave UTF-8", esc + "%@"},
		{"select UTF-8", esc + "%G"},
		{"C1 CSI DA1", "\u009bc"},
		{"C1 CSI CPR", "\u009b6n"},
		{"C1 OSC title ended by C1 ST", "\u009d0;evil\u009c"},
		{"C1 OSC clipboard BEL", "\u009d52;c;eA==" + bel},
		{"C1 DCS DECRQSS", "\u0090$qm\u009c"},
		{"C1 APC", "\u009fGa=q\u009c"},
		{"C1 DECID", "\u009a"},
		{"ENQ inside CSI", csi + "1\x05m"},
		{"CSI too long", csi + strings.Repeat("1;", 200) + "m"},
		{"colour OSC too long", osc + "4;1;" + strings.Repeat("a", termfilter.MaxPending) + bel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := "before" + tt.seq + "after"
			want := "beforeafter"
			if tt.name == "ENQ inside CSI" || tt.name == "CSI too long" {
				// The sequence stays but for ENQ; a sequence too long
				// for the filter is removed.
				want = map[string]string{"ENQ inside CSI": "before" + csi + "1mafter", "CSI too long": "beforeafter"}[tt.name]
			}
			require.Equal(t, want, filter(t, in))
			require.Equal(t, want, filterBytewise(t, in))
		})
	}
}

// TestPassed: what does not act on the viewer's machine passes unchanged.
func TestPassed(t *testing.T) {
	tests := []struct{ name, seq string }{
		{"text", "plain text, UTF-8: é ß € 😀 and C1-looking bytes: ě (C4 9B) ǝ (C7 9D) Ý ß"},
		{"line ends and tabs", "a\r\nb\tc\bd\x07"},
		{"SGR colours", csi + "1;31m" + csi + "38;5;208m" + csi + "38:2::255:0:0m" + csi + "0m"},
		{"cursor movement", csi + "H" + csi + "10;20H" + csi + "2A" + csi + "3C" + csi + "K" + csi + "2J"},
		{"scroll up and down", csi + "3S" + csi + "2T"},
		{"modes", csi + "?25l" + csi + "?25h" + csi + "?1049h" + csi + "?2004h" + csi + "?1000h" + csi + "4h"},
		{"scroll region", csi + "1;24r"},
		{"cursor style DECSCUSR", csi + "2 q"},
		{"soft reset", csi + "!p"},
		{"save and restore", esc + "7" + esc + "8" + csi + "s" + csi + "u"},
		{"charset", esc + "(B" + esc + ")0" + esc + "#8"},
		{"keypad and reset", esc + "=" + esc + ">" + esc + "c" + esc + "M"},
		{"modifyOtherKeys set", csi + ">4;2m"},
		{"hyperlink", osc + "8;;https://example.com/a?b=c" + st + "link" + osc + "8;;" + st},
		{"hyperlink BEL", osc + "8;id=1;https://example.com" + bel + "x" + osc + "8;;" + bel},
		{"palette set", osc + "4;1;rgb:ff/00/00" + bel},
		{"foreground set", osc + "10;#ffffff" + st},
		{"colour resets", osc + "104" + bel + osc + "104;1" + st + osc + "110" + bel + osc + "112" + st},
		{"shell integration", osc + "133;A" + st + osc + "633;E;ls" + bel},
		{"sixel", dcs + "0;1;0q\"1;1;2;2#0;2;0;0;0#0~~" + st},
		{"C1 CSI SGR", "\u009b1m"},
		{"C1 controls that draw", "\u0085\u0084\u008d"},
		{"stray ST", st + "\u009c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := "<" + tt.seq + ">"
			require.Equal(t, in, filter(t, in))
			require.Equal(t, in, filterBytewise(t, in))
		})
	}
}

// TestSplitAcrossWrites: a sequence cut at every point between two Writes
// is filtered the same as whole.
func TestSplitAcrossWrites(t *testing.T) {
	in := "a" + osc + "52;c;eA==" + bel + "b" + csi + "31mc" + csi + "6nd" + osc + "8;;http://x" + st + "e\u009b6nf" + osc + "0;t" + st + "é"
	want := "ab" + csi + "31mcd" + osc + "8;;http://x" + st + "ef" + "é"
	require.Equal(t, want, filter(t, in))
	for i := 0; i <= len(in); i++ {
		var b bytes.Buffer
		f := termfilter.New(&b)
		_, err := f.Write([]byte(in[:i]))
		require.NoError(t, err)
		_, err = f.Write([]byte(in[i:]))
		require.NoError(t, err)
		require.NoError(t, f.Close())
		require.Equal(t, want, b.String(), "cut at %d", i)
	}
}

// TestInterrupted: a sequence interrupted by another is not completed by
// the bytes after it, and a passed string that is cut is closed.
func TestInterrupted(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"CSI cut by ESC", csi + "6" + csi + "6n" + "x", "x"},
		{"CSI cut by a non-ASCII byte", csi + "6én", "én"},
		{"CSI cancelled", csi + "6\x18n", "\x18n"},
		// Terminals act on a C0 control inside a sequence at once: it is
		// sent before the sequence.
		{"CSI with a CR inside", csi + "1\r;2H", "\r" + csi + "1;2H"},
		{"query with a CR inside", csi + "6\rn", "\r"},
		{"hyperlink cut by CSI", osc + "8;;http://x" + csi + "6nx", osc + "8;;http://x" + st + "x"},
		{"hyperlink cut by C1 CSI", osc + "8;;http://x\u009b6nx", osc + "8;;http://x" + st + "x"},
		{"hyperlink cancelled", osc + "8;;http://x\x18y", osc + "8;;http://x\x18y"},
		{"dropped OSC cut by CSI", osc + "0;title" + csi + "1mx", csi + "1mx"},
		{"unfinished CSI at the end", "x" + csi + "6", "x"},
		{"unfinished hyperlink at the end", osc + "8;;http://x", osc + "8;;http://x" + st},
		{"lone ESC at the end", "x" + esc, "x"},
		{"lone 0xC2 at the end", "x\xc2", "x\uFFFD"},
		{"invalid UTF-8 next to a dropped ESC", "\xc2\x1b\x9b6n", "\uFFFD\uFFFD6n"},
		{"raw 8-bit CSI", "\x9b6n", "\uFFFD6n"},
		{"raw 8-bit ST in a hyperlink", osc + "8;;http://x\x9c\x9b6n", osc + "8;;http://x\uFFFD\uFFFD6n" + st},
		{"title at the end", "x" + osc + "2;t", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, filter(t, tt.in))
			require.Equal(t, tt.want, filterBytewise(t, tt.in))
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	f := termfilter.New(failWriter{})
	_, err := f.Write([]byte("x"))
	require.ErrorContains(t, err, "disk full")
	n, err := f.Write([]byte(csi + "6")) // nothing passes yet: no write
	require.NoError(t, err)
	require.Equal(t, 3, n)
}

// forbidden are byte strings that must never come out of a Filter.
var forbidden = []string{
	"\x05", osc + "0;", osc + "1;", osc + "2;", osc + "52", osc + "7;", osc + "1337",
	csi + "c", csi + "0c", csi + ">c", csi + "=c", csi + "5n", csi + "6n", csi + "?6n",
	csi + ">q", csi + "21t", csi + "18t", dcs + "$q", dcs + "+q", esc + "Z", esc + "_", esc + "^", esc + "%",
	"\u009b6n", "\u009bc", "\u009f", "\u009a",
	// OSC's C1 form passes where its 7-bit form does (a colour, a link).
	"\u009d0;", "\u009d1;", "\u009d2;", "\u009d52", "\u009d7;", "\u009d1337",
}

// FuzzFilter: any bytes, in any two writes, come out the same as in one,
// never holding a forbidden sequence; and what comes out passes through a
// second Filter unchanged.
func FuzzFilter(f *testing.F) {
	f.Add([]byte("a"+osc+"52;c;eA=="+bel+"b"+csi+"31mc"+csi+"6nd"+osc+"8;;http://x"+st+"e"), 5)
	f.Add([]byte(dcs+"tmux;"+esc+esc+"]52;c;eA=="+bel+st+"\u009b6n\u009d0;t\u009c"), 3)
	f.Add([]byte(osc+"4;1;rgb:00/00/00;2;?"+bel+osc+"104"+st+dcs+"0q#0~"+st), 17)
	f.Add([]byte(csi+"?2004$p"+csi+"2 q"+csi+"1;2H\x05\xc2\xc2\x9b6n"+esc+"[1\x18"), 0)
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		whole := filter(t, string(in))
		if cut < 0 {
			cut = -cut
		}
		if len(in) > 0 {
			cut %= len(in) + 1
		} else {
			cut = 0
		}
		var b bytes.Buffer
		fl := termfilter.New(&b)
		_, err := fl.Write(in[:cut])
		require.NoError(t, err)
		_, err = fl.Write(in[cut:])
		require.NoError(t, err)
		require.NoError(t, fl.Close())
		require.Equal(t, whole, b.String(), "cut at %d", cut)
		for _, s := range forbidden {
			require.NotContains(t, whole, s)
		}
		require.Equal(t, whole, filter(t, whole), "filtering twice changes the output")
	})
}

func BenchmarkFilterText(b *testing.B) {
	chunk := []byte(strings.Repeat("total 48\r\n"+csi+"01;34mdrwxr-xr-x"+csi+"0m  2 root root 4096 Dec  2 14:00 "+csi+"01;34mbin"+csi+"0m\r\n", 64))
	f := termfilter.New(discard{})
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestAltScreen: the filter follows the alternate screen through the
// modes that enter and leave it, however the writes cut them.
func TestAltScreen(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"none", "plain \x1b[?25h text", ""},
		{"1049 entered", "\x1b[?1049h\x1b[H\x1b[2Jtop - 12:00", "\x1b[?1049l"},
		{"1049 left", "\x1b[?1049h frame \x1b[?1049l", ""},
		{"1047 among modes", "\x1b[?1;1047;25h", "\x1b[?1047l"},
		{"47", "\x1b[?47h", "\x1b[?47l"},
		{"left by another", "\x1b[?1049h\x1b[?47l", ""},
		{"C1 CSI", "\u009b?1049h", "\x1b[?1049l"},
		{"reset", "\x1b[?1049h\x1bc", ""},
		{"not private", "\x1b[1049h", ""},
		{"other mode", "\x1b[?10490h", ""},
		{"queried, not set", "\x1b[?1049$p", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for cut := 0; cut <= len(tc.in); cut++ {
				f := termfilter.New(io.Discard)
				_, _ = f.Write([]byte(tc.in[:cut]))
				_, _ = f.Write([]byte(tc.in[cut:]))
				if got := f.AltScreen(); got != tc.want {
					t.Fatalf("%q cut at %d: AltScreen() = %q; want %q", tc.in, cut, got, tc.want)
				}
			}
		})
	}
}
