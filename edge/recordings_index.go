package edge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/internal/asciicast"
	"github.com/tetherhq/tether/transport/wire"
)

// This file is the edge's index of the recordings in its directory
// (RecordingConfig.Dir): YYYY/MM/DD/<device>/<edge>-<16 hex>.cast. It reads
// the header line of each file and the last event of its tail, and keeps
// them while the file's size and time do not change.

// The index's bounds.
const (
	// maxCastHeader bounds a recording's header line.
	maxCastHeader = 64 << 10
	// maxCastTail bounds the tail read for the last event's time.
	maxCastTail = 64 << 10
	// maxIndexedFiles bounds the files one scan looks at.
	maxIndexedFiles = 200_000
	// maxRecordingText bounds the command and the title in a listing.
	maxRecordingText = 1024
	// castExt is a recording's file name extension.
	castExt = ".cast"
)

// recordingInfo is one entry of GET /api/recordings (docs/api.md).
type recordingInfo struct {
	ID       string    `json:"id"`
	Edge     string    `json:"edge"`
	Device   string    `json:"device"`
	Client   string    `json:"client"`
	Session  string    `json:"session"`
	Command  string    `json:"command"`
	Title    string    `json:"title"`
	Start    time.Time `json:"start"`
	Duration float64   `json:"duration"` // seconds
	Bytes    int64     `json:"bytes"`
	Width    int       `json:"width"`
	Height   int       `json:"height"`
}

// recordingEdge returns the edge part of a recording ID: everything
// before the last '-'.
func recordingEdge(id string) string {
	if i := strings.LastIndexByte(id, '-'); i > 0 {
		return id[:i]
	}
	return ""
}

// recordingIndex lists and finds the recordings under dir. A nil index
// (no recording directory) holds none.
type recordingIndex struct {
	dir string
	log *slog.Logger

	mu sync.Mutex
	// mu guards the following.
	files map[string]*indexedFile // by path
	byID  map[string]string       // path by recording ID
}

// indexedFile is what the index knows of one file, valid while its size
// and modification time stay the same.
type indexedFile struct {
	size int64
	mod  time.Time
	info recordingInfo
	ok   bool // false: malformed, skipped until it changes
}

func newRecordingIndex(dir string, log *slog.Logger) *recordingIndex {
	return &recordingIndex{dir: dir, log: log, files: map[string]*indexedFile{}, byID: map[string]string{}}
}

// castFile is a file the scan found where a recording belongs.
type castFile struct {
	path, device, id string
	day              time.Time
}

// walk lists the files that have a recording's place and name, skipping
// the days before notBefore. It never follows a symbolic link: only
// directories and regular files as ReadDir sees them (without following)
// count.
func (x *recordingIndex) walk(notBefore time.Time) []castFile {
	var out []castFile
	dirs := func(p string, ok func(string) bool) []string {
		ents, err := os.ReadDir(p)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				x.log.Debug("recordings: cannot read a directory", "dir", p, "err", err)
			}
			return nil
		}
		var names []string
		for _, e := range ents {
			if e.IsDir() && ok(e.Name()) {
				names = append(names, e.Name())
			}
		}
		return names
	}
	digits := func(n int) func(string) bool {
		return func(s string) bool {
			if len(s) != n {
				return false
			}
			_, err := strconv.Atoi(s)
			return err == nil
		}
	}
	cutoff := notBefore.UTC().AddDate(0, 0, -1) // a day's margin for the recorder's clock and zone
	for _, y := range dirs(x.dir, digits(4)) {
		for _, m := range dirs(filepath.Join(x.dir, y), digits(2)) {
			for _, d := range dirs(filepath.Join(x.dir, y, m), digits(2)) {
				day, err := time.Parse("2006/01/02", y+"/"+m+"/"+d)
				if err != nil || !notBefore.IsZero() && day.Before(cutoff.Truncate(24*time.Hour)) {
					continue
				}
				dayDir := filepath.Join(x.dir, y, m, d)
				for _, name := range dirs(dayDir, func(s string) bool { d, ok := deviceOfDir(s); return ok && certs.ValidDeviceID(d) == nil }) {
					dev, _ := deviceOfDir(name)
					ents, err := os.ReadDir(filepath.Join(dayDir, name))
					if err != nil {
						continue
					}
					for _, e := range ents {
						id, ok := strings.CutSuffix(e.Name(), castExt)
						if !ok || !e.Type().IsRegular() || !wire.ValidRecordingID(id) {
							continue
						}
						out = append(out, castFile{path: filepath.Join(dayDir, name, e.Name()), device: dev, id: id, day: day})
						if len(out) >= maxIndexedFiles {
							x.log.Warn("recordings: more files than one scan reads; the oldest are not listed", "max", maxIndexedFiles)
							return out
						}
					}
				}
			}
		}
	}
	return out
}

