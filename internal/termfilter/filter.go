// Package termfilter removes from terminal output the escape sequences that
// act on the machine of whoever watches it rather than on the screen, so
// that a recording can be replayed on a terminal safely: whoever made the
// recording controls its bytes.
//
// Removed:
//   - OSC sequences other than hyperlinks (OSC 8), colours (OSC 4, 5, 6,
//     10-19, 21 and their resets 104-119) and shell-integration marks (OSC
//     133, 633): window and icon titles (OSC 0, 1, 2), the clipboard (OSC
//     52), notifications, files (iTerm2's OSC 1337), fonts, the working
//     directory (OSC 7) and every number not named here. A colour sequence
//     that asks with "?" is removed too: the terminal would answer it.
//   - Terminal queries, whose answers the terminal types as if the viewer
//     had: device attributes (DA1, DA2, DA3: CSI c, CSI > c, CSI = c, and
//     ESC Z), status and cursor reports (CSI 5 n, CSI 6 n, CSI ? Ps n),
//     XTVERSION (CSI > q), mode reports (DECRQM: CSI Ps $ p, CSI ? Ps $ p),
//     window operations and their reports (CSI Ps t), DECREQTPARM,
//     XTSMGRAPHICS, XTQMODKEYS, the kitty keyboard query, DECRQTSR,
//     DECRQPSR, DECRQCRA, DECRQLP, XTREPORTSGR, and ENQ (answerback).
//   - Sequences that reach past the screen: media copy (CSI i, printers),
//     keyboard LEDs (DECLL), and DCS strings but sixel images: DECRQSS
//     (DCS $ q), XTGETTCAP and XTSETTCAP, user-defined keys (DECUDK), tmux
//     passthrough, soft fonts; SOS, PM and APC strings; screen's title
//     (ESC k); a change of the character encoding (ESC % @ would take the
//     terminal out of UTF-8, where bytes of characters are C1 controls).
//
// Everything else passes byte for byte: text, colours, cursor movement,
// modes, the alternate screen. (A C0 control inside a sequence, which
// terminals act on at once, is sent before the sequence.) The 8-bit C1 forms of CSI, OSC, DCS, SOS,
// PM and APC, written as UTF-8 (U+009B for CSI), are filtered like their
// 7-bit forms. A sequence split across writes is held until it is
// complete, up to a bound (MaxPending); longer ones are removed. A Filter
// follows whether the output left the terminal in the alternate screen
// (AltScreen), so that a replay stopped there can leave it.
//
// The output is valid UTF-8: bytes that are not (which an 8-bit terminal
// would take for C1 controls) become U+FFFD, and a character split across
// writes is held until it is whole. Valid UTF-8 comes out unchanged but for
// the sequences removed.
package termfilter

import (
	"bytes"
	"io"
	"strconv"
	"unicode/utf8"
)

// MaxPending bounds the bytes of an undecided sequence a Filter holds: a
// CSI sequence, an OSC's number, a colour OSC (which must be seen whole to
// know whether it asks). Longer ones are removed.
const MaxPending = 4096

// maxCSI bounds a CSI sequence; real ones are a few dozen bytes.
const maxCSI = 256

// state is where a Filter is in the stream.
type state uint8

const (
	ground    state = iota
	c1              // after 0xC2 in ground: maybe a C1 control written as UTF-8
	esc             // after ESC
	escInter        // after ESC and intermediates
	csi             // in a CSI sequence, buffered
	csiIgnore       // in a CSI sequence being removed
	oscHead         // in an OSC's number, buffered
	oscBuf          // in a colour OSC, buffered until its end
	dcsHead         // in a DCS's parameters, buffered until its final byte
	strPass         // in a string (OSC, DCS) passed as it comes
	strDrop         // in a string being removed
)

// Filter is an io.Writer that writes what passes to the writer under it.
// It holds the unfinished sequence at the end of a Write until the next
// one; Close drops it. A Filter is not safe for concurrent use.
type Filter struct {
	w   io.Writer
	st  state
	buf []byte // the undecided sequence, from its introducer
	out []byte // what one Write passes on

	partial []byte // an incomplete UTF-8 character at the end of the last Write
	in      []byte // the input made valid UTF-8, when it was not

	// In CSI: the private prefix (< = > ?, or 0) and the intermediate
	// byte (0 for none, 0xff for several).
	prefix, inter byte
	// In strings: OSC ends with BEL too; an ESC or a 0xC2 waits for the
	// next byte (ST is ESC \ or U+009C).
	osc, pendESC, pendC2 bool
	// alt is the alternate-screen mode (1049, 1047 or 47) that the
	// output passed so far left the terminal in; 0 for the normal screen.
	alt int
}

