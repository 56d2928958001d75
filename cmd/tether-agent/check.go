package main

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/device/agent"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/udp"
)

// Exit codes of tether-agent check: the first failed step decides.
const (
	checkOK          = 0
	checkUsage       = 1 // bad flags
	checkConfig      = 2 // the config file is missing or invalid
	checkCAFile      = 3 // the edge CA file does not load
	checkCertFile    = 4 // the certificate or key does not load, or they do not match
	checkCertTime    = 5 // the certificate is expired or not yet valid
	checkCertUsage   = 6 // the certificate is not a device certificate (EKU, device ID)
	checkEdgeTrust   = 7 // the edge's certificate is not trusted (wrong CA, wrong name, expired)
	checkEdgeRefused = 8 // the edge refused the device
	checkUnreachable = 9 // the edge cannot be reached
)

// checkTimeoutDial bounds the one connection check makes.
const checkTimeoutDial = 15 * time.Second

// checker prints one line per step and remembers the first failure.
type checker struct {
	out  io.Writer
	code int
}

func (c *checker) ok(format string, args ...any) {
	fmt.Fprintf(c.out, "ok    "+format+"\n", args...)
}

func (c *checker) note(format string, args ...any) {
	fmt.Fprintf(c.out, "note  "+format+"\n", args...)
}

func (c *checker) fail(code int, format string, args ...any) {
	fmt.Fprintf(c.out, "FAIL  "+format+"\n", args...)
	if c.code == checkOK {
		c.code = code
	}
}

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tether-agent check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", DefaultConfigPath, "the agent's configuration `file`")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: tether-agent check [--config FILE]

Checks the agent's set-up step by step and reports each step in plain words:
the config, the edge CA file, the device certificate and key (match, validity,
ClientAuth usage, issuer) and one connection to the edge.

Exit codes: 0 all good, 1 usage, 2 config, 3 edge CA file, 4 certificate or
key files, 5 certificate expired or not yet valid, 6 not a device certificate,
7 the edge's certificate is not trusted, 8 the edge refused the device,
9 the edge cannot be reached.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return checkOK
		}
		return checkUsage
	}
	c := &checker{out: stdout}
	c.run(*configPath, time.Now())
	if c.code == checkOK {
		fmt.Fprintln(stdout, "all checks passed")
	} else {
		fmt.Fprintf(stdout, "check failed (exit code %d)\n", c.code)
	}
	return c.code
}

