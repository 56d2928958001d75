package edge

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// FileWebRevocations is the WebRevocations of one edge, kept in a file as
// well as in memory, so that a session signed out stays signed out when
// the edge restarts (MemoryWebRevocations forgets it, and its cookie works
// again until it expires). A cluster shares its sign-outs in JetStream
// instead.
//
// The file is a line per sign-out, "<session ID> <Unix second it ends>",
// appended and synced before Revoke returns, so that a sign-out the
// browser was told of is on disk. Opening it drops the sign-outs that
// ended and rewrites it; so does a Revoke once most of its lines are of
// ended sign-outs. The file is private to its owner (0600).
type FileWebRevocations struct {
	path string

	mu sync.Mutex
	// mu guards the following.
	f     *os.File // appended to; nil once closed
	until map[string]time.Time
	lines int // in the file
}

// Bounds on the sign-outs file: it is read whole when the edge starts.
const (
	maxSignOutsFile = 64 << 20
	maxSignOutLine  = 256
	// compactSignOutsAt: a Revoke rewrites the file once it has this many
	// lines more than twice the live sign-outs.
	compactSignOutsAt = 1024
)

var _ WebRevocations = (*FileWebRevocations)(nil)

// OpenWebRevocations opens (or creates) the sign-outs file at path and
// reads the sign-outs that have not ended. The caller closes it. A file
// that cannot be read, or whose lines are not sign-outs, is an error that
// names the line; only a last line cut short (the edge stopped while
// writing it) is dropped.
func OpenWebRevocations(path string) (*FileWebRevocations, error) {
	r := &FileWebRevocations{path: path, until: map[string]time.Time{}}
	b, err := readBounded(path, maxSignOutsFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read the sign-outs file: %w", err)
	}
	if r.until, err = parseSignOuts(b, time.Now()); err != nil {
		return nil, fmt.Errorf("sign-outs file %s: %w; fix or remove that line (a removed sign-out lets its session back in until its cookie expires)", path, err)
	}
	if err := r.rewrite(); err != nil {
		return nil, err
	}
	return r, nil
}

// parseSignOuts parses the lines of a sign-outs file and keeps those that
// end after now. A last line without its newline is dropped.
func parseSignOuts(b []byte, now time.Time) (map[string]time.Time, error) {
	until := map[string]time.Time{}
	if i := bytes.LastIndexByte(b, '\n'); i+1 < len(b) {
		b = b[:i+1] // a line cut short by a stop mid-write
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, maxSignOutLine), maxSignOutLine)
	for n := 1; sc.Scan(); n++ {
		id, end, err := parseSignOut(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if end.After(now) {
			until[id] = end
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("a line of more than %d bytes", maxSignOutLine)
	}
	return until, nil
}

// parseSignOut parses one line, "<session ID> <Unix second>".
func parseSignOut(line string) (string, time.Time, error) {
	id, sec, ok := cutSpace(line)
	if !ok {
		return "", time.Time{}, errors.New(`not "<session ID> <Unix time>"`)
	}
	if !validWebSessionID(id) {
		return "", time.Time{}, errors.New("not a session ID (hexadecimal, 16 to 64 digits)")
	}
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || n <= 0 || n > maxUnixSecond {
		return "", time.Time{}, errors.New("not a Unix time in seconds")
	}
	return id, time.Unix(n, 0), nil
}

// maxUnixSecond bounds the times in the file (the year 9999).
const maxUnixSecond = 253402300799

func cutSpace(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			return s[:i], s[i+1:], i > 0 && i+1 < len(s)
		}
	}
	return "", "", false
}

// validWebSessionID reports whether id has the form of the IDs this edge
// gives web sessions: lower-case hexadecimal.
func validWebSessionID(id string) bool {
	if len(id) < 16 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// rewrite replaces the file with the live sign-outs (replaceFile); the
// new file takes the appends. The caller holds mu, or is
// OpenWebRevocations.
func (r *FileWebRevocations) rewrite() error {
	var b bytes.Buffer
	for id, t := range r.until {
		fmt.Fprintf(&b, "%s %d\n", id, t.Unix())
	}
	f, err := replaceFile(r.path, b.Bytes())
	if err != nil {
		return fmt.Errorf("cannot write the sign-outs file: %w", err)
	}
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.lines = f, len(r.until)
	return nil
}

// Revoke implements WebRevocations: the sign-out is on disk when it
// returns nil. An error leaves the session valid, and the browser is told
// to retry.
func (r *FileWebRevocations) Revoke(_ context.Context, id string, until time.Time) error {
	if !validWebSessionID(id) {
		return fmt.Errorf("session ID %q is not one this edge gives", truncate(id, 70))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return errors.New("the edge is shutting down")
	}
	now := time.Now()
	for k, t := range r.until {
		if !t.After(now) {
			delete(r.until, k)
		}
	}
	line := fmt.Appendf(nil, "%s %d\n", id, until.Unix())
	if _, err := r.f.Write(line); err != nil {
		return fmt.Errorf("cannot record the sign-out: %w", err)
	}
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("cannot record the sign-out: %w", err)
	}
	r.until[id] = until
	r.lines++
	if r.lines > 2*len(r.until)+compactSignOutsAt {
		// The sign-out is on disk already; a failed rewrite leaves the
		// longer file, which the next one tries again.
		_ = r.rewrite()
	}
	return nil
}

// Revoked implements WebRevocations, from memory.
func (r *FileWebRevocations) Revoked(_ context.Context, id string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.until[id]
	return ok && time.Now().Before(t), nil
}

// Close closes the file; Revoke fails from then on, Revoked still
// answers.
func (r *FileWebRevocations) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