// AltScreen returns the sequence that takes the terminal back to the
// normal screen when the output passed so far left it in the alternate
// screen (CSI ? 1049 h, 1047 h or 47 h, not undone by its l or a reset),
// and "" otherwise.
func (f *Filter) AltScreen() string {
	if f.alt == 0 {
		return ""
	}
	return "\x1b[?" + strconv.Itoa(f.alt) + "l"
}

// noteModes follows the alternate screen through a DEC private mode set
// (final h) or reset (l) being passed: the parameters are in buf, after
// the introducer and the ? prefix.
func (f *Filter) noteModes(final byte) {
	p := f.buf
	if i := bytes.IndexByte(p, '?'); i >= 0 {
		p = p[i+1:]
	}
	for len(p) > 0 {
		n, mode := 0, 0
		for n < len(p) && p[n] != ';' {
			if p[n] >= '0' && p[n] <= '9' && mode < 1e6 {
				mode = mode*10 + int(p[n]-'0')
			}
			n++
		}
		switch mode {
		case 1049, 1047, 47:
			if final == 'h' {
				f.alt = mode
			} else {
				f.alt = 0
			}
		}
		if n == len(p) {
			break
		}
		p = p[n+1:]
	}
}

// New returns a Filter writing to w.
func New(w io.Writer) *Filter { return &Filter{w: w} }

// Write filters p and writes what passes, in one Write to the writer
// under it. It returns len(p) unless that Write fails.
func (f *Filter) Write(p []byte) (int, error) {
	n := len(p)
	p = f.validUTF8(p)
	f.out = f.out[:0]
	for i := 0; i < len(p); {
		if f.st == ground {
			// The fast path: a run of plain bytes.
			j := i
			for j < len(p) && p[j] != 0x1b && p[j] != 0x05 && p[j] != 0xc2 {
				j++
			}
			f.out = append(f.out, p[i:j]...)
			if i = j; i == len(p) {
				break
			}
		}
		f.step(p[i])
		i++
	}
	if len(f.out) == 0 {
		return n, nil
	}
	if _, err := f.w.Write(f.out); err != nil {
		return 0, err
	}
	return n, nil
}

// validUTF8 returns p, after the incomplete character the last Write
// ended with, as valid UTF-8: invalid bytes become U+FFFD, and an
// incomplete character at its end is kept for the next Write.
func (f *Filter) validUTF8(p []byte) []byte {
	if len(f.partial) > 0 {
		p = append(append(f.in[:0], f.partial...), p...)
		f.partial = f.partial[:0]
	}
	// An incomplete character is at most 3 bytes from the end.
	for i := len(p) - 1; i >= 0 && i >= len(p)-3; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				f.partial = append(f.partial, p[i:]...)
				p = p[:i]
			}
			break
		}
	}
	if utf8.Valid(p) {
		return p
	}
	v := make([]byte, 0, len(p)+8)
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		if r == utf8.RuneError && size == 1 {
			v = utf8.AppendRune(v, utf8.RuneError)
		} else {
			v = append(v, p[:size]...)
		}
		p = p[size:]
	}
	f.in = v
	return v
}

// Close ends the stream: an unfinished sequence is dropped (were it sent,
// what the viewer's terminal gets next could complete it), and a string
// being passed is ended with ST. It does not close the writer under it.
func (f *Filter) Close() error {
	f.out = f.out[:0]
	if len(f.partial) > 0 {
		f.partial = f.partial[:0]
		for _, b := range []byte(string(utf8.RuneError)) {
			f.step(b)
		}
	}
	switch f.st {
	case strPass:
		f.out = append(f.out, 0x1b, '\\')
	case c1:
		f.out = append(f.out, f.buf...) // a lone 0xC2: not the start of anything
	}
	f.reset(ground)
	if len(f.out) == 0 {
		return nil
	}
	_, err := f.w.Write(f.out)
	return err
}

func (f *Filter) reset(st state) {
	f.st, f.buf, f.pendESC, f.pendC2 = st, f.buf[:0], false, false
}

func (f *Filter) emit(b ...byte) { f.out = append(f.out, b...) }

// pass sends the buffered sequence and b, and returns to ground.
func (f *Filter) pass(b ...byte) {
	f.out = append(f.out, f.buf...)
	f.out = append(f.out, b...)
	f.reset(ground)
}

// begin starts a buffered sequence in state st with its introducer.
func (f *Filter) begin(st state, intro ...byte) {
	f.reset(st)
	f.buf = append(f.buf, intro...)
	f.prefix, f.inter = 0, 0
}

// startString starts a string (OSC, DCS, SOS, PM, APC) in state st.
func (f *Filter) startString(st state, osc bool, intro ...byte) {
	f.begin(st, intro...)
	f.osc = osc
}