func (c *checker) run(path string, now time.Time) {
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		c.fail(checkConfig, "config %s: %v", path, err)
		return
	}
	c.ok("config %s is valid; edge %s", path, cfg.Edge)
	c.ok("allow lists: tcp %s; udp %s; pty %s; exec %s", strings.Join(cfg.TCPAllow(), ", "), strings.Join(cfg.UDPAllow(), ", "), onOff(cfg.PTY.Enabled), onOff(cfg.Exec.Enabled))
	if fc := cfg.FilesConfig(); len(fc.Read)+len(fc.Write) > 0 {
		c.ok("files: read %s; write %s", orNone(fc.Read), orNone(fc.Write))
	}
	for _, proto := range []string{"tcp", "udp"} {
		if names := cfg.NameRules(proto); len(names) > 0 {
			c.note("allow.%s names hosts (%s): each name is looked up on this device when a tunnel opens, and an address it resolves to that is loopback, link-local or unspecified is refused unless a rule for that address allows it",
				proto, strings.Join(names, ", "))
		}
	}
	c.ok("session limits: up to %d streams at once (max_streams), a %d KiB receive window each (stream_window_kib); streams whose targets stop reading hold at most %d MiB together (receive_budget_mib)",
		cfg.MaxStreams, cfg.StreamWindowKiB, cfg.ReceiveBudgetMiB)
	stall := fmt.Sprintf("ended when its target or client takes no byte for %v (stall_timeout)", cfg.StallTimeout)
	if cfg.StallTimeout < 0 {
		stall = "never ended for a stalled target or client (stall_timeout is negative)"
	}
	c.ok("tcp tunnels: dial_timeout %v for the lookup and the connection; a tunnel is %s", cfg.DialTimeout, stall)
	c.ok("udp tunnels: %s", udpSettings(cfg.UDP))
	c.checkPrograms(cfg)

	caCerts, caErr := certs.LoadCertificates(cfg.CA)
	if caErr != nil {
		c.fail(checkCAFile, "edge CA file %s does not load: %v; copy the edge's ca.crt to this path", cfg.CA, caErr)
	} else {
		c.ok("edge CA file %s holds %d certificate(s): %s", cfg.CA, len(caCerts), subjects(caCerts))
	}

	cert, certErr := certs.LoadCertificate(cfg.Cert)
	if certErr != nil {
		c.fail(checkCertFile, "device certificate %s does not load: %v", cfg.Cert, certErr)
	}
	key, keyErr := loadKey(cfg.Key)
	if keyErr != nil {
		c.fail(checkCertFile, "device key %s does not load: %v", cfg.Key, keyErr)
	} else if info, err := os.Stat(cfg.Key); err == nil && info.Mode().Perm()&0o077 != 0 {
		c.note("device key %s is readable by other users (mode %v); run: chmod 600 %s", cfg.Key, info.Mode().Perm(), cfg.Key)
	}
	if certErr == nil {
		c.checkCert(cfg, cert, key, keyErr == nil, caCerts, now)
	}
	if c.code != checkOK {
		fmt.Fprintln(c.out, "skip  connection to the edge: fix the problems above first")
		return
	}
	c.connect(cfg)
}

// checkPrograms checks that the PTY shell and the reload command can run.
func (c *checker) checkPrograms(cfg *agent.Config) {
	if (cfg.PTY.Enabled || cfg.Exec.Enabled) && cfg.PTY.Shell != "" {
		if info, err := os.Stat(cfg.PTY.Shell); err != nil || info.IsDir() || info.Mode().Perm()&0o111 == 0 {
			c.fail(checkConfig, "pty.shell %s is not an executable file; install it or change pty.shell", cfg.PTY.Shell)
		} else {
			c.ok("pty.shell %s is executable", cfg.PTY.Shell)
		}
	}
	if len(cfg.Reload.Command) > 0 {
		if p, err := exec.LookPath(cfg.Reload.Command[0]); err != nil {
			c.fail(checkConfig, "reload.command: cannot find %q (%v); give its absolute path", cfg.Reload.Command[0], err)
		} else {
			c.ok("reload.command runs %s (timeout %v)", p, cfg.Reload.Timeout)
		}
	}
}

func (c *checker) checkCert(cfg *agent.Config, cert *x509.Certificate, key crypto.Signer, haveKey bool, caCerts []*x509.Certificate, now time.Time) {
	if haveKey {
		if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(key.Public()) {
			c.ok("device key %s matches the certificate %s", cfg.Key, cfg.Cert)
		} else {
			c.fail(checkCertFile, "the key in %s does not belong to the certificate in %s; install the key the certificate was issued for", cfg.Key, cfg.Cert)
		}
	}
	switch {
	case now.After(cert.NotAfter):
		c.fail(checkCertTime, "the device certificate %s expired on %s (%s ago); issue a new one and restart the agent",
			cfg.Cert, cert.NotAfter.UTC().Format(time.RFC3339), roughly(now.Sub(cert.NotAfter)))
	case now.Before(cert.NotBefore):
		c.fail(checkCertTime, "the device certificate %s is not valid yet: it starts on %s (in %s); check this device's clock",
			cfg.Cert, cert.NotBefore.UTC().Format(time.RFC3339), roughly(cert.NotBefore.Sub(now)))
	default:
		c.ok("the device certificate is valid until %s (%s from now)", cert.NotAfter.UTC().Format(time.RFC3339), roughly(cert.NotAfter.Sub(now)))
	}
	hasClientAuth := false
	for _, u := range cert.ExtKeyUsage {
		hasClientAuth = hasClientAuth || u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny
	}
	if !hasClientAuth {
		c.fail(checkCertUsage, "the certificate %s lacks the ClientAuth extended key usage, so the edge will refuse it; issue a device certificate", cfg.Cert)
	} else if err := certs.ValidDeviceID(cert.Subject.CommonName); err != nil {
		c.fail(checkCertUsage, "the certificate's common name is not a device ID: %v", err)
	} else {
		c.ok("the certificate is a device certificate for device ID %q (serial %s)", cert.Subject.CommonName, certs.SerialHex(cert))
	}
	if len(caCerts) > 0 {
		if signedByAny(cert, caCerts) {
			c.ok("the device certificate is signed by the CA in %s", cfg.CA)
		} else {
			c.note("the device certificate is issued by %q, not by the CA in %s; that is fine when the edge trusts %q for devices",
				cert.Issuer.CommonName, cfg.CA, cert.Issuer.CommonName)
		}
	}
}

