//go:build linux

package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

func TestDescribe(t *testing.T) {
	const edge, device = "https://edge:8443", "d1"
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantMsg  string
	}{
		{"401", &transport.DialError{Op: "upgrade", Err: &transport.StatusError{StatusCode: 401}}, ExitAuth, "token"},
		{"403", &transport.DialError{Op: "upgrade", Err: &transport.StatusError{StatusCode: 403, Reason: "no rights"}}, ExitForbidden, "no rights"},
		{"404", &transport.DialError{Op: "upgrade", Err: &transport.StatusError{StatusCode: 404}}, ExitOffline, "device d1 is not connected"},
		{"remote error verbatim", fmt.Errorf("open: %w", &wire.RemoteError{Reason: "dial tcp 127.0.0.1:5432: connection refused"}), ExitRemote, "dial tcp 127.0.0.1:5432: connection refused"},
		{"no answer", wire.ErrNoAnswer, ExitRemote, "without answering"},
		{"unknown authority", &transport.DialError{Op: "tls", Err: x509.UnknownAuthorityError{}}, ExitTLS, "pass --ca"},
		{"host name", &transport.DialError{Op: "tls", Err: x509.HostnameError{Host: "10.0.0.1", Certificate: &x509.Certificate{}}}, ExitTLS, "not valid for"},
		{"dns", &transport.DialError{Op: "resolve", Err: &net.DNSError{Name: "nope.invalid", Err: "no such host"}}, ExitUnreachable, "cannot resolve"},
		{"refused", &transport.DialError{Op: "connect", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, ExitUnreachable, "refused"},
		{"timeout", &transport.DialError{Op: "connect", Err: context.DeadlineExceeded}, ExitUnreachable, "timed out"},
		{"lost", errSessionLost, ExitLost, "lost"},
		{"interrupted", fmt.Errorf("dial: %w", &transport.DialError{Op: "connect", Err: context.Canceled}), ExitInterrupted, "interrupted"},
		{"usage", usageErrorf("bad"), ExitUsage, "bad"},
		{"exit code passes through", &exitError{code: 42}, 42, ""},
		{"other", errors.New("boom"), ExitError, "boom"},
	}
	seen := map[int]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg := describe(tt.err, msgContext{edge: edge, device: device})
			require.Equal(t, tt.wantCode, code, msg)
			require.Contains(t, msg, tt.wantMsg)
		})
		seen[tt.wantCode] = tt.name
	}
	// Every class has its own code.
	for _, c := range []int{ExitError, ExitUsage, ExitUnreachable, ExitTLS, ExitAuth, ExitForbidden, ExitOffline, ExitRemote, ExitLost} {
		require.Contains(t, seen, c)
	}
}