func (f *Filter) step(b byte) {
	switch f.st {
	case ground:
		switch b {
		case 0x1b:
			f.begin(esc, b)
		case 0x05: // ENQ: the terminal sends its answerback
		case 0xc2:
			f.begin(c1, b)
		default:
			f.emit(b)
		}
	case c1:
		switch b {
		case 0x9b:
			f.begin(csi, 0xc2, b)
		case 0x9d:
			f.startString(oscHead, true, 0xc2, b)
		case 0x90:
			f.startString(dcsHead, false, 0xc2, b)
		case 0x98, 0x9e, 0x9f: // SOS, PM, APC
			f.startString(strDrop, false)
		case 0x9a: // DECID, as ESC Z
			f.reset(ground)
		default:
			f.out = append(f.out, f.buf...)
			f.reset(ground)
			f.step(b)
		}
	case esc, escInter:
		switch {
		case f.control(b):
		case b >= 0x20 && b <= 0x2f:
			if f.buf = append(f.buf, b); len(f.buf) > 16 {
				f.reset(ground)
				return
			}
			f.st = escInter
		case f.st == escInter && b >= 0x30 && b <= 0x7e:
			if f.buf[1] == '%' {
				// DOCS: leaving UTF-8 would make bytes of UTF-8
				// characters C1 controls (0x9B: CSI).
				f.reset(ground)
				return
			}
			f.pass(b)
		case b == '[':
			f.begin(csi, 0x1b, b)
		case b == ']':
			f.startString(oscHead, true, 0x1b, b)
		case b == 'P':
			f.startString(dcsHead, false, 0x1b, b)
		case b == 'X', b == '^', b == '_', b == 'k': // SOS, PM, APC, screen's title
			f.startString(strDrop, false)
		case b == 'Z': // DECID: the terminal answers as to DA1
			f.reset(ground)
		case b >= 0x30 && b <= 0x7e:
			if b == 'c' && f.st == esc { // RIS: the normal screen again
				f.alt = 0
			}
			f.pass(b)
		default: // not an escape sequence: drop what came so far
			f.reset(ground)
			f.step(b)
		}
	case csi, csiIgnore:
		switch {
		case f.control(b):
		case b >= 0x40 && b <= 0x7e:
			if f.st == csi && !queries(f.prefix, f.inter, b) {
				if f.prefix == '?' && f.inter == 0 && (b == 'h' || b == 'l') {
					f.noteModes(b)
				}
				f.pass(b)
				return
			}
			f.reset(ground)
		case b >= 0x20 && b <= 0x3f:
			if f.st == csiIgnore {
				return
			}
			f.csiParam(b)
		default:
			f.reset(ground)
			f.step(b)
		}
	default:
		f.stringByte(b)
	}
}

// control handles a C0 control or DEL inside an escape or CSI sequence as
// terminals do, and reports whether b was one: ESC starts over, CAN and
// SUB cancel the sequence, ENQ is dropped, others act at once.
func (f *Filter) control(b byte) bool {
	switch {
	case b == 0x1b:
		f.begin(esc, b)
	case b == 0x18 || b == 0x1a:
		f.reset(ground)
		f.emit(b)
	case b == 0x05, b == 0x7f:
	case b < 0x20:
		f.emit(b)
	default:
		return false
	}
	return true
}

// csiParam takes a parameter or intermediate byte of a CSI sequence.
func (f *Filter) csiParam(b byte) {
	first := len(f.buf) == 2
	switch {
	case b >= 0x3c && b <= 0x3f && first:
		f.prefix = b
	case b >= 0x30 && b <= 0x3f && (f.inter != 0 || b >= 0x3c):
		// A parameter after an intermediate, or a private marker not
		// first: terminals ignore the sequence.
		f.st = csiIgnore
		return
	case b < 0x30:
		if f.inter == 0 {
			f.inter = b
		} else {
			f.inter = 0xff
		}
	}
	if f.buf = append(f.buf, b); len(f.buf) > maxCSI {
		f.st = csiIgnore
	}
}

// queries reports whether the CSI sequence with this private prefix,
// intermediate and final byte makes the terminal answer, or acts beyond
// the screen.
func queries(prefix, inter, final byte) bool {
	switch final {
	case 'c': // DA1, DA2 (>), DA3 (=)
		return inter == 0
	case 'n': // DSR, CPR, DEC-specific reports (?)
		return inter == 0 && (prefix == 0 || prefix == '?')
	case 'q': // XTVERSION (>), DECLL: keyboard LEDs
		return inter == 0 && (prefix == 0 || prefix == '>')
	case 'p': // DECRQM
		return inter == '$'
	case 't': // window operations, their reports, title modes
		return inter == 0
	case 'x': // DECREQTPARM
		return inter == 0 && prefix == 0
	case 'S': // XTSMGRAPHICS
		return prefix == '?'
	case 'm': // XTQMODKEYS
		return prefix == '?'
	case 'u': // the kitty keyboard query; DECRQTSR
		return prefix == '?' || inter == '$'
	case 'w': // DECRQPSR
		return inter == '$'
	case 'y': // DECRQCRA
		return inter == '*'
	case '|': // DECRQLP
		return inter == '\''
	case 'i': // media copy: printers
		return inter == 0 && (prefix == 0 || prefix == '?')
	case 'R': // XTREPORTSGR
		return inter == '#'
	}
	return false
}

