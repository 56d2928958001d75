package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// Exit codes. Each class of failure has its own code, so scripts can tell
// "the edge is down" from "the token is wrong" without parsing messages.
// `tether shell` passes the remote command's code through instead, so its
// own failures use the same codes and a lost session exits 255 (as ssh).
const (
	ExitOK          = 0   // success
	ExitError       = 1   // any other failure
	ExitUsage       = 2   // bad flags, arguments or settings
	ExitUnreachable = 3   // edge unreachable: DNS, connection refused, timeout
	ExitTLS         = 4   // TLS failure: unknown authority, wrong host name, expired
	ExitAuth        = 5   // the edge rejected the token (HTTP 401)
	ExitForbidden   = 6   // the token may not do this (HTTP 403)
	ExitOffline     = 7   // the device is not connected (HTTP 404); tether play: no such recording
	ExitRemote      = 8   // the edge or the device answered Error
	ExitChecksum    = 9   // tether cp: the bytes received do not match the sender's SHA-256
	ExitTimeout     = 124 // tether exec --timeout: the command did not end in time (as timeout(1))
	ExitInterrupted = 130 // interrupted by Ctrl-C or SIGTERM
	// ExitStatusUnknown: tether shell or exec could not learn the remote
	// command's exit status (the device does not report it, or the stream
	// ended without it).
	ExitStatusUnknown = 254
	ExitLost          = 255 // the session was lost mid-stream, or closed with ~.
)

// exitCodeHelp is the table printed in `tether --help`.
const exitCodeHelp = `EXIT CODES
  0    success
  1    any other failure
  2    bad flags, arguments or settings (no edge URL, no token, unknown profile)
  3    edge unreachable: name not resolved, connection refused, timeout
  4    TLS failure: the edge's certificate is not trusted (pass --ca) or not valid
  5    the edge rejected the token (HTTP 401)
  6    forbidden: the token may not reach this device or target (HTTP 403)
  7    the device is not connected to the edge (HTTP 404); tether play: no such recording
  8    the edge or the device refused the request; its reason is printed as sent
  9    tether cp: the copy's SHA-256 does not match the sender's (the copy is discarded)
  124  tether exec --timeout: the command did not end in time, and was hung up
  130  interrupted (Ctrl-C, SIGTERM)
  254  tether shell, exec: the remote exit status is unknown (the device does not report it)
  255  the session to the edge was lost mid-stream, or closed with the escape ~.
  tether shell and exec exit with the remote command's code (128+N for signal N).`

// exitError carries an exit code with the error a person reads. A nil err
// exits silently with code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError is a mistake in flags, arguments or settings.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// configError is a settings file that cannot be used.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// errSessionLost is reported when the session to the edge ends while a
// stream is in use.
var errSessionLost = errors.New("the connection to the edge was lost")

// errStreamReset is reported when the far side of a stream ended in error
// (the device lost the edge, or the target reset the connection).
var errStreamReset = errors.New("the stream was cut")

// streamReset reports err, a reset of the stream (transport.ErrStreamReset),
// with the reason the edge or the device gave.
func streamReset(err error) error {
	var re *transport.ResetError
	if errors.As(err, &re) && re.Reason != "" {
		return fmt.Errorf("%w: %s", errStreamReset, re.Reason)
	}
	return fmt.Errorf("%w on the device's side (the device lost its connection to the edge, or the target reset it)", errStreamReset)
}

// msgContext names, for error messages, the edge, the device, where the
// token came from (never the token) and the CA file in use.
type msgContext struct {
	edge, device, tokenFrom, ca string
}

