package edge_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

// rulesWith returns the test rules with change applied to a copy.
func rulesWith(t *testing.T, change func(map[string]*edge.ClientRule)) *edge.StaticPolicy {
	t.Helper()
	rules := testRules()
	byName := map[string]*edge.ClientRule{}
	for i := range rules {
		byName[rules[i].Name] = &rules[i]
	}
	change(byName)
	var out []edge.ClientRule
	for _, r := range rules {
		if byName[r.Name] != nil {
			out = append(out, *byName[r.Name])
		}
	}
	p, err := edge.NewStaticPolicy(out)
	require.NoError(t, err)
	return p
}

// A client session is bound to the token it authenticated with: a Reload
// that removes that token, gives it to another client or takes the device
// away from its client closes the session, and audits why. Other changes
// leave it working.
func TestReloadClosesSessionsWhoseCredentialChanged(t *testing.T) {
	tests := []struct {
		name   string
		token  string
		change func(map[string]*edge.ClientRule)
		reason string // "" when the session must survive
	}{
		{"token removed", opsToken, func(r map[string]*edge.ClientRule) { delete(r, "ops") },
			"the token it authenticated with was removed or replaced"},
		{"token rotated", opsToken, func(r map[string]*edge.ClientRule) { r["ops"].TokenSHA256 = edge.HashToken("new-ops-token") },
			"the token it authenticated with was removed or replaced"},
		{"token given to another client", opsToken, func(r map[string]*edge.ClientRule) {
			r["ops"].TokenSHA256, r["peer"].TokenSHA256 = edge.HashToken("new-ops-token"), edge.HashToken(opsToken)
		}, "the token it authenticated with now belongs to client peer"},
		{"device taken away", opsToken, func(r map[string]*edge.ClientRule) { r["ops"].Devices = []string{"x-*"} },
			"client ops may no longer reach device d-1"},
		{"another client's token rotated", peerToken, func(r map[string]*edge.ClientRule) { r["ops"].TokenSHA256 = edge.HashToken("new-ops-token") }, ""},
		{"another client removed", opsToken, func(r map[string]*edge.ClientRule) { delete(r, "limited") }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newEdge(t, mock.Options{})
			dev := m.DeviceClientWithID("d-1")
			dev.Handle(wire.MsgTCP, tcpHandler)
			echo := lineEcho(t)
			c := clientWithToken(t, m, "d-1", tt.token)
			got, err := roundTrip(t, c, echo, "before")
			require.NoError(t, err)
			require.Equal(t, "before", got)

			m.Server().Reload(rulesWith(t, tt.change), nil)
			if tt.reason == "" {
				got, err := roundTrip(t, c, echo, "after")
				require.NoError(t, err, "the session must survive the reload")
				require.Equal(t, "after", got)
				select {
				case <-c.Done():
					t.Fatal("the reload closed a session whose credential did not change")
				default:
				}
				return
			}
			require.True(t, closed(c), "the reload left the session open")
			require.Eventually(t, func() bool { return len(eventsOf(m, edge.EventClientClose)) == 1 }, 20*time.Second, 10*time.Millisecond)
			e := eventsOf(m, edge.EventClientClose)[0]
			require.Equal(t, "revoked", e.Result)
			require.Equal(t, tt.reason, e.Reason)
			require.NotContains(t, e.Reason, opsToken)
		})
	}
}

