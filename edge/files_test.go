package edge

import (
	"strings"
	"testing"

	"github.com/tetherhq/tether/transport/wire"
)

func TestFilePolicy(t *testing.T) {
	p, err := NewStaticPolicy([]ClientRule{
		{Name: "any", TokenSHA256: HashToken("a"), Devices: []string{"*"}, Files: true},
		{Name: "logs", TokenSHA256: HashToken("b"), Devices: []string{"*"}, Files: true,
			FileRules: &FileRules{Read: []string{"/var/log", "/home/*/out"}, Write: []string{"/data/in"}}},
		{Name: "none", TokenSHA256: HashToken("c"), Devices: []string{"*"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	file := func(dir int, path string) Request {
		return Request{Type: wire.MsgFileTransfer, File: &wire.FileRequest{Direction: dir, Path: path}}
	}
	for _, tc := range []struct {
		name, client string
		req          Request
		ok           bool
	}{
		{"files: true leaves paths to the device", "any", file(1, "/etc/passwd"), true},
		{"a read root", "logs", file(0, "/var/log"), true},
		{"beneath a read root", "logs", file(0, "/var/log/app/x.log"), true},
		{"a glob root", "logs", file(0, "/home/bob/out/report.csv"), true},
		{"a glob does not cross /", "logs", file(0, "/home/bob/x/out/report.csv"), false},
		{"a sibling with the same prefix", "logs", file(0, "/var/logs/x"), false},
		{"upload beneath a read root only", "logs", file(1, "/var/log/x"), false},
		{"upload beneath a write root", "logs", file(1, "/data/in/fw.img"), true},
		{"download beneath a write root only", "logs", file(0, "/data/in/fw.img"), false},
		{"no files at all", "none", file(0, "/var/log"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Authorize(Identity{Name: tc.client}, DeviceRef{ID: "d1"}, tc.req)
			if (err == nil) != tc.ok {
				t.Fatalf("Authorize = %v; want allowed %v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), tc.req.File.Path) {
				t.Errorf("denial %q does not name the path", err)
			}
		})
	}
	if _, err := NewStaticPolicy([]ClientRule{{Name: "x", Devices: []string{"*"}, Files: true,
		FileRules: &FileRules{Read: []string{"var/log"}}}}); err == nil {
		t.Error("a relative file glob was accepted")
	}
}

func TestFileRequestsMustBeCanonical(t *testing.T) {
	for _, tc := range []struct {
		payload string
		want    string // "" accepts
	}{
		{`{"direction":0,"path":"/var/log/syslog"}`, ""},
		{`{"direction":1,"path":"/data/in","tether":{"v":1,"raw":true,"size":3}}`, ""},
		{`{"direction":0,"path":"var/log"}`, "relative"},
		{`{"direction":0,"path":"/var/log/../../etc/shadow"}`, `".." component`},
		{`{"direction":0,"path":"/var//log"}`, "canonical form (/var/log)"},
		{`{"direction":0,"path":"/var/log/"}`, ""},
		{`{"direction":0,"path":"/var/log//"}`, "canonical form"},
		{`{"direction":2,"path":"/var/log"}`, "direction 2"},
		{`not json`, "not JSON"},
	} {
		req, _, err := canonical(wire.Message{Type: wire.MsgFileTransfer, Payload: []byte(tc.payload)})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.payload, err)
		case tc.want == "" && req.File == nil:
			t.Errorf("%s: no File in the request", tc.payload)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v; want an error containing %q", tc.payload, err, tc.want)
		}
	}
	if got := fileOffset([]byte(`{"direction":0,"path":"/a","tether":{"v":1,"offset":42,"size":100}}`)); got != 42 {
		t.Errorf("fileOffset = %d; want 42", got)
	}
}