// scan brings the index up to date with the files of the days from
// notBefore on (all of them when it is zero) and returns the recordings
// among them.
func (x *recordingIndex) scan(notBefore time.Time) []recordingInfo {
	if x == nil {
		return nil
	}
	found := x.walk(notBefore)
	seen := make(map[string]bool, len(found))
	var out []recordingInfo
	for _, f := range found {
		st, err := os.Lstat(f.path)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		seen[f.path] = true
		x.mu.Lock()
		c := x.files[f.path]
		x.mu.Unlock()
		if c == nil || c.size != st.Size() || !c.mod.Equal(st.ModTime()) {
			c = &indexedFile{size: st.Size(), mod: st.ModTime()}
			info, err := readRecordingInfo(f.path, f.device, f.id, st)
			if err != nil {
				x.log.Debug("recordings: skipping a malformed file", "path", f.path, "err", err)
			} else {
				c.info, c.ok = info, true
			}
			x.mu.Lock()
			x.files[f.path] = c
			if c.ok {
				x.byID[f.id] = f.path
			}
			x.mu.Unlock()
		}
		if c.ok {
			out = append(out, c.info)
		}
	}
	if notBefore.IsZero() {
		// A whole scan: forget the files that are gone.
		x.mu.Lock()
		for p, c := range x.files {
			if seen[p] {
				continue
			}
			delete(x.files, p)
			if c.ok && x.byID[c.info.ID] == p {
				delete(x.byID, c.info.ID)
			}
		}
		x.mu.Unlock()
	}
	return out
}

// find returns the recording id and its file's path.
func (x *recordingIndex) find(id string) (recordingInfo, string, bool) {
	if x == nil || !wire.ValidRecordingID(id) {
		return recordingInfo{}, "", false
	}
	look := func() (recordingInfo, string, bool) {
		x.mu.Lock()
		defer x.mu.Unlock()
		p, ok := x.byID[id]
		if !ok {
			return recordingInfo{}, "", false
		}
		c := x.files[p]
		if c == nil || !c.ok {
			return recordingInfo{}, "", false
		}
		return c.info, p, true
	}
	if info, p, ok := look(); ok {
		if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() {
			return info, p, true
		}
	}
	x.scan(time.Time{})
	return look()
}

// readRecordingInfo reads a recording's header line and the time of its
// last event. The file's place gives its device and ID, which the header
// must repeat.
func readRecordingInfo(path, device, id string, st os.FileInfo) (recordingInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return recordingInfo{}, err
	}
	defer f.Close()
	buf := make([]byte, min(st.Size(), maxCastHeader))
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return recordingInfo{}, err
	}
	end := bytes.IndexByte(buf[:n], '\n')
	if end < 0 {
		return recordingInfo{}, fmt.Errorf("no header line within %d bytes", maxCastHeader)
	}
	var h asciicast.Header
	if err := json.Unmarshal(buf[:end], &h); err != nil {
		return recordingInfo{}, fmt.Errorf("header: %v", err)
	}
	switch {
	case h.Version != asciicast.Version:
		return recordingInfo{}, fmt.Errorf("asciicast version %d; want %d", h.Version, asciicast.Version)
	case h.Tether == nil:
		return recordingInfo{}, errors.New("the header has no tether object")
	case h.Tether.Device != device:
		return recordingInfo{}, fmt.Errorf("the header names device %q, its directory %q", h.Tether.Device, device)
	case h.Tether.ID != id:
		return recordingInfo{}, fmt.Errorf("the header names recording %q, its file %q", h.Tether.ID, id)
	}
	info := recordingInfo{ID: id, Edge: recordingEdge(id), Device: device, Client: h.Tether.Client,
		Session: h.Tether.Session, Command: cutText(h.Tether.Command), Title: cutText(h.Title),
		Start: time.Unix(h.Timestamp, 0).UTC(), Duration: h.Duration, Bytes: st.Size(), Width: h.Width, Height: h.Height}
	if h.Timestamp == 0 {
		info.Start = st.ModTime().UTC().Truncate(time.Second)
	}
	if t, ok := lastEventTime(f, int64(end+1), st.Size()); ok {
		info.Duration = t
	}
	return info, nil
}

// lastEventTime returns the time of the last complete event in the file's
// tail, from offset from on.
func lastEventTime(f *os.File, from, size int64) (float64, bool) {
	start := max(from, size-maxCastTail)
	if start >= size {
		return 0, false
	}
	buf := make([]byte, size-start)
	n, err := f.ReadAt(buf, start)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, false
	}
	lines := bytes.Split(buf[:n], []byte{'\n'})
	if start > from {
		lines = lines[1:] // the first is likely cut
	}
	for _, l := range slices.Backward(lines) {
		var ev []json.RawMessage
		if len(bytes.TrimSpace(l)) == 0 || json.Unmarshal(l, &ev) != nil || len(ev) != 3 {
			continue
		}
		var t float64
		if json.Unmarshal(ev[0], &t) == nil && t >= 0 {
			return t, true
		}
	}
	return 0, false
}

// cutText bounds a header's text for listings.
func cutText(s string) string {
	if len(s) <= maxRecordingText {
		return s
	}
	return truncate(s, maxRecordingText)
}

// deviceOfDir is the device whose recordings a directory of that name
// holds: the inverse of recordingDeviceDir.
func deviceOfDir(name string) (string, bool) {
	dev, err := url.PathUnescape(name)
	if err != nil || recordingDeviceDir(dev) != name {
		return "", false
	}
	return dev, true
}
