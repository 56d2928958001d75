package cli

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// TestLinePrefixer: lines cut anywhere come out whole and prefixed, a
// line too long to hold goes out in pieces of fleetLineMax, and flush
// ends a line the device did not.
func TestLinePrefixer(t *testing.T) {
	var out bytes.Buffer
	p := &linePrefixer{w: &out, mu: &sync.Mutex{}, prefix: "d1: "}
	for _, s := range []string{"a", "b\nc", "\n\nd"} {
		if n, err := p.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got, want := out.String(), "d1: ab\nd1: c\nd1: \n"; got != want {
		t.Fatalf("before flush: %q; want %q", got, want)
	}
	p.flush()
	p.flush()
	if got, want := out.String(), "d1: ab\nd1: c\nd1: \nd1: d\n"; got != want {
		t.Fatalf("after flush: %q; want %q", got, want)
	}

	out.Reset()
	long := strings.Repeat("x", fleetLineMax+10)
	_, _ = p.Write([]byte(long))
	p.flush()
	if got, want := out.String(), "d1: "+long[:fleetLineMax]+"\nd1: "+long[fleetLineMax:]+"\n"; got != want {
		t.Fatalf("a long line came out as %d bytes; want %d in two lines", len(got), len(want))
	}
}

// TestCapBuffer: a device's output in -o json keeps its first
// fleetOutputMax bytes and says that there was more.
func TestCapBuffer(t *testing.T) {
	var c capBuffer
	for range 3 {
		if n, err := c.Write(make([]byte, fleetOutputMax/2+1)); n != fleetOutputMax/2+1 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if c.b.Len() != fleetOutputMax || !c.cut {
		t.Fatalf("kept %d bytes, cut %v; want %d, true", c.b.Len(), c.cut, fleetOutputMax)
	}
	var small capBuffer
	_, _ = small.Write([]byte("ok\n"))
	if small.b.String() != "ok\n" || small.cut {
		t.Fatalf("a short output: %q, cut %v", small.b.String(), small.cut)
	}
}
