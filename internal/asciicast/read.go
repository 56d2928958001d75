package asciicast

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MaxLineBytes bounds one line of a recording: the header or one event.
// The edge coalesces output into events of at most 32 KiB, which JSON
// escaping can grow six times; asciinema writes smaller ones.
const MaxLineBytes = 1 << 20

// Errors of the Decoder, wrapped in a *LineError that names the line.
var (
	// ErrLineTooLong: a line is longer than MaxLineBytes.
	ErrLineTooLong = errors.New("asciicast: line too long")
	// ErrVersion: the header is not one of asciicast version 2.
	ErrVersion = errors.New("asciicast: not an asciicast v2 recording")
)

// LineError is a problem with one line of a recording.
type LineError struct {
	Line int // 1 is the header
	Err  error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("asciicast: line %d: %v", e.Line, strings.TrimPrefix(e.Err.Error(), "asciicast: "))
}

func (e *LineError) Unwrap() error { return e.Err }

// Decoder reads a recording: Header first, then Next until io.EOF. It
// accepts what asciinema writes as well as what the edge writes: event
// times as any JSON number, data strings with escapes, fields and event
// codes it does not know (the caller skips those), blank lines (skipped),
// and CRLF line ends. Invalid UTF-8 in data becomes U+FFFD. After an
// error other than io.EOF, the Decoder returns that error again.
type Decoder struct {
	r    *bufio.Reader
	line int // lines read so far
	hdr  *Header
	idle float64
	err  error
}

// NewDecoder returns a Decoder that reads r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, 64<<10)}
}

// headerLine is the header as read: Header's fields, with those that
// writers spell differently read apart.
type headerLine struct {
	Header
	// Timestamp shadows Header.Timestamp: some writers put a fraction.
	Timestamp *json.Number `json:"timestamp"`
	// IdleTimeLimit is asciicast v2's optional idle_time_limit: players
	// shorten longer pauses to this many seconds.
	IdleTimeLimit *float64 `json:"idle_time_limit"`
}

// Header reads and checks the first line, once; later calls return the
// same header. It fails when the first line is not an asciicast v2 header
// (a version other than 2, a negative width or height). A width or height
// of 0 means unknown: asciinema writes it when it has no terminal.
func (d *Decoder) Header() (Header, error) {
	if d.hdr != nil {
		return *d.hdr, nil
	}
	if d.err != nil {
		return Header{}, d.err
	}
	line, err := d.readLine()
	if err == io.EOF {
		return Header{}, d.fail(errors.New("asciicast: empty: no header line"))
	}
	if err != nil {
		return Header{}, d.fail(err)
	}
	var h headerLine
	if err := json.Unmarshal(line, &h); err != nil {
		return Header{}, d.fail(fmt.Errorf("%w: the header is not a JSON object (%v)", ErrVersion, jsonProblem(err)))
	}
	if h.Version != Version {
		return Header{}, d.fail(fmt.Errorf("%w: the header says version %d", ErrVersion, h.Version))
	}
	if h.Width < 0 || h.Height < 0 || h.Width > 1<<16 || h.Height > 1<<16 {
		return Header{}, d.fail(fmt.Errorf("the header's width and height %dx%d are not a terminal's size", h.Width, h.Height))
	}
	if h.Timestamp != nil {
		f, err := h.Timestamp.Float64()
		if err != nil || f < 0 || f >= 1e11 {
			return Header{}, d.fail(fmt.Errorf("the header's timestamp %s is not a time in Unix seconds", h.Timestamp.String()))
		}
		h.Header.Timestamp = int64(f)
	}
	if h.IdleTimeLimit != nil && *h.IdleTimeLimit > 0 {
		d.idle = *h.IdleTimeLimit
	}
	d.hdr = &h.Header
	return h.Header, nil
}

// IdleTimeLimit is the header's idle_time_limit in seconds, zero when it
// has none. Valid after Header.
func (d *Decoder) IdleTimeLimit() float64 { return d.idle }

// Next returns the next event, and io.EOF after the last. It reads the
// header first when Header was not called. Times are checked to be
// finite and not negative; they are not checked to grow.
func (d *Decoder) Next() (Event, error) {
	if _, err := d.Header(); err != nil {
		return Event{}, err
	}
	if d.err != nil {
		return Event{}, d.err
	}
	for {
		line, err := d.readLine()
		if err == io.EOF {
			return Event{}, io.EOF
		}
		if err != nil {
			return Event{}, d.fail(err)
		}
		if len(line) == 0 {
			continue
		}
		ev, err := parseEvent(line)
		if err != nil {
			return Event{}, d.fail(err)
		}
		return ev, nil
	}
}

