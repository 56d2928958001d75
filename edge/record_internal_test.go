package edge

import (
	"strings"
	"testing"
)

func TestRecordingDeviceDir(t *testing.T) {
	tests := []struct{ id, want string }{
		{"gw-17", "gw-17"},
		{"a.b:c_d", "a.b:c_d"},
		{"..", "%2E%2E"},
		{".", "%2E"},
		{".hidden.x", "%2Ehidden.x"},
		{"a/b", "a%2Fb"},
		{"", "%00"},
	}
	for _, tc := range tests {
		if got := recordingDeviceDir(tc.id); got != tc.want {
			t.Errorf("recordingDeviceDir(%q) = %q; want %q", tc.id, got, tc.want)
		}
	}
}

// FuzzRecordingDeviceDir: a device's directory name is one safe path
// component, and the sweep reads the device back from it.
func FuzzRecordingDeviceDir(f *testing.F) {
	for _, s := range []string{"gw-17", "..", ".x", "a:b", "a%2Eb", "é/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		d := recordingDeviceDir(id)
		if d == "" || d == "." || d == ".." || strings.HasPrefix(d, ".") || strings.ContainsAny(d, "/\\\x00") {
			t.Fatalf("recordingDeviceDir(%q) = %q: not a safe path component", id, d)
		}
		if id == "" {
			return
		}
		if got := deviceOfRecording("2026/12/02/" + d + "/edge-0123456789abcdef.cast"); got != id {
			t.Fatalf("device %q: directory %q reads back as %q", id, d, got)
		}
	})
}

// TestDeviceOfDir: the recordings index reads the device back from the
// directory the recorder made, and refuses names the recorder never
// makes, so that one device has one directory.
func TestDeviceOfDir(t *testing.T) {
	for _, id := range []string{"gw-17", ".hidden", "..", "a:b.c"} {
		got, ok := deviceOfDir(recordingDeviceDir(id))
		if !ok || got != id {
			t.Errorf("deviceOfDir(recordingDeviceDir(%q)) = %q, %v; want %q, true", id, got, ok, id)
		}
	}
	for _, name := range []string{"gw%2D17", "%2ehidden", "..", ".x", "a%2"} {
		if got, ok := deviceOfDir(name); ok && got != "" {
			t.Errorf("deviceOfDir(%q) = %q, true; want it refused", name, got)
		}
	}
}
