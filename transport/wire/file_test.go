package wire

import (
	"path"
	"testing"
)

func TestMatchFilePath(t *testing.T) {
	globs := []string{"/var/log", "/home/*/out", "/srv/data.bin"}
	for _, tc := range []struct {
		path, root string
	}{
		{"/var/log", "/var/log"},
		{"/var/log/app/x", "/var/log"},
		{"/var/logs", ""},
		{"/home/bob/out/r.csv", "/home/bob/out"},
		{"/home/bob/in/out", ""},
		{"/srv/data.bin", "/srv/data.bin"},
		{"/", ""},
	} {
		root, ok := MatchFilePath(globs, tc.path)
		if root != tc.root || ok != (tc.root != "") {
			t.Errorf("MatchFilePath(%q) = %q, %v; want %q", tc.path, root, ok, tc.root)
		}
	}
	if _, ok := MatchFilePath([]string{"/"}, "/etc/shadow"); !ok {
		t.Error(`"/" does not admit everything`)
	}
}

func FuzzDecodeFileRequest(f *testing.F) {
	for _, s := range []string{`{"direction":0,"path":"/var/log"}`, `{"direction":1,"path":"/a/./b"}`, `{"path":"rel"}`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeFileRequest(b)
		if err != nil {
			return
		}
		if r.Path != "/" && path.Clean(r.Path) != r.Path || r.Path[0] != '/' {
			t.Fatalf("accepted the non-canonical path %q", r.Path)
		}
		if r.Direction != 0 && r.Direction != 1 {
			t.Fatalf("accepted direction %d", r.Direction)
		}
	})
}
