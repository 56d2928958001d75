//go:build linux

package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/certs"
)

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

// runMain runs the CLI in process with an empty environment (plus extra).
func runMain(t *testing.T, stdin string, extra env, args ...string) (string, string, int) {
	t.Helper()
	e := env{"HOME": t.TempDir()}
	for k, v := range extra {
		e[k] = v
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, IO{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut}, e.get)
	return out.String(), errOut.String(), code
}

func TestHelpHasPurposeAndExamples(t *testing.T) {
	root := newRootCommand(&globalOptions{})
	cmds := [][]string{{}}
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" {
			continue
		}
		cmds = append(cmds, []string{c.Name()})
		for _, sub := range c.Commands() {
			if !sub.Hidden && sub.Name() != "help" {
				cmds = append(cmds, []string{c.Name(), sub.Name()})
			}
		}
	}
	for _, path := range cmds {
		name := "tether " + strings.Join(path, " ")
		t.Run(name, func(t *testing.T) {
			out, errOut, code := runMain(t, "", nil, append(path, "--help")...)
			require.Equal(t, 0, code, errOut)
			lines := strings.SplitN(out, "\n", 2)
			require.NotEmpty(t, strings.TrimSpace(lines[0]), "no one-line purpose")
			require.Contains(t, out, "\nEXAMPLES\n", "%s --help has no EXAMPLES section:\n%s", name, out)
		})
	}
	out, _, _ := runMain(t, "", nil, "--help")
	require.Contains(t, out, "EXIT CODES")
	for _, c := range []string{"devices", "tcp", "udp", "socks", "shell", "exec", "nc", "ssh", "reload", "certs", "version", "completion"} {
		require.Contains(t, out, "  "+c+" ")
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		env  env
		args []string
		want string
	}{
		{"unknown command", nil, []string{"teleport"}, "unknown command"},
		{"unknown flag", nil, []string{"devices", "--yaml"}, "unknown flag"},
		{"tcp without a forward", nil, []string{"tcp", "d1"}, "usage: tether tcp DEVICE"},
		{"tcp with a bad forward", env{EnvEdge: "https://e", EnvToken: "t"}, []string{"tcp", "d1", "8080:80"}, "[BIND:]LPORT:HOST:RPORT"},
		{"nc with a bad target", env{EnvEdge: "https://e", EnvToken: "t"}, []string{"nc", "d1", "host"}, "HOST:PORT"},
		{"no edge", env{EnvToken: "t"}, []string{"reload", "d1"}, "no edge URL"},
		{"no token", env{EnvEdge: "https://e"}, []string{"devices"}, "no token"},
		{"http edge", env{EnvEdge: "http://e", EnvToken: "t"}, []string{"devices"}, "https://"},
		{"unknown profile", nil, []string{"--profile", "x", "devices"}, `profile "x"`},
		{"missing CA file", env{EnvEdge: "https://e", EnvToken: "t", EnvCA: "/nonexistent/ca.crt"}, []string{"devices"}, "/nonexistent/ca.crt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := runMain(t, "", tt.env, tt.args...)
			require.Equal(t, ExitUsage, code, errOut)
			require.Contains(t, errOut, tt.want)
			require.True(t, strings.HasPrefix(errOut, "tether: "), "got %q", errOut)
		})
	}
}

func TestVersion(t *testing.T) {
	out, _, code := runMain(t, "", nil, "version")
	require.Equal(t, 0, code)
	require.Contains(t, out, "tether ")
	require.Contains(t, out, "qbee-v1")
}

func TestCompletion(t *testing.T) {
	out, errOut, code := runMain(t, "", nil, "completion", "bash")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "__start_tether")
}

