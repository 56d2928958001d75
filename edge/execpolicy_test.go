package edge

import (
	"errors"
	"strings"
	"testing"

	"github.com/tetherhq/tether/transport/wire"
)

// The exec right is its own: a shell right does not grant it, nor it a
// shell.
func TestStaticPolicyExec(t *testing.T) {
	p, err := NewStaticPolicy([]ClientRule{
		{Name: "ops", TokenSHA256: HashToken("tok-ops"), Devices: []string{"*"}, PTY: true},
		{Name: "ci", TokenSHA256: HashToken("tok-ci"), Devices: []string{"*"}, Exec: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	ops, _ := p.Authenticate("tok-ops")
	ci, _ := p.Authenticate("tok-ci")
	tests := []struct {
		name  string
		id    Identity
		typ   wire.MsgType
		allow bool
	}{
		{"pty right, exec", ops, wire.MsgExec, false},
		{"exec right, exec", ci, wire.MsgExec, true},
		{"exec right, pty", ci, wire.MsgPTY, false},
	}
	for _, tt := range tests {
		err := p.Authorize(tt.id, DeviceRef{ID: "d1"}, Request{Type: tt.typ})
		if (err == nil) != tt.allow {
			t.Errorf("%s: Authorize = %v; want allowed=%v", tt.name, err, tt.allow)
		}
		if err != nil && (!errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), typeWord(tt.typ)+" on device d1")) {
			t.Errorf("%s: error %q should wrap ErrNotAllowed and name the type", tt.name, err)
		}
	}
	if got := typeWord(wire.MsgExec); got != "exec" {
		t.Errorf("typeWord(MsgExec) = %q; want exec", got)
	}
}

func TestCanonicalExec(t *testing.T) {
	req, payload, err := canonical(wire.Message{Type: wire.MsgExec, Payload: []byte(`{"command":"echo a | tr a b","x":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if req.Type != wire.MsgExec || string(payload) != `{"command":"echo a | tr a b"}` {
		t.Errorf("canonical = %v, %s; want exec with the command alone", req.Type, payload)
	}
	if _, _, err := canonical(wire.Message{Type: wire.MsgExec, Payload: []byte(`{"command":"a\u0000"}`)}); err == nil || !strings.Contains(err.Error(), "bad exec request") {
		t.Errorf("a NUL in the command: err = %v; want a bad exec request", err)
	}
	var ev Event
	if err := describeRequest(&ev, req, wire.Message{Type: wire.MsgExec, Payload: payload}); err != nil || ev.Command != "echo a | tr a b" {
		t.Errorf("describeRequest: %v, command %q; want the command line", err, ev.Command)
	}
	if !auditRequired(wire.MsgExec) {
		t.Error("an exec stream must be audited before it runs")
	}
}