// describe turns err into a message that says what happened and what to do
// next, and its exit code.
func describe(err error, mc msgContext) (int, string) {
	edge, device := mc.edge, mc.device
	var (
		ee      *exitError
		ue      *usageError
		ce      *configError
		se      *transport.StatusError
		re      *wire.RemoteError
		de      *transport.DialError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		rhe     tls.RecordHeaderError
		alert   tls.AlertError
		dnsErr  *net.DNSError
	)
	switch {
	case errors.As(err, &ee):
		if ee.err == nil {
			return ee.code, ""
		}
		_, msg := describe(ee.err, mc)
		return ee.code, msg
	case errors.As(err, &ue):
		return ExitUsage, ue.msg
	case errors.As(err, &ce):
		return ExitUsage, ce.Error()
	case errors.Is(err, context.Canceled):
		return ExitInterrupted, "interrupted"
	case errors.Is(err, errSessionLost):
		return ExitLost, fmt.Sprintf("%v (%s); check the edge and the network, then run the command again", err, edge)
	case errors.Is(err, errStreamReset):
		return ExitLost, fmt.Sprintf("%v; the data may be incomplete: check `tether devices` and run the command again", err)
	case errors.As(err, &se):
		return describeStatus(se, edge, device, mc.tokenFrom)
	case errors.As(err, &re):
		return ExitRemote, re.Reason
	case errors.Is(err, wire.ErrNoAnswer):
		return ExitRemote, fmt.Sprintf("device %s closed the stream without answering; its agent may not support this stream type (upgrade tether-agent)", device)
	case errors.As(err, &unknown):
		if mc.ca != "" {
			return ExitTLS, fmt.Sprintf("the edge's certificate at %s is not signed by the CA in %s: pass --ca FILE (or set %s) with the CA that signed it", edge, mc.ca, EnvCA)
		}
		return ExitTLS, fmt.Sprintf("the edge's certificate at %s is signed by an unknown authority: pass --ca FILE (or set %s) with the CA that signed it", edge, EnvCA)
	case errors.As(err, &host):
		return ExitTLS, fmt.Sprintf("the edge's certificate is not valid for %q (%v): use a host name the certificate names in --edge, or reissue it", host.Host, err)
	case errors.As(err, &invalid):
		return ExitTLS, fmt.Sprintf("the edge's certificate is not valid: %v; renew it or check this machine's clock", invalid.Error())
	case errors.As(err, &rhe):
		return ExitTLS, fmt.Sprintf("%s did not answer with TLS: check the port in --edge (the edge listens for https)", edge)
	case errors.As(err, &alert):
		return ExitTLS, fmt.Sprintf("TLS handshake with %s failed: %v", edge, err)
	case errors.As(err, &dnsErr):
		return ExitUnreachable, fmt.Sprintf("cannot resolve the edge's host name %q: check --edge and your DNS", dnsErr.Name)
	case connRefused(err):
		return ExitUnreachable, fmt.Sprintf("the edge at %s refused the connection: is tether-edge running and listening on that port?", edge)
	case isTimeout(err):
		return ExitUnreachable, fmt.Sprintf("timed out reaching the edge at %s: check the address, a firewall, or HTTPS_PROXY", edge)
	case noRoute(err):
		return ExitUnreachable, fmt.Sprintf("no route to the edge at %s: check the network", edge)
	case errors.As(err, &de):
		switch de.Op {
		case "tls":
			return ExitTLS, fmt.Sprintf("TLS handshake with %s failed: %v", edge, de.Err)
		case "upgrade":
			return ExitError, fmt.Sprintf("the edge at %s did not accept the session: %v", edge, de.Err)
		}
		return ExitUnreachable, fmt.Sprintf("cannot reach the edge at %s: %v", edge, de.Err)
	}
	return ExitError, err.Error()
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func describeStatus(se *transport.StatusError, edge, device, tokenFrom string) (int, string) {
	reason := ""
	if se.Reason != "" {
		reason = ": " + se.Reason
	}
	switch se.StatusCode {
	case http.StatusUnauthorized:
		from := ""
		if tokenFrom != "" {
			from = " from " + tokenFrom
		}
		return ExitAuth, fmt.Sprintf("the edge rejected the token%s (HTTP 401%s): check --token, --token-file or %s; an operator issues tokens with `tether-edge token`", from, reason, EnvToken)
	case http.StatusForbidden:
		what := "the token may not do this"
		if device != "" {
			what = "the token may not reach device " + device
		}
		return ExitForbidden, fmt.Sprintf("forbidden (HTTP 403%s): %s; ask the edge's operator for access", reason, what)
	case http.StatusNotFound:
		if device == "" {
			return ExitOffline, fmt.Sprintf("not found (HTTP 404%s): check the --edge URL", reason)
		}
		return ExitOffline, fmt.Sprintf("device %s is not connected to the edge (HTTP 404%s): check the ID with `tether devices` and that its agent is running", device, reason)
	case http.StatusConflict:
		return ExitRemote, fmt.Sprintf("the edge refused the session (HTTP 409%s)", reason)
	}
	return ExitError, fmt.Sprintf("the edge answered HTTP %d%s; check that --edge points at a tether edge", se.StatusCode, reason)
}
