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

// keyFile is a set of keys, each until a time, that a single edge keeps
// in a file as well as in memory, so that it outlives a restart: the web
// sign-outs (FileWebRevocations) and the ID tokens exchanged for
// certificates (FileExchangedTokens). A cluster keeps both in JetStream.
//
// The file is a line per key, "<key> <Unix second it ends>", appended and
// synced before add returns, so that what a caller was told is on disk.
// Opening it drops the keys that ended and rewrites it; so does an add
// once most of its lines are of ended keys. Keys are lower-case
// hexadecimal, 16 to 64 digits. The file is private to its owner (0600).
type keyFile struct {
	path string
	what string // "sign-outs", in errors

	mu sync.Mutex
	// mu guards the following.
	f     *os.File // appended to; nil once closed
	until map[string]time.Time
	lines int // in the file
	// torn: an append failed, and may have left part of its line (a
	// full disk writes what fits): the next add rewrites the file first,
	// or the next start would stop at that line.
	torn bool
}

// Bounds on a key file: it is read whole when the edge starts.
const (
	maxKeyFile     = 64 << 20
	maxKeyFileLine = 256
	// compactKeyFileAt: an add rewrites the file once it has this many
	// lines more than twice the live keys.
	compactKeyFileAt = 1024
)

// openKeyFile opens (or creates) the key file at path and reads the keys
// that have not ended. A file that cannot be read, or whose lines are not
// keys, is an error that names the line; only a last line cut short (the
// edge stopped while writing it, before it told anyone) is dropped.
func openKeyFile(path, what string) (*keyFile, error) {
	k := &keyFile{path: path, what: what}
	b, err := readBounded(path, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read the %s file: %w", what, err)
	}
	if k.until, err = parseKeyFile(b, time.Now()); err != nil {
		return nil, fmt.Errorf("%s file %s: %w; fix or remove that line", what, path, err)
	}
	if err := k.rewrite(); err != nil {
		return nil, err
	}
	return k, nil
}

// parseKeyFile parses the lines of a key file and keeps the keys that end
// after now. A last line without its newline is dropped.
func parseKeyFile(b []byte, now time.Time) (map[string]time.Time, error) {
	until := map[string]time.Time{}
	if i := bytes.LastIndexByte(b, '\n'); i+1 < len(b) {
		b = b[:i+1] // a line cut short by a stop mid-write
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, maxKeyFileLine), maxKeyFileLine)
	for n := 1; sc.Scan(); n++ {
		key, end, err := parseKeyLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if end.After(now) {
			until[key] = end
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("a line of more than %d bytes", maxKeyFileLine)
	}
	return until, nil
}

