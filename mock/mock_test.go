package mock_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestNewEdgeMockHandlersRegisteredAfterStart(t *testing.T) {
	client, device, m := mock.NewEdgeMock(t)
	require.Same(t, client, m.Client())
	require.Same(t, device, m.DeviceClient())
	require.True(t, device.Connected())

	// Registered after NewEdgeMock returned: in place for the next stream.
	device.Handle(wire.MsgReload, func(ctx context.Context, st *transport.Stream, p []byte) error {
		_ = wire.WriteOK(st, nil)
		return nil
	})
	device.Handle(wire.MsgTCP, func(ctx context.Context, st *transport.Stream, p []byte) error {
		_ = wire.WriteOK(st, nil)
		_, _ = io.WriteString(st, "dialled "+string(p))
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, client.Reload(ctx))
	conn, err := tcp.Dial(ctx, client, "127.1:80")
	require.NoError(t, err)
	b, err := io.ReadAll(conn)
	require.NoError(t, err)
	conn.Close()
	require.Equal(t, "dialled 127.0.0.1:80", string(b), "the edge sends the canonical target")

	var kinds []string
	for _, e := range m.AuditEvents() {
		kinds = append(kinds, e.Kind)
	}
	require.Contains(t, kinds, edge.EventDeviceConnect)
	require.Contains(t, kinds, edge.EventClientOpen)
	require.Contains(t, kinds, edge.EventStreamOpen)
}

func TestSeveralDevicesByID(t *testing.T) {
	m := mock.New(t, mock.Options{})
	for _, id := range []string{"a", "b"} {
		d := m.DeviceClientWithID(id)
		d.Handle(wire.MsgReload, func(ctx context.Context, st *transport.Stream, p []byte) error {
			_ = wire.WriteOK(st, []byte(id))
			return nil
		})
	}
	for _, id := range []string{"a", "b"} {
		c := m.ClientFor(id)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		st, ok, err := c.OpenStream(ctx, wire.MsgReload, nil)
		cancel()
		require.NoError(t, err)
		st.Close()
		require.Equal(t, id, string(ok), "a client for %s reached another device", id)
	}
	require.Len(t, m.Server().Devices(), 2)
}

func TestDevicesReallyUseMTLS(t *testing.T) {
	m := mock.New(t, mock.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := transport.Dial(ctx, m.DeviceURL(), "", m.ClientTLS(), nil)
	var se *transport.StatusError
	require.True(t, errors.As(err, &se), "got %v", err)
	require.Equal(t, http.StatusUnauthorized, se.StatusCode)

	_, err = (&client.Dialer{Edge: m.URL(), Token: "", TLSConfig: m.ClientTLS(), Config: nil}).Dial(ctx, "nobody")
	require.True(t, errors.As(err, &se), "got %v", err)
	require.Equal(t, http.StatusUnauthorized, se.StatusCode)
}

// plainT is a mock.T that is not a testing.TB, like the Tester of
// go.qbee.io/transport: Fatalf records and returns, and clean-ups run when
// the caller says.
type plainT struct {
	mu       sync.Mutex
	cleanups []func()
	errs     []string
}

func (p *plainT) Errorf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, fmt.Sprintf(format, args...))
}

func (p *plainT) Fatalf(format string, args ...any) { p.Errorf(format, args...) }

func (p *plainT) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

func (p *plainT) failures() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.errs...)
}

// runCleanups runs the clean-ups, last first.
func (p *plainT) runCleanups() {
	for {
		p.mu.Lock()
		n := len(p.cleanups)
		if n == 0 {
			p.mu.Unlock()
			return
		}
		f := p.cleanups[n-1]
		p.cleanups = p.cleanups[:n-1]
		p.mu.Unlock()
		f()
	}
}

// loggingT is a plainT with the optional Log method.
type loggingT struct {
	plainT
	lines []string // guarded by plainT.mu
}

func (l *loggingT) Log(args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprint(args...))
}

func (l *loggingT) logged() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func TestNewEdgeMockWithAPlainT(t *testing.T) {
	for _, tc := range []struct {
		name    string
		t       cleanupT
		wantLog bool
	}{
		{name: "without Log", t: &plainT{}},
		{name: "with Log", t: &loggingT{}, wantLog: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cleaned := false
			defer func() {
				if !cleaned {
					tc.t.runCleanups()
				}
			}()
			client, device, m := mock.NewEdgeMock(tc.t)
			require.NotNil(t, m, "set-up failed: %v", tc.t.failures())
			if m.PKI() != nil {
				t.Errorf("got a certstest PKI for a T that is not a testing.TB; want nil")
			}
			device.Handle(wire.MsgReload, func(ctx context.Context, st *transport.Stream, p []byte) error {
				return wire.WriteOK(st, []byte("reloaded"))
			})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			st, ok, err := client.OpenStream(ctx, wire.MsgReload, nil)
			require.NoError(t, err)
			st.Close()
			if got := string(ok); got != "reloaded" {
				t.Errorf("got answer %q; want %q", got, "reloaded")
			}

			tc.t.runCleanups()
			cleaned = true
			select {
			case <-device.Done():
			default:
				t.Errorf("the device still runs after the T's clean-ups; want it closed")
			}
			if _, err := client.Session().Open(); err == nil {
				t.Errorf("the client still opens streams after the T's clean-ups; want it closed")
			}
			if got := tc.t.failures(); len(got) != 0 {
				t.Errorf("got failures %q; want none", got)
			}
			if lt, ok := tc.t.(*loggingT); ok {
				if got := lt.logged(); !strings.Contains(got, "component=edge") {
					t.Errorf("got logs %q; want the edge's lines", got)
				}
			}
		})
	}
}

// cleanupT is a mock.T whose clean-ups the test runs.
type cleanupT interface {
	mock.T
	runCleanups()
	failures() []string
}

// A harness whose Fatalf returns gets nil back, not a half-built value.
func TestFatalfThatReturns(t *testing.T) {
	pt := &plainT{}
	defer pt.runCleanups()
	m := mock.New(pt, mock.Options{})
	require.NotNil(t, m, "set-up failed: %v", pt.failures())
	if d := m.DeviceClientWithID("not a device id"); d != nil {
		t.Errorf("got a device for an invalid ID; want nil")
	}
	got := pt.failures()
	if len(got) != 1 || !strings.Contains(got[0], `"not a device id"`) {
		t.Errorf("got failures %q; want one naming the invalid ID", got)
	}
}
