package files

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tetherhq/tether/transport/wire"
)

// The file transfer flow (docs/protocol.md, "File transfer (0x20)"):
//
//  1. The client opens a stream with a 0x20 message whose payload is a JSON
//     Request. Ours carry the "tether" object (Ext); qbee-v1 devices ignore it.
//  2. The device answers OK or Error. An OK with an empty payload is a
//     qbee-v1 device: a gzip-compressed tar archive follows (download), or
//     is expected (upload). Ours answer OK with a JSON Answer.
//  3. Raw mode (Answer.Raw): the file's bytes go as frames in the message
//     format (FrameData), then one FrameTrailer with the JSON Trailer, or a
//     FrameError with a reason. An upload then gets a final OK (JSON
//     Trailer of what the device stored) or Error.
//  4. Tar mode: a tar archive, gzip-compressed unless Answer.Gzip is false.
//     An upload gets a final OK or Error once the archive is extracted.

// Direction says which way the bytes go.
type Direction int

// Directions.
const (
	DirDownload Direction = 0 // device to client
	DirUpload   Direction = 1 // client to device
)

func (d Direction) String() string {
	switch d {
	case DirDownload:
		return "download"
	case DirUpload:
		return "upload"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// FrameType is the first byte of a raw-mode frame. Frames have the layout
// of messages: type (1 byte), length n (2 bytes, big endian), n bytes.
type FrameType uint8

// Raw-mode frame types. The trailing comment gives each payload.
const (
	FrameData    FrameType = 0x00 // 1..65535 bytes of the file, in order
	FrameTrailer FrameType = 0x01 // JSON Trailer: the whole file's size and SHA-256; ends the body
	FrameError   FrameType = 0x02 // UTF-8 reason; ends the body, which is void
)

func (t FrameType) String() string {
	switch t {
	case FrameData:
		return "Data"
	case FrameTrailer:
		return "Trailer"
	case FrameError:
		return "Error"
	}
	return fmt.Sprintf("FrameType(0x%02x)", uint8(t))
}

// Version is the extension version this package speaks.
const Version = 1

// Bounds of the protocol.
const (
	// MaxPath bounds a request's path and every name in an archive, in bytes.
	MaxPath = wire.MaxFilePath
	// MaxName bounds one path component, in bytes.
	MaxName = wire.MaxFileName
	// maxFrame is the largest frame payload.
	maxFrame = wire.MaxPayload
)

// Request is the 0x20 payload.
type Request struct {
	Direction Direction `json:"direction"`
	Path      string    `json:"path"`
	// Tether is our extension; nil sends the qbee-v1 request.
	Tether *Ext `json:"tether,omitempty"`
}

// Ext is the "tether" object of a request.
type Ext struct {
	// V is the extension version (1).
	V int `json:"v"`
	// Offset: download, the bytes the client already holds; upload,
	// unused (the device says where to resume).
	Offset int64 `json:"offset,omitempty"`
	// Size: download, the size the client expects (from the earlier
	// answer) when Offset > 0; upload in raw mode, the file's size.
	Size int64 `json:"size,omitempty"`
	// MTimeNS: download, the modification time the client expects when
	// Offset > 0; upload, the time to set on the file. Nanoseconds since
	// the Unix epoch.
	MTimeNS int64 `json:"mtime_ns,omitempty"`
	// SHA256: upload in raw mode, the whole file's SHA-256 in hex. With it
	// the device keeps a partial upload that a retry resumes.
	SHA256 string `json:"sha256,omitempty"`
	// Mode: upload, the permission bits (0..0777); setuid, setgid and
	// sticky are never applied. 0 means 0644.
	Mode uint32 `json:"mode,omitempty"`
	// Raw: upload, the body is one file in raw mode (else a tar archive).
	Raw bool `json:"raw,omitempty"`
	// Name: upload in raw mode, the file's base name, used when Path is an
	// existing directory.
	Name string `json:"name,omitempty"`
	// NoGzip: tar mode without gzip, for files that are compressed already.
	NoGzip bool `json:"no_gzip,omitempty"`
	// Gzip: raw mode with the data frames carrying a gzip stream of the
	// bytes (from the offset), for compressible files on slow links.
	Gzip bool `json:"gzip,omitempty"`
}

// Answer is the JSON payload of our devices' OK.
type Answer struct {
	V int `json:"v"`
	// Raw: the body is one file in raw mode; false: a tar archive.
	Raw bool `json:"raw"`
	// Gzip: the tar archive is gzip-compressed; raw mode: the data frames
	// carry a gzip stream of the file's bytes from Offset.
	Gzip bool `json:"gzip,omitempty"`
	// Offset: raw mode, the file offset of the body's first byte.
	Offset int64 `json:"offset"`
	// Size, MTimeNS and Mode: raw download, the file's size, modification
	// time (ns since the epoch) and permission bits.
	Size    int64  `json:"size,omitempty"`
	MTimeNS int64  `json:"mtime_ns,omitempty"`
	Mode    uint32 `json:"mode,omitempty"`
}

// Trailer ends a raw body, and is the payload of an upload's final OK.
type Trailer struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrBadRequest: a request or answer that does not parse, or breaks a bound.
	ErrBadRequest = errors.New("files: bad request")
	// ErrChecksum: the bytes received do not have the SHA-256 the sender
	// announced.
	ErrChecksum = errors.New("files: checksum mismatch")
	// ErrUnsafe: an archive entry or path that would be written outside its
	// root, or that is of a refused kind.
	ErrUnsafe = errors.New("files: unsafe archive entry")
	// ErrLimit: an archive or file exceeds a bound.
	ErrLimit = errors.New("files: limit exceeded")
	// ErrFrame: a raw body that breaks the framing.
	ErrFrame = errors.New("files: bad frame")
	// ErrNoFinalAnswer: an upload's stream ended without the device's
	// final OK or Error (qbee-v1 devices do so when extraction fails).
	ErrNoFinalAnswer = errors.New("files: the device closed the stream without a final answer; the upload may have failed")
)

// ParseRequest decodes and checks a 0x20 payload: a known direction, an
// absolute canonical path and, when present, a sane extension.
func ParseRequest(payload []byte) (Request, error) {
	var r Request
	if len(payload) == 0 {
		return r, fmt.Errorf("%w: empty payload; send {\"direction\":0|1,\"path\":\"/abs/path\"}", ErrBadRequest)
	}
	if err := json.Unmarshal(payload, &r); err != nil {
		return r, fmt.Errorf("%w: not JSON: %v", ErrBadRequest, err)
	}
	if r.Direction != DirDownload && r.Direction != DirUpload {
		return r, fmt.Errorf("%w: direction %d; 0 downloads, 1 uploads", ErrBadRequest, r.Direction)
	}
	r.Path = wire.TrimFilePath(r.Path)
	if err := CheckPath(r.Path); err != nil {
		return r, err
	}
	if x := r.Tether; x != nil {
		switch {
		case x.V < 1:
			return r, fmt.Errorf("%w: tether.v %d; this device speaks version %d", ErrBadRequest, x.V, Version)
		case x.Offset < 0 || x.Size < 0:
			return r, fmt.Errorf("%w: negative offset or size", ErrBadRequest)
		case x.Offset > 0 && x.Offset > x.Size:
			return r, fmt.Errorf("%w: offset %d beyond the expected size %d", ErrBadRequest, x.Offset, x.Size)
		case x.Mode > 0o7777:
			return r, fmt.Errorf("%w: mode %o is not permission bits", ErrBadRequest, x.Mode)
		case x.SHA256 != "" && !isSHA256(x.SHA256):
			return r, fmt.Errorf("%w: sha256 must be 64 lowercase hex digits", ErrBadRequest)
		case x.Name != "" && checkName(x.Name) != nil:
			return r, fmt.Errorf("%w: name %q must be one path component", ErrBadRequest, x.Name)
		}
	}
	return r, nil
}

// CheckPath accepts an absolute, canonical path (wire.CheckFilePath):
// non-canonical paths are refused rather than cleaned, so that what a
// policy matched is what is opened.
func CheckPath(p string) error {
	if err := wire.CheckFilePath(p); err != nil {
		return fmt.Errorf("%w: %s", ErrBadRequest, strings.TrimPrefix(err.Error(), wire.ErrBadFileRequest.Error()+": "))
	}
	return nil
}

func checkName(n string) error {
	if n == "" || n == "." || n == ".." || len(n) > MaxName || strings.ContainsAny(n, "/\x00") {
		return fmt.Errorf("%w: %q is not a file name", ErrBadRequest, n)
	}
	return nil
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ParseAnswer decodes our OK payload. An empty payload is a qbee-v1
// device, reported as legacy.
func ParseAnswer(payload []byte) (a Answer, legacy bool, err error) {
	if len(payload) == 0 {
		return a, true, nil
	}
	if err := json.Unmarshal(payload, &a); err != nil {
		return a, false, fmt.Errorf("%w: the device's answer is not JSON: %v", ErrBadRequest, err)
	}
	if a.V < 1 || a.Offset < 0 || a.Size < 0 {
		return a, false, fmt.Errorf("%w: the device's answer is out of range: %s", ErrBadRequest, payload)
	}
	return a, false, nil
}

// parseTrailer decodes a trailer and checks its fields.
func parseTrailer(p []byte) (Trailer, error) {
	var t Trailer
	if err := json.Unmarshal(p, &t); err != nil {
		return t, fmt.Errorf("%w: trailer is not JSON: %v", ErrFrame, err)
	}
	if t.Size < 0 || !isSHA256(t.SHA256) {
		// Its fields, not the frame: a frame holds up to 64 KiB of the
		// peer's text.
		return t, fmt.Errorf("%w: trailer out of range: size %d, sha256 of %d characters; want a size of 0 or more and 64 hexadecimal digits", ErrFrame, t.Size, len(t.SHA256))
	}
	return t, nil
}

func sumHex(b []byte) string { return hex.EncodeToString(b) }

// frameWriter writes raw-mode frames. Data frames are gathered in buf so
// that several go out in one write.
type frameWriter struct {
	w   io.Writer
	buf []byte
}

const frameBuf = 4 * (maxFrame + 3)

func newFrameWriter(w io.Writer) *frameWriter {
	return &frameWriter{w: w, buf: make([]byte, 0, frameBuf)}
}

// ReadFrom frames everything r yields as data frames, until r's EOF.
func (fw *frameWriter) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if cap(fw.buf)-len(fw.buf) < 3+1 {
			if err := fw.flush(); err != nil {
				return total, err
			}
		}
		hdr := len(fw.buf)
		room := min(cap(fw.buf)-hdr-3, maxFrame)
		fw.buf = fw.buf[:hdr+3+room]
		n, err := io.ReadAtLeast(r, fw.buf[hdr+3:], 1)
		fw.buf = fw.buf[:hdr+3+n]
		if n > 0 {
			fw.buf[hdr] = byte(FrameData)
			binary.BigEndian.PutUint16(fw.buf[hdr+1:], uint16(n))
			total += int64(n)
		} else {
			fw.buf = fw.buf[:hdr]
		}
		if err != nil {
			if err == io.EOF {
				return total, nil
			}
			return total, err
		}
		if len(fw.buf) == cap(fw.buf) {
			if err := fw.flush(); err != nil {
				return total, err
			}
		}
	}
}