// stringByte takes a byte in an OSC, DCS or other string.
func (f *Filter) stringByte(b byte) {
	if f.pendESC {
		f.pendESC = false
		if b == '\\' {
			f.end(0x1b, '\\')
			return
		}
		// ESC ends the string and starts a sequence.
		f.abort()
		f.begin(esc, 0x1b)
		f.step(b)
		return
	}
	if f.pendC2 {
		f.pendC2 = false
		switch {
		case b == 0x9c:
			f.end(0xc2, b)
			return
		case b >= 0x80 && b <= 0x9f:
			// Another C1 control: taken to end the string too.
			f.abort()
			f.begin(c1, 0xc2)
			f.step(b)
			return
		}
		// A character such as U+00A0..U+00BF: content, in whatever
		// string state that leaves.
		f.content(0xc2)
		f.stringByte(b)
		return
	}
	switch {
	case b == 0x1b:
		f.pendESC = true
	case b == 0xc2:
		f.pendC2 = true
	case b == 0x07 && f.osc:
		f.end(b)
	case b == 0x18 || b == 0x1a:
		if f.st == strPass {
			f.emit(b) // the terminal cancels the string
		}
		f.reset(ground)
	case b == 0x05:
	default:
		f.content(b)
	}
}

// content takes a byte of a string's body.
func (f *Filter) content(b byte) {
	switch f.st {
	case strPass:
		f.emit(b)
	case strDrop:
	case oscHead:
		switch {
		case b >= '0' && b <= '9' && len(f.buf) < 8:
			f.buf = append(f.buf, b)
		case b == ';':
			switch oscClass(f.buf[2:]) {
			case oscSafe:
				f.out = append(f.out, f.buf...)
				f.out = append(f.out, b)
				f.buf, f.st = f.buf[:0], strPass
			case oscColour:
				f.buf, f.st = append(f.buf, b), oscBuf
			default:
				f.st = strDrop
			}
		default:
			f.st = strDrop
		}
	case oscBuf:
		if b == '?' || len(f.buf) >= MaxPending {
			f.st = strDrop
			return
		}
		f.buf = append(f.buf, b)
	case dcsHead:
		switch {
		case b >= 0x20 && b <= 0x3f && len(f.buf) < 64:
			f.buf = append(f.buf, b)
		case b == 'q' && sixel(f.buf[2:]):
			f.out = append(f.out, f.buf...)
			f.out = append(f.out, b)
			f.buf, f.st = f.buf[:0], strPass
		default:
			f.st = strDrop
		}
	}
}

// sixel reports whether DCS parameters before a final 'q' start a sixel
// image: digits and semicolons only (DECRQSS and XTGETTCAP have an
// intermediate).
func sixel(params []byte) bool {
	for _, b := range params {
		if (b < '0' || b > '9') && b != ';' {
			return false
		}
	}
	return true
}

// end finishes a string with its terminator term.
func (f *Filter) end(term ...byte) {
	switch f.st {
	case strPass:
		f.emit(term...)
	case oscHead:
		// No parameters: OSC 104 and the like reset colours.
		if oscClass(f.buf[2:]) != oscDrop {
			f.pass(term...)
			return
		}
	case oscBuf:
		f.pass(term...)
		return
	}
	f.reset(ground)
}

// abort ends a string that another sequence interrupts. A string already
// passed on is ended with ST, so that the viewer's terminal leaves it.
func (f *Filter) abort() {
	if f.st == strPass {
		f.emit(0x1b, '\\')
	}
	f.reset(ground)
}

// What an OSC number is.
type oscKind uint8

const (
	oscDrop   oscKind = iota
	oscSafe           // passed as it comes
	oscColour         // passed unless it asks with "?"
)

// oscClass classifies an OSC by its number, given as ASCII digits.
func oscClass(num []byte) oscKind {
	if len(num) == 0 || len(num) > 5 {
		return oscDrop
	}
	n := 0
	for _, d := range num {
		n = n*10 + int(d-'0')
	}
	switch {
	case n == 8, n == 133, n == 633, n == 104, n == 105, n == 106, n >= 110 && n <= 119:
		return oscSafe
	case n == 4, n == 5, n == 6, n >= 10 && n <= 19, n == 21:
		return oscColour
	}
	return oscDrop
}