// signedByAny reports whether one of cas signed c (validity periods aside:
// they are checked on their own).
func signedByAny(c *x509.Certificate, cas []*x509.Certificate) bool {
	for _, ca := range cas {
		if c.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

// connect makes one connection to the edge and explains a failure.
func (c *checker) connect(cfg *agent.Config) {
	tc, err := deviceTLS(cfg, nil)
	if err != nil {
		c.fail(checkCertFile, "%v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeoutDial)
	defer cancel()
	sess, err := transport.Dial(ctx, cfg.Edge, "", tc, &transport.Config{HandshakeTimeout: checkTimeoutDial})
	if err == nil {
		sess.Close()
		c.ok("connected to the edge at %s and upgraded to a qbee-v1 session; the edge accepted this device", cfg.Edge)
		return
	}
	code, msg := explainDial(cfg, err)
	if code == checkOK {
		c.ok("%s", msg)
		return
	}
	c.fail(code, "%s", msg)
}

// explainDial turns a Dial error into an exit code and plain words.
func explainDial(cfg *agent.Config, err error) (int, string) {
	var (
		unknownCA   x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalid     x509.CertificateInvalidError
		status      *transport.StatusError
		dnsErr      *net.DNSError
		alert       tls.AlertError
		dialErr     *transport.DialError
		edge        = cfg.Edge
		unreachable = "cannot reach the edge at %s: %v; check the URL, this device's network, DNS and any HTTPS_PROXY setting"
	)
	switch refusal := device.CertRefusal(err); {
	case refusal != nil:
		what := strings.TrimPrefix(refusal.Error(), "device: ")
		switch refusal {
		case device.ErrCertRevoked:
			return checkEdgeRefused, what + fmt.Sprintf(" (%v); issue this device a new certificate, or ask the edge's operator why it was revoked", err)
		case device.ErrCertNotYetValid:
			return checkEdgeRefused, what + fmt.Sprintf(" (%v); check the clocks of this device and of the edge", err)
		}
		return checkEdgeRefused, what + fmt.Sprintf(" (%v); issue a new certificate, or check the clocks of this device and of the edge", err)
	case errors.As(err, &unknownCA):
		issuer := ""
		if unknownCA.Cert != nil {
			issuer = fmt.Sprintf(" (it is issued by %q)", unknownCA.Cert.Issuer.CommonName)
		}
		return checkEdgeTrust, fmt.Sprintf("the edge's certificate is not signed by the CA in %s%s; put the CA that signed the edge's certificate in %s", cfg.CA, issuer, cfg.CA)
	case errors.As(err, &hostErr):
		return checkEdgeTrust, fmt.Sprintf("the edge's certificate is not valid for %q (it names %s); use a host name the certificate names in edge:", hostErr.Host, certNames(hostErr.Certificate))
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			return checkEdgeTrust, fmt.Sprintf("the edge's certificate has expired or is not yet valid (%v); renew it on the edge, or check this device's clock", invalid.Detail)
		}
		return checkEdgeTrust, fmt.Sprintf("the edge's certificate is not acceptable: %v", invalid)
	case errors.As(err, &status):
		switch status.StatusCode {
		case 409:
			return checkOK, fmt.Sprintf("the edge at %s accepted the certificate but this device ID is connected already (is the agent running?)", edge)
		case 401, 403:
			return checkEdgeRefused, fmt.Sprintf("the edge refused this device: %v; ask the edge's operator whether the certificate is revoked or issued by a CA the edge trusts", status)
		}
		return checkEdgeRefused, fmt.Sprintf("the edge did not accept the connection: %v; check that edge: ends in the device path (usually /device)", status)
	case errors.As(err, &alert):
		return checkEdgeRefused, fmt.Sprintf("the edge rejected the device certificate during the TLS handshake (%v); ask the edge's operator whether it trusts this device's CA", err)
	case errors.As(err, &dnsErr):
		return checkUnreachable, fmt.Sprintf("cannot resolve the edge's host name: %v; check the edge: URL and this device's DNS", dnsErr)
	case errors.Is(err, context.DeadlineExceeded):
		return checkUnreachable, fmt.Sprintf("no answer from the edge at %s within %v; check the firewall and any HTTPS_PROXY setting", edge, checkTimeoutDial)
	case errors.As(err, &dialErr) && strings.HasPrefix(dialErr.Op, "tls"):
		return checkEdgeTrust, fmt.Sprintf("the TLS handshake with the edge failed: %v", err)
	}
	return checkUnreachable, fmt.Sprintf(unreachable, edge, err)
}

func loadKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM block in it")
	}
	var k any
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", b.Type)
	}
	if err != nil {
		return nil, err
	}
	switch s := k.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		return s.(crypto.Signer), nil
	}
	return nil, fmt.Errorf("unsupported key type %T", k)
}

