package cli

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// Escapes, as ssh has them: the escape character (~ by default) at the
// start of a line, followed by one of these, is handled by tether rather
// than sent to the device.
const (
	escQuit  = '.' // end the session at once, even if the edge does not answer
	escHelp  = '?' // list the escapes
	escNoEsc = -1  // -e none
)

// errEscaped ends a session the user closed with ~.
var errEscaped = errors.New("the session was closed with the escape ~.")

// parseEscape reads -e: one character, "^X" for a control character, or
// "none".
func parseEscape(s string) (int, error) {
	switch {
	case s == "none":
		return escNoEsc, nil
	case len(s) == 1 && s[0] >= 0x20 && s[0] < 0x7f:
		return int(s[0]), nil
	case len(s) == 2 && s[0] == '^' && s[1] >= '@' && s[1] <= '_':
		return int(s[1] - '@'), nil
	case len(s) == 2 && s[0] == '^' && s[1] >= 'a' && s[1] <= 'z':
		return int(s[1] - 'a' + 1), nil
	}
	return 0, usageErrorf("-e %q: the escape character must be one printable character, ^X for a control character, or none", s)
}

// escapeName shows the escape character as a person types it.
func escapeName(c byte) string {
	if c < 0x20 {
		return "^" + string(rune(c+'@'))
	}
	return string(rune(c))
}

// escapeReader filters a terminal's input for escapes. Escapes count only
// right after a newline (or carriage return, as a terminal in raw mode
// sends Enter) and at the very start. ~. closes Quit; ~? prints the list
// to help; ~~ sends one ~; ~ followed by anything else sends both bytes.
type escapeReader struct {
	r    io.Reader
	ch   byte
	help io.Writer
	nl   string // line ending of the help text ("\r\n" in raw mode)

	quitOnce sync.Once
	quit     chan struct{}

	// Read's state; Read is called from one goroutine.
	lineStart bool
	pending   bool   // the escape character was seen at a line start
	queued    []byte // filtered bytes not yet returned
	buf       []byte
}

func newEscapeReader(r io.Reader, ch byte, help io.Writer, raw bool) *escapeReader {
	nl := "\n"
	if raw {
		nl = "\r\n"
	}
	return &escapeReader{r: r, ch: ch, help: help, nl: nl, quit: make(chan struct{}), lineStart: true, buf: make([]byte, 4096)}
}

// Quit is closed when the user typed the quit escape.
func (e *escapeReader) Quit() <-chan struct{} { return e.quit }

// Read returns the input without the escapes. After ~. it returns
// errEscaped.
func (e *escapeReader) Read(p []byte) (int, error) {
	for len(e.queued) == 0 {
		select {
		case <-e.quit:
			return 0, errEscaped
		default:
		}
		n, err := e.r.Read(e.buf)
		e.filter(e.buf[:n])
		if len(e.queued) > 0 {
			break
		}
		if err != nil {
			select {
			case <-e.quit:
				return 0, errEscaped
			default:
			}
			if e.pending && errors.Is(err, io.EOF) {
				e.pending = false
				e.queued = append(e.queued, e.ch) // a lone ~ at the end is data
				break
			}
			return 0, err
		}
	}
	n := copy(p, e.queued)
	e.queued = e.queued[n:]
	return n, nil
}

// filter handles the bytes of one read.
func (e *escapeReader) filter(b []byte) {
	for _, c := range b {
		select {
		case <-e.quit:
			return // nothing typed after ~. is sent
		default:
		}
		if e.pending {
			e.pending = false
			switch c {
			case escQuit:
				e.quitOnce.Do(func() { close(e.quit) })
				return
			case escHelp:
				e.printHelp()
				e.lineStart = true
				continue
			case e.ch:
				e.queued = append(e.queued, e.ch)
				e.lineStart = false
				continue
			}
			e.queued = append(e.queued, e.ch)
		} else if c == e.ch && e.lineStart {
			e.pending = true
			continue
		}
		e.queued = append(e.queued, c)
		e.lineStart = c == '\n' || c == '\r'
	}
}

func (e *escapeReader) printHelp() {
	c := escapeName(e.ch)
	fmt.Fprintf(e.help, "%sSupported escape sequences:%s"+
		"  %s.  close the session at once%s"+
		"  %s?  this list%s"+
		"  %s%s  send the escape character once%s"+
		"(Escapes are recognized only right after a newline; -e none turns them off.)%s",
		e.nl, e.nl, c, e.nl, c, e.nl, c, c, e.nl, e.nl)
}
