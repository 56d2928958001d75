package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
)

// FileRequest is the part of a file transfer (0x20) payload that every
// qbee-v1 peer reads: {"direction":0|1,"path":"/abs/path"}. Other fields
// (our "tether" extension) are ignored here.
type FileRequest struct {
	// Direction is 0 to download from the device, 1 to upload to it.
	Direction int `json:"direction"`
	// Path is absolute and canonical (CheckFilePath).
	Path string `json:"path"`
}

// File transfer path bounds.
const (
	// MaxFilePath bounds a file transfer's path, in bytes.
	MaxFilePath = 4096
	// MaxFileName bounds one component of it, in bytes.
	MaxFileName = 255
)

// ErrBadFileRequest: a file transfer payload that does not parse, or whose
// path is not absolute and canonical.
var ErrBadFileRequest = errors.New("wire: bad file transfer request")

// DecodeFileRequest parses a file transfer payload and checks its
// direction and path.
func DecodeFileRequest(payload []byte) (FileRequest, error) {
	var r FileRequest
	if len(payload) == 0 {
		return r, fmt.Errorf("%w: empty payload; send {\"direction\":0|1,\"path\":\"/abs/path\"}", ErrBadFileRequest)
	}
	if err := json.Unmarshal(payload, &r); err != nil {
		return r, fmt.Errorf("%w: not JSON: %v", ErrBadFileRequest, err)
	}
	if r.Direction != 0 && r.Direction != 1 {
		return r, fmt.Errorf("%w: direction %d; 0 downloads, 1 uploads", ErrBadFileRequest, r.Direction)
	}
	r.Path = TrimFilePath(r.Path)
	return r, CheckFilePath(r.Path)
}

// TrimFilePath drops one trailing '/' ("/data/in/" names /data/in), which
// people type for directories; CheckFilePath refuses any other form.
func TrimFilePath(p string) string {
	if len(p) > 1 && p[len(p)-1] == '/' {
		return p[:len(p)-1]
	}
	return p
}

// CheckFilePath accepts an absolute, canonical path: it starts with '/',
// has no empty, "." or ".." component, no trailing '/' (TrimFilePath drops
// one first), no NUL, and is at most MaxFilePath bytes. Other paths are refused, not cleaned, so that
// what a policy matched is what the device opens.
func CheckFilePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty path; give an absolute path such as /var/log/syslog", ErrBadFileRequest)
	case len(p) > MaxFilePath:
		return fmt.Errorf("%w: path longer than %d bytes", ErrBadFileRequest, MaxFilePath)
	case p[0] != '/':
		return fmt.Errorf("%w: path %q is relative; give an absolute path such as /var/log/syslog", ErrBadFileRequest, p)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("%w: path holds a NUL byte", ErrBadFileRequest)
	case p == "/":
		return nil
	}
	for _, c := range strings.Split(p[1:], "/") {
		switch {
		case c == "":
			return fmt.Errorf("%w: path %q has an empty component or a trailing '/'; give it in canonical form (%s)", ErrBadFileRequest, p, path.Clean(p))
		case c == "." || c == "..":
			return fmt.Errorf("%w: path %q has a %q component; give it in canonical form, without . or ..", ErrBadFileRequest, p, c)
		case len(c) > MaxFileName:
			return fmt.Errorf("%w: a component of %q is longer than %d bytes", ErrBadFileRequest, p, MaxFileName)
		}
	}
	return nil
}

// MatchFilePath returns the shortest of p and its parent directories that
// one of globs matches (path.Match syntax: '*' does not cross '/'), and
// whether there is one. A glob "/var/log" so admits /var/log and
// everything beneath it.
func MatchFilePath(globs []string, p string) (string, bool) {
	if len(globs) == 0 {
		return "", false
	}
	prefixes := []string{"/"}
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			prefixes = append(prefixes, p[:i])
		}
	}
	for _, c := range prefixes {
		for _, g := range globs {
			if m, _ := path.Match(g, c); m {
				return c, true
			}
		}
	}
	return "", false
}

// CheckFileGlobs reports the first glob that is not an absolute, canonical
// pattern in path.Match syntax.
func CheckFileGlobs(globs []string) error {
	for _, g := range globs {
		if !strings.HasPrefix(g, "/") {
			return fmt.Errorf("%q is not an absolute path", g)
		}
		if _, err := path.Match(g, "/"); err != nil {
			return fmt.Errorf("%q: %v", g, err)
		}
		if g != "/" && path.Clean(g) != g {
			return fmt.Errorf("%q is not in canonical form (%s)", g, path.Clean(g))
		}
	}
	return nil
}