// dataWriter frames what is written to it as data frames (the gzip
// stream of a compressed raw body).
type dataWriter struct{ fw *frameWriter }

func (d dataWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if cap(d.fw.buf)-len(d.fw.buf) < 3+1 {
			if err := d.fw.flush(); err != nil {
				return written, err
			}
		}
		n := min(len(p), cap(d.fw.buf)-len(d.fw.buf)-3, maxFrame)
		hdr := len(d.fw.buf)
		d.fw.buf = append(d.fw.buf, byte(FrameData), 0, 0)
		binary.BigEndian.PutUint16(d.fw.buf[hdr+1:], uint16(n))
		d.fw.buf = append(d.fw.buf, p[:n]...)
		p, written = p[n:], written+n
	}
	return written, nil
}

// end writes a final frame (trailer or error) and flushes.
func (fw *frameWriter) end(t FrameType, payload []byte) error {
	var err error
	if fw.buf, err = wire.AppendMessage(fw.buf, wire.MsgType(t), payload); err != nil {
		return err
	}
	return fw.flush()
}

func (fw *frameWriter) flush() error {
	if len(fw.buf) == 0 {
		return nil
	}
	_, err := fw.w.Write(fw.buf)
	fw.buf = fw.buf[:0]
	if err != nil {
		return &sendError{err}
	}
	return nil
}