func subjects(cs []*x509.Certificate) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = fmt.Sprintf("%q", c.Subject.CommonName)
	}
	return strings.Join(names, ", ")
}

func certNames(c *x509.Certificate) string {
	if c == nil {
		return "no names"
	}
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no names"
	}
	return strings.Join(names, ", ")
}

func onOff(b bool) string {
	if b {
		return "enabled"
	}
	return "disabled"
}

// roughly prints a duration in the largest sensible unit.
func roughly(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	case d >= 2*time.Minute:
		return fmt.Sprintf("%d minutes", int(d.Minutes()))
	}
	return d.Round(time.Second).String()
}

// udpSettings describes the effective UDP tunnel settings, defaults filled
// in.
func udpSettings(u agent.UDPConfig) string {
	idle := cmp.Or(u.IdleTimeout, udp.DefaultIdleTimeout)
	rate := "no cap on datagrams to the target"
	if pps := cmp.Or(u.MaxPacketsPerSecond, udp.DefaultMaxPacketsPerSecond); pps > 0 {
		rate = fmt.Sprintf("at most %d datagrams a second to the target", pps)
	}
	replies := "no cap on replies"
	if ratio := cmp.Or(u.MaxReplyRatio, udp.DefaultMaxReplyRatio); ratio > 0 {
		allowance := max(0, cmp.Or(u.ReplyAllowanceBytes, udp.DefaultReplyAllowance))
		replies = fmt.Sprintf("replies at most %d× the bytes sent plus %d bytes per %v", ratio, allowance, cmp.Or(u.ReplyWindow, udp.DefaultReplyRatioWindow))
	}
	return fmt.Sprintf("ended after %v without datagrams (udp.idle_timeout); %s (udp.max_packets_per_second); %s (udp.max_reply_ratio, udp.reply_allowance_bytes, udp.reply_window)", idle, rate, replies)
}

// orNone joins a list, or says "none".
func orNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}
