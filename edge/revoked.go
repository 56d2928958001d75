package edge

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Revocations is a set of revoked certificate serial numbers in the form
// certs.SerialHex gives: lowercase hex without leading zeros.
type Revocations map[string]struct{}

// maxRevocationLine bounds one line of a revocation list.
const maxRevocationLine = 1024

// ParseRevocations reads one serial number in hex per line. Blank lines and
// lines starting with '#' are skipped; "0x" prefixes, ':' separators, case
// and leading zeros are accepted and normalized.
func ParseRevocations(r io.Reader) (Revocations, error) {
	out := make(Revocations)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxRevocationLine)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		n, err := normalizeSerial(s)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		out[n] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %v", line+1, err)
	}
	return out, nil
}

func normalizeSerial(s string) (string, error) {
	orig := s
	s = strings.ToLower(strings.ReplaceAll(s, ":", ""))
	s = strings.TrimPrefix(s, "0x")
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", fmt.Errorf("%q is not a hex serial number", orig)
		}
	}
	s = strings.TrimLeft(s, "0")
	if s == "" {
		s = "0"
	}
	return s, nil
}

// Has reports whether serial (as certs.SerialHex gives it) is revoked.
func (r Revocations) Has(serial string) bool {
	_, ok := r[serial]
	return ok
}