// sendError is a failed write to the stream, as opposed to a failed read
// of the file being sent.
type sendError struct{ err error }

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// frameReader reads the data of a raw body and stops at its last frame.
// Read returns io.EOF after a trailer (Trailer then holds it), and the
// sender's reason after an error frame.
type frameReader struct {
	r       io.Reader
	left    int // data bytes left in the current frame
	done    bool
	err     error
	trailer Trailer
	hdr     [3]byte
}

// errEndedEarly marks a raw body whose stream ended (the sender closed
// it) before the last frame: the sender went away, as when its connection
// is lost. Its message is empty so that the error reads as before.
var errEndedEarly = errors.New("")

// RemoteFrameError is the reason of an error frame.
type RemoteFrameError struct{ Reason string }

func (e *RemoteFrameError) Error() string { return e.Reason }

func (fr *frameReader) Read(p []byte) (int, error) {
	for fr.left == 0 {
		if fr.done {
			return 0, fr.err
		}
		if err := fr.next(); err != nil {
			fr.done, fr.err = true, err
			return 0, err
		}
	}
	n, err := fr.r.Read(p[:min(len(p), fr.left)])
	fr.left -= n
	if err == io.EOF {
		err = fmt.Errorf("%w: the stream ended inside a data frame%w", ErrFrame, errEndedEarly)
	}
	if err != nil {
		fr.done, fr.err = true, err
	}
	return n, err
}