func TestCerts(t *testing.T) {
	dir := t.TempDir()
	out, errOut, code := runMain(t, "", nil, "certs", "init", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "Your certificate has been saved in "+filepath.Join(dir, "ca.crt")+".")
	require.Contains(t, out, "Your private key has been saved in "+filepath.Join(dir, "ca.key")+".")

	out, errOut, code = runMain(t, "", nil, "certs", "edge", "--dir", dir, "edge.example.com", "127.0.0.1")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, filepath.Join(dir, "edge.crt"))
	out, errOut, code = runMain(t, "", nil, "certs", "device", "--dir", dir, "--lifetime", "30d", "d1")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, filepath.Join(dir, "d1.key"))

	for _, k := range []string{"ca.key", "edge.key", "d1.key"} {
		fi, err := os.Stat(filepath.Join(dir, k))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), k)
	}
	ca, err := certs.LoadPool(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)
	dev, err := certs.LoadCertificate(filepath.Join(dir, "d1.crt"))
	require.NoError(t, err)
	id, err := certs.VerifyDevice([]*x509.Certificate{dev}, ca, dev.NotBefore.Add(1))
	require.NoError(t, err)
	require.Equal(t, "d1", id)
	require.InDelta(t, 30*24, dev.NotAfter.Sub(dev.NotBefore).Hours(), 1)
	edge, err := certs.LoadCertificate(filepath.Join(dir, "edge.crt"))
	require.NoError(t, err)
	require.NoError(t, edge.VerifyHostname("edge.example.com"))
	require.NoError(t, edge.VerifyHostname("127.0.0.1"))

	// Existing files are kept without --force, and replaced with it.
	before, err := os.ReadFile(filepath.Join(dir, "d1.crt"))
	require.NoError(t, err)
	_, errOut, code = runMain(t, "", nil, "certs", "device", "--dir", dir, "d1")
	require.Equal(t, ExitError, code)
	require.Contains(t, errOut, "already exists; pass --force")
	after, _ := os.ReadFile(filepath.Join(dir, "d1.crt"))
	require.Equal(t, before, after)
	_, errOut, code = runMain(t, "", nil, "certs", "device", "--dir", dir, "--force", "d1")
	require.Equal(t, 0, code, errOut)
	after, _ = os.ReadFile(filepath.Join(dir, "d1.crt"))
	require.NotEqual(t, before, after)

	// Mistakes a person can fix.
	_, errOut, code = runMain(t, "", nil, "certs", "device", "--dir", t.TempDir(), "d1")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "tether certs init")
	_, errOut, code = runMain(t, "", nil, "certs", "device", "--dir", dir, "bad/id")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "may contain only")
	_, errOut, code = runMain(t, "", nil, "certs", "init", "--dir", t.TempDir(), "--lifetime", "soon")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "lifetime")
}

func TestTCPBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, errOut, code := runMain(t, "", env{EnvEdge: "https://127.0.0.1:1", EnvToken: "t"},
		"tcp", "d1", ln.Addr().String()+":127.0.0.1:80")
	require.Equal(t, ExitError, code, errOut)
	require.Contains(t, errOut, "cannot listen on "+ln.Addr().String())
	require.Contains(t, errOut, "pick another local port")
}

// TestCertsLifetime: a lifetime under a minute is refused, saying the
// shortest one and what to pass, and nothing is written; a short lifetime
// above it counts from now, so the certificate is valid when issued.
func TestCertsLifetime(t *testing.T) {
	dir := t.TempDir()
	_, errOut, code := runMain(t, "", nil, "certs", "init", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	for _, life := range []string{"1s", "59s", "500ms"} {
		_, errOut, code = runMain(t, "", nil, "certs", "device", "--dir", dir, "--lifetime", life, "short")
		require.Equal(t, ExitUsage, code, life)
		require.Contains(t, errOut, "is shorter than 1m0s", life)
		require.Contains(t, errOut, "such as 24h", life)
		_, err := os.Stat(filepath.Join(dir, "short.crt"))
		require.ErrorIs(t, err, os.ErrNotExist, life)
	}
	before := time.Now()
	_, errOut, code = runMain(t, "", nil, "certs", "device", "--dir", dir, "--lifetime", "2m", "short")
	require.Equal(t, 0, code, errOut)
	dev, err := certs.LoadCertificate(filepath.Join(dir, "short.crt"))
	require.NoError(t, err)
	require.False(t, dev.NotAfter.Before(before.Add(2*time.Minute).Truncate(time.Second)), "NotAfter %v; want 2m after %v", dev.NotAfter, before)
	require.True(t, dev.NotBefore.Before(before), "NotBefore %v; want before %v (backdated for clock skew)", dev.NotBefore, before)
}