// fail records err, wrapped with the current line, as the Decoder's
// lasting error.
func (d *Decoder) fail(err error) error {
	d.err = &LineError{Line: d.line, Err: err}
	return d.err
}

// readLine returns the next line without its line end and with blanks
// trimmed, or io.EOF when no bytes are left. A last line without a
// newline counts.
func (d *Decoder) readLine() ([]byte, error) {
	var line []byte
	for {
		chunk, err := d.r.ReadSlice('\n')
		if len(line)+len(chunk) > MaxLineBytes+2 { // +2: the CRLF
			d.line++
			return nil, fmt.Errorf("%w: more than %d bytes", ErrLineTooLong, MaxLineBytes)
		}
		line = append(line, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			if len(line) == 0 {
				return nil, io.EOF
			}
			break
		}
		if err != nil {
			d.line++
			return nil, fmt.Errorf("asciicast: read: %w", err)
		}
		break
	}
	d.line++
	return bytes.TrimSpace(line), nil
}

// parseEvent decodes one event line: [time, code, data].
func parseEvent(line []byte) (Event, error) {
	if line[0] != '[' {
		return Event{}, fmt.Errorf("an event must be a JSON array [time, code, data], got %s", excerpt(line))
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(line, &parts); err != nil {
		return Event{}, fmt.Errorf("the event is not valid JSON (%v)", jsonProblem(err))
	}
	if len(parts) != 3 {
		return Event{}, fmt.Errorf("an event has 3 elements [time, code, data], this one has %d", len(parts))
	}
	var ev Event
	// A valid JSON value that starts so is a JSON number, whose syntax
	// ParseFloat reads as encoding/json would, faster.
	t := parts[0]
	var err error
	if t[0] != '-' && (t[0] < '0' || t[0] > '9') {
		err = errors.New("not a number")
	} else {
		ev.Time, err = strconv.ParseFloat(string(t), 64)
	}
	if err != nil {
		return Event{}, fmt.Errorf("the event's time %s is not a number of seconds", excerpt(t))
	}
	if ev.Time < 0 {
		return Event{}, fmt.Errorf("the event's time %s is negative", excerpt(t))
	}
	code, ok := plainString(parts[1])
	if !ok {
		if err := json.Unmarshal(parts[1], &code); err != nil {
			code = ""
		}
	}
	if code == "" {
		return Event{}, fmt.Errorf("the event's code %s is not a non-empty string such as \"o\"", excerpt(parts[1]))
	}
	ev.Code = Code(code)
	if err := json.Unmarshal(parts[2], &ev.Data); err != nil {
		return Event{}, fmt.Errorf("the event's data %s is not a string", excerpt(parts[2]))
	}
	return ev, nil
}

// plainString returns the JSON string raw holds when it has no escapes and
// is printable ASCII, as event codes are; ok is false otherwise.
func plainString(raw []byte) (s string, ok bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	for _, b := range raw[1 : len(raw)-1] {
		if b < ' ' || b > '~' || b == '\\' || b == '"' {
			return "", false
		}
	}
	return string(raw[1 : len(raw)-1]), true
}

// ParseResize reads the data of a Resize event, "COLSxROWS", such as
// "120x40". Both must be positive.
func ParseResize(data string) (cols, rows int, err error) {
	c, r, ok := strings.Cut(data, "x")
	if ok {
		cols, err = strconv.Atoi(c)
		if err == nil {
			rows, err = strconv.Atoi(r)
		}
	}
	if !ok || err != nil || cols <= 0 || rows <= 0 || cols > 1<<16 || rows > 1<<16 {
		return 0, 0, fmt.Errorf("asciicast: resize %s is not COLSxROWS, such as 120x40", excerpt([]byte(data)))
	}
	return cols, rows, nil
}

// jsonProblem is a JSON error without the type names encoding/json puts
// in some of them.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%v at byte %d", se, se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("field %q holds a %s", te.Field, te.Value)
		}
		return fmt.Sprintf("found a %s", te.Value)
	}
	return err.Error()
}

// excerpt is the start of b, quoted, for error messages.
func excerpt(b []byte) string {
	const n = 40
	if len(b) > n {
		return strconv.Quote(string(b[:n])) + "..."
	}
	return strconv.Quote(string(b))
}