// parseKeyLine parses one line, "<key> <Unix second>".
func parseKeyLine(line string) (string, time.Time, error) {
	key, sec, ok := cutSpace(line)
	if !ok {
		return "", time.Time{}, errors.New(`not "<key> <Unix time>"`)
	}
	if !validStateKey(key) {
		return "", time.Time{}, errors.New("not a key (hexadecimal, 16 to 64 digits)")
	}
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || n <= 0 || n > maxUnixSecond {
		return "", time.Time{}, errors.New("not a Unix time in seconds")
	}
	return key, time.Unix(n, 0), nil
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

// validStateKey reports whether key has the form of the keys this edge
// keeps: the IDs it gives web sessions and the hashes of ID tokens, in
// lower-case hexadecimal.
func validStateKey(key string) bool {
	if len(key) < 16 || len(key) > 64 {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// rewrite replaces the file with the live keys (replaceFile); the new
// file takes the appends. The caller holds mu, or is openKeyFile.
func (k *keyFile) rewrite() error {
	var b bytes.Buffer
	for key, t := range k.until {
		fmt.Fprintf(&b, "%s %d\n", key, t.Unix())
	}
	f, err := replaceFile(k.path, b.Bytes())
	if err != nil {
		return fmt.Errorf("cannot write the %s file: %w", k.what, err)
	}
	if k.f != nil {
		k.f.Close()
	}
	k.f, k.lines = f, len(k.until)
	return nil
}

// add records key until until: on disk when it returns nil. With
// onlyNew, a key already there and not ended is left alone, and added
// reports false.
func (k *keyFile) add(key string, until time.Time, onlyNew bool) (added bool, err error) {
	if !validStateKey(key) {
		return false, fmt.Errorf("%q is not a key this edge gives", truncate(key, 70))
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.f == nil {
		return false, errors.New("the edge is shutting down")
	}
	now := time.Now()
	if t, ok := k.until[key]; onlyNew && ok && t.After(now) {
		return false, nil
	}
	for key, t := range k.until {
		if !t.After(now) {
			delete(k.until, key)
		}
	}
	if k.torn {
		if err := k.rewrite(); err != nil {
			return false, err
		}
		k.torn = false
	}
	line := fmt.Appendf(nil, "%s %d\n", key, until.Unix())
	_, err = k.f.Write(line)
	if err == nil {
		err = k.f.Sync()
	}
	if err != nil {
		k.torn = true
		return false, fmt.Errorf("cannot record it in the %s file: %w", k.what, err)
	}
	k.until[key] = until
	k.lines++
	if k.lines > 2*len(k.until)+compactKeyFileAt {
		// The key is on disk already; a failed rewrite leaves the longer
		// file, which the next add tries again.
		_ = k.rewrite()
	}
	return true, nil
}

// has reports whether key is there and has not ended, from memory.
func (k *keyFile) has(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.until[key]
	return ok && time.Now().Before(t)
}

// close closes the file; add fails from then on, has still answers.
func (k *keyFile) close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.f == nil {
		return nil
	}
	err := k.f.Close()
	k.f = nil
	return err
}

// FileWebRevocations is the WebRevocations of a single edge that keeps
// the sign-outs in a file as well as in memory, so that a session signed
// out stays signed out when the edge restarts (MemoryWebRevocations
// forgets it, and its cookie works again until it expires). The file is
// a line per sign-out, appended and synced before Revoke returns; see
// OpenWebRevocations.
type FileWebRevocations struct{ k *keyFile }

var _ WebRevocations = (*FileWebRevocations)(nil)

// OpenWebRevocations opens (or creates) the sign-outs file at path and
// reads the sign-outs that have not ended; the caller closes it. It is
// rewritten without the ended ones now, and once most of its lines are
// of ended ones. A file that cannot be read, or whose lines are not
// sign-outs, is an error that names the line (a removed line lets its
// session back in until its cookie expires); only a last line cut short
// by a stop mid-write is dropped. The file is private to its owner
// (0600).
func OpenWebRevocations(path string) (*FileWebRevocations, error) {
	k, err := openKeyFile(path, "sign-outs")
	if err != nil {
		return nil, err
	}
	return &FileWebRevocations{k: k}, nil
}

// Revoke implements WebRevocations: the sign-out is on disk when it
// returns nil. An error leaves the session valid, and the browser is told
// to retry.
func (r *FileWebRevocations) Revoke(_ context.Context, id string, until time.Time) error {
	_, err := r.k.add(id, until, false)
	return err
}

// Revoked implements WebRevocations, from memory.
func (r *FileWebRevocations) Revoked(_ context.Context, id string) (bool, error) {
	return r.k.has(id), nil
}

// Close closes the file; Revoke fails from then on, Revoked still
// answers.
func (r *FileWebRevocations) Close() error { return r.k.close() }

// FileExchangedTokens is the ExchangedTokens of a single edge that keeps
// the ID tokens exchanged for certificates in a file, so that a copy of
// one is refused after the edge restarts too, until the token expires.
// The file is a line per token (its hash), as OpenWebRevocations
// describes for sign-outs.
type FileExchangedTokens struct{ k *keyFile }

var _ ExchangedTokens = (*FileExchangedTokens)(nil)

// OpenExchangedTokens opens (or creates) the exchanged-tokens file at
// path, as OpenWebRevocations does the sign-outs file; the caller closes
// it.
func OpenExchangedTokens(path string) (*FileExchangedTokens, error) {
	k, err := openKeyFile(path, "exchanged ID tokens")
	if err != nil {
		return nil, err
	}
	return &FileExchangedTokens{k: k}, nil
}

// Claim implements ExchangedTokens: a fresh key is on disk when it
// returns true.
func (t *FileExchangedTokens) Claim(_ context.Context, key string, until time.Time) (bool, error) {
	return t.k.add(key, until, true)
}

// Close closes the file; Claim fails from then on.
func (t *FileExchangedTokens) Close() error { return t.k.close() }
