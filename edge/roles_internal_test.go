package edge

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
)

// TestRecheckPerson: after a reload, a person's session (not a token) is
// checked again by its name and groups against the new roles: it goes on
// while a role still covers its device, its streams the new roles refuse
// are cancelled, and it is closed once no role covers the device.
func TestRecheckPerson(t *testing.T) {
	policy := func(allow Allow, labels map[string]string) *RolePolicy {
		p, err := NewRolePolicy(RoleConfig{Roles: []Role{{Name: "field-eng", Match: RoleMatch{Groups: []string{"field-eng"}},
			Devices: []string{"gw-*"}, Labels: labels, Allow: allow}}})
		require.NoError(t, err)
		return p
	}
	loopback := []target.Pattern{target.MustParsePattern("127.0.0.1:*")}
	s := &Server{Policy: policy(Allow{PTY: true, TCP: loopback}, nil)}
	s.init()
	t.Cleanup(func() { s.Close() })

	a, b := net.Pipe()
	sess, err := transport.NewServerSession(a, nil)
	require.NoError(t, err)
	peer, err := transport.NewClientSession(b, nil)
	require.NoError(t, err)
	t.Cleanup(func() { sess.Close(); peer.Close() })
	id := Identity{Name: "alice@example.com", Method: MethodOIDC, Groups: []string{"field-eng"}}
	cs := &clientSession{id: id, device: "gw-1", sess: sess, streams: make(map[*streamGrant]struct{})}
	cs.ctx, cs.cancel = context.WithCancelCause(context.Background())
	t.Cleanup(func() { cs.cancel(errSessionEnded) })
	cs.gen = s.auth.Load().gen
	tg, err := target.Parse("127.0.0.1:22")
	require.NoError(t, err)
	ptyCtx, ptyGrant := cs.addStream(Request{Type: wire.MsgPTY})
	tcpCtx, _ := cs.addStream(Request{Type: wire.MsgTCP, Target: tg})
	defer cs.removeStream(ptyGrant)

	// The new roles drop the shell: the session goes on, the shell stream
	// is cancelled, the tunnel is not.
	s.Reload(policy(Allow{TCP: loopback}, nil), nil)
	require.True(t, s.recheck(cs, s.auth.Load()))
	require.ErrorIs(t, context.Cause(ptyCtx), errStreamRevoked)
	require.NoError(t, tcpCtx.Err())

	// The new roles cover Berlin only: the device has no such label.
	st := &authState{policy: policy(Allow{TCP: loopback}, map[string]string{"site": "berlin"}), gen: s.auth.Load().gen + 1}
	require.False(t, s.recheck(cs, st))
	result, reason := cs.closing()
	require.Equal(t, "revoked", result)
	require.Equal(t, "client alice@example.com may no longer reach device gw-1", reason)
}