func (fr *frameReader) next() error {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("%w: the stream ended before the trailer%w", ErrFrame, errEndedEarly)
		}
		return err
	}
	n := int(binary.BigEndian.Uint16(fr.hdr[1:]))
	switch t := FrameType(fr.hdr[0]); t {
	case FrameData:
		fr.left = n
		return nil
	case FrameTrailer, FrameError:
		p := make([]byte, n)
		if _, err := io.ReadFull(fr.r, p); err != nil {
			return fmt.Errorf("%w: the stream ended inside the %v frame%w", ErrFrame, t, errEndedEarly)
		}
		tr, err := lastFrame(t, p)
		if err != nil {
			return err
		}
		fr.trailer = tr
		return io.EOF
	default:
		return unknownFrame(t)
	}
}

// lastFrame reads the payload of the frame that ends a raw body: the
// trailer, or the reason of an error frame as a *RemoteFrameError.
func lastFrame(t FrameType, p []byte) (Trailer, error) {
	if t == FrameError {
		return Trailer{}, &RemoteFrameError{Reason: string(p)}
	}
	return parseTrailer(p)
}

func unknownFrame(t FrameType) error {
	return fmt.Errorf("%w: unknown frame type 0x%02x", ErrFrame, uint8(t))
}

// frameSink is frameReader for a stream that hands over the buffers it
// received (transport.Stream.WriteTo): the bytes of the data frames go to
// data straight from those buffers, without a copy (data must not keep
// them: the stream reuses each once Write returns). Write fails with
// errBodyEnd once the trailer is read (trailer then holds it), with the
// sender's reason after an error frame, and with data's error; it reads
// nothing after the last frame. end tells how the body ended.
type frameSink struct {
	data    func([]byte) error
	hdr     [3]byte
	nhdr    int       // bytes of hdr received
	left    int       // data bytes left in the current data frame
	lastT   FrameType // the type of the last frame, once its header is in
	last    []byte    // its payload, as it arrives (capacity: its length)
	err     error     // set once the body ended or failed
	trailer Trailer
}

// errBodyEnd stops a stream's WriteTo after the trailer of a raw body.
var errBodyEnd = errors.New("files: the raw body ended")

func (s *frameSink) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && s.err == nil {
		switch {
		case s.left > 0:
			k := min(len(p), s.left)
			if err := s.data(p[:k]); err != nil {
				s.err = err
				return n - len(p), err
			}
			s.left -= k
			p = p[k:]
		case s.last != nil:
			k := min(len(p), cap(s.last)-len(s.last))
			s.last = append(s.last, p[:k]...)
			p = p[k:]
			if len(s.last) == cap(s.last) {
				s.finish()
			}
		default:
			k := copy(s.hdr[s.nhdr:], p)
			s.nhdr += k
			p = p[k:]
			if s.nhdr == len(s.hdr) {
				s.nhdr = 0
				s.header()
			}
		}
	}
	if s.err != nil {
		return n - len(p), s.err
	}
	return n, nil
}

// header starts the frame whose header is in hdr.
func (s *frameSink) header() {
	n := int(binary.BigEndian.Uint16(s.hdr[1:]))
	switch t := FrameType(s.hdr[0]); t {
	case FrameData:
		s.left = n
	case FrameTrailer, FrameError:
		s.lastT, s.last = t, make([]byte, 0, n)
		if n == 0 {
			s.finish()
		}
	default:
		s.err = unknownFrame(t)
	}
}

// finish reads the last frame, whose payload is all in.
func (s *frameSink) finish() {
	tr, err := lastFrame(s.lastT, s.last)
	if err == nil {
		s.trailer, err = tr, errBodyEnd
	}
	s.err = err
}

// end returns how the body ended once the stream's WriteTo returned
// werr: nil after a trailer, the sink's own error, the stream's, or
// ErrFrame when the stream ended before the last frame.
func (s *frameSink) end(werr error) error {
	switch {
	case s.err == errBodyEnd:
		return nil
	case s.err != nil:
		return s.err
	case werr != nil:
		return werr
	case s.left > 0:
		return fmt.Errorf("%w: the stream ended inside a data frame", ErrFrame)
	case s.last != nil:
		return fmt.Errorf("%w: the stream ended inside the %v frame", ErrFrame, s.lastT)
	}
	return fmt.Errorf("%w: the stream ended before the trailer", ErrFrame)
}