// A Reload that takes a stream type or target away from a client closes
// that client's open streams of it; the session and its other streams go
// on.
func TestReloadClosesStreamsThePolicyNoLongerAllows(t *testing.T) {
	m := newEdge(t, mock.Options{})
	dev := m.DeviceClientWithID("d-1")
	dev.Handle(wire.MsgTCP, tcpHandler)
	dev.Handle(wire.MsgReload, func(ctx context.Context, st *transport.Stream, p []byte) error {
		_ = wire.WriteOK(st, nil)
		return nil
	})
	kept, cut := lineEcho(t), lineEcho(t)
	c := m.ClientFor("d-1")
	say := func(conn io.ReadWriter, r *bufio.Reader, s string) error {
		if _, err := io.WriteString(conn, s+"\n"); err != nil {
			return err
		}
		line, err := r.ReadString('\n')
		if err == nil && line != s+"\n" {
			t.Fatalf("got %q; want %q", line, s+"\n")
		}
		return err
	}
	dial := func(addr string) (*transport.Stream, *bufio.Reader) {
		conn, err := tcp.Dial(ctxT(t), c, addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		st := conn.(*transport.Stream)
		return st, bufio.NewReader(st)
	}
	keptConn, keptR := dial(kept)
	cutConn, cutR := dial(cut)
	require.NoError(t, say(keptConn, keptR, "one"))
	require.NoError(t, say(cutConn, cutR, "one"))

	m.Server().Reload(rulesWith(t, func(r map[string]*edge.ClientRule) {
		r["ops"].TCP = []target.Pattern{target.MustParsePattern(kept)}
	}), nil)
	_, err := io.ReadAll(cutR) // ends once the edge closed the stream
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the edge left open a stream the policy no longer allows")
	require.NoError(t, say(keptConn, keptR, "two"), "a stream the policy still allows goes on")
	require.NoError(t, c.Reload(ctxT(t)), "the session goes on")
	require.Eventually(t, func() bool {
		for _, e := range eventsOf(m, edge.EventStreamClose) {
			if e.Target == cut && e.Result == "revoked" && strings.Contains(e.Reason, "no longer allows") {
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond, "no audit record of the revoked stream: %+v", eventsOf(m, edge.EventStreamClose))
}

// TestReloadDeviceCA: a device CA that no longer trusts a connected
// device's certificate disconnects it, audited with the reason, and
// refuses it from then on; a bundle of the old CA and a new one takes it
// back, and a device of the new CA too.
func TestReloadDeviceCA(t *testing.T) {
	m := newEdge(t, mock.Options{})
	m.DeviceClientWithID("d-old")
	oldCA := m.PKI().CA.Cert
	newCA, err := certs.NewCA("new device CA", certs.Options{})
	require.NoError(t, err)

	require.Equal(t, 1, m.Server().ReloadDeviceCA(certs.PoolOf(newCA.Cert)), "devices closed")
	require.Eventually(t, func() bool { return !connected(m, "d-old") }, 20*time.Second, 10*time.Millisecond)
	waitEvent(t, m, func(e edge.Event) bool {
		return e.Kind == edge.EventDeviceDisconnect && e.Device == "d-old" &&
			strings.HasPrefix(e.Reason, "certificate no longer trusted: ")
	})
	kp, err := m.PKI().CA.IssueDevice("d-probe", certs.Options{})
	require.NoError(t, err)
	status, _ := dialStatus(t, m, "/device", "", certs.DeviceTLSConfig(kp.TLSCertificate(), m.PKI().Pool()))
	require.Equal(t, http.StatusForbidden, status, "a device of the CA taken away connected")

	require.Zero(t, m.Server().ReloadDeviceCA(certs.PoolOf(oldCA, newCA.Cert)))
	m.WaitDevice("d-old") // its agent reconnects
	nk, err := newCA.IssueDevice("d-new", certs.Options{})
	require.NoError(t, err)
	status, _ = dialStatus(t, m, "/device", "", certs.DeviceTLSConfig(nk.TLSCertificate(), m.PKI().Pool()))
	require.Equal(t, http.StatusSwitchingProtocols, status, "a device of the new CA was refused")

	// No device CA keeps no device: the one registered closes now, one
	// still registering as it registers.
	require.Positive(t, m.Server().ReloadDeviceCA(nil))
	require.Eventually(t, func() bool { return len(m.Server().Devices()) == 0 }, 20*time.Second, 10*time.Millisecond)
	waitEvent(t, m, func(e edge.Event) bool {
		return e.Kind == edge.EventDeviceDisconnect && e.Device == "d-new" && e.Reason == "the edge no longer accepts devices (no device CA)"
	})
}
