package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/internal/shellquote"
)

const defaultDevListen = "127.0.0.1:8443"

// runDev creates a dev set-up in dir once (PKI, edge.yaml, client.token,
// a device certificate and agent.yaml), prints how to use it, and serves.
// With --cluster N it writes a trial of N edges instead (runDevCluster).
func runDev(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tether-edge dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "directory for the dev PKI and configs (created if missing)")
	listen := fs.String("listen", defaultDevListen, "listen address")
	device := fs.String("device", "demo", "device ID of the generated device certificate")
	clusterN := fs.Int("cluster", 0, "write a trial of `N` edges behind HAProxy on this machine (1 to 5; 3 is the usual) and print how to start it, instead of serving one edge")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("--dir is required: where to keep the dev PKI and configs, e.g. --dir ./tether-dev")
	}
	if err := certs.ValidDeviceID(*device); err != nil {
		return err
	}
	listenSet := false
	fs.Visit(func(f *flag.Flag) { listenSet = listenSet || f.Name == "listen" })
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if *clusterN != 0 {
		if listenSet {
			return errTrialListen
		}
		return runDevCluster(abs, *clusterN, *device, stdout)
	}
	if _, err := os.Stat(filepath.Join(abs, trialEdgeConfig(1))); err == nil {
		return fmt.Errorf("%s holds a cluster trial (%s); start its edges with --config, or pick another --dir for a single dev edge", abs, trialEdgeConfig(1))
	}
	cfgPath := filepath.Join(abs, "edge.yaml")
	if _, err := os.Stat(cfgPath); errors.Is(err, os.ErrNotExist) {
		if err := createDev(abs, *listen, *device); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Created a dev set-up in %s (device %q).\n", abs, *device)
	} else if err != nil {
		return err
	} else {
		fmt.Fprintf(stdout, "Using the dev set-up in %s.\n", abs)
	}
	override := ""
	if listenSet {
		override = *listen // else the listen address of edge.yaml
	}
	return serve(cfgPath, override, stderr, func(addr string) {
		addr = dialable(addr)
		q := shellquote.Quote
		flags := fmt.Sprintf("--edge https://%s --ca %s --token-file %s", addr, q(filepath.Join(abs, "ca.crt")), q(filepath.Join(abs, "client.token")))
		fmt.Fprintf(stdout, `
Edge listening on https://%s

Start the agent:
  tether-agent --config %s

Use the CLI:
  tether %s devices
`, addr, q(filepath.Join(abs, "agent.yaml")), flags)
		// A set-up made before it had one has no files directory.
		if files := filepath.Join(abs, devFilesDir); isDir(files) {
			fmt.Fprintf(stdout, `
File transfers (tether cp) reach %s on the device, and nothing else:
  tether %s cp ./notes.txt %s
`, files, flags, q(setUpDevice(abs, *device)+":"+files+"/"))
		}
	})
}

// setUpDevice is the device of the dev set-up in dir, as its certificate
// names it, or else fallback.
func setUpDevice(dir, fallback string) string {
	c, err := certs.LoadCertificate(filepath.Join(dir, "device.crt"))
	if err != nil || certs.ValidDeviceID(c.Subject.CommonName) != nil {
		return fallback
	}
	return c.Subject.CommonName
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func createDev(dir, listen, deviceID string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", listen, err)
	}
	ca, err := certs.NewCA("Tether Dev CA", certs.Options{})
	if err != nil {
		return err
	}
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	if host != "" && host != "127.0.0.1" && host != "::1" && host != "localhost" && host != "0.0.0.0" && host != "::" {
		hosts = append([]string{host}, hosts...)
	}
	edgeKP, err := ca.IssueServer(hosts, certs.Options{})
	if err != nil {
		return err
	}
	dev, err := ca.IssueDevice(deviceID, certs.Options{})
	if err != nil {
		return err
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	if err := ca.Save(p("ca.crt"), p("ca.key"), false); err != nil {
		return err
	}
	if err := edgeKP.Save(p("edge.crt"), p("edge.key"), false); err != nil {
		return err
	}
	if err := dev.Save(p("device.crt"), p("device.key"), false); err != nil {
		return err
	}
	tok, sum, err := newToken()
	if err != nil {
		return err
	}
	if err := certs.WriteFile(p("client.token"), []byte(tok+"\n"), 0o600, false); err != nil {
		return err
	}
	if err := certs.WriteFile(p("revoked.txt"), []byte("# revoked device certificate serials, one per line (hex)\n"), 0o644, false); err != nil {
		return err
	}
	edgeYAML := fmt.Sprintf(`# Dev edge created by tether-edge dev. Paths are relative to this file.
listen: %q
tls: {cert: edge.crt, key: edge.key}
device_ca: ca.crt
revoked: revoked.txt
clients:
  - name: dev
    token_sha256: %q   # SHA-256 of client.token
    devices: ["*"]
    allow:
      tcp: ["127.0.0.1:*", "localhost:*", "[::1]:*"]
      udp: ["127.0.0.1:*", "localhost:*", "[::1]:*"]
      pty: true
      exec: true
      reload: true
      files: true   # what the agent's files section admits
audit_log: audit.jsonl
state_dir: .           # the devices seen leaving outlive a restart
`, listen, sum)
	if err := certs.WriteFile(p("edge.yaml"), []byte(edgeYAML), 0o600, false); err != nil {
		return err
	}
	edgeHost := listen
	if host == "" || host == "0.0.0.0" || host == "::" {
		_, port, _ := net.SplitHostPort(listen)
		edgeHost = net.JoinHostPort("127.0.0.1", port)
	}
	agentYAML := fmt.Sprintf(`# Dev agent created by tether-edge dev. Paths are relative to this file.
edge: "https://%s/device"
cert: device.crt
key: device.key
ca: ca.crt
allow:
  tcp: ["127.0.0.1:*", "localhost:*", "[::1]:*"]
  udp: ["127.0.0.1:*", "localhost:*", "[::1]:*"]
pty: {enabled: true}
exec: {enabled: true}
%s`, edgeHost, devFilesSection(dir))
	if err := os.Mkdir(p(devFilesDir), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return certs.WriteFile(p("agent.yaml"), []byte(agentYAML), 0o600, false)
}

// devFilesDir is the directory, in a dev set-up or a trial, that the
// agent lets tether cp read and write: the only one.
const devFilesDir = "files"

// devFilesSection is the agent's files section of the set-up in dir.
func devFilesSection(dir string) string {
	g := globEscape(filepath.Join(dir, devFilesDir))
	return fmt.Sprintf("files: {read: [%q], write: [%q]}   # tether cp reaches this directory only\n", g, g)
}

// globEscape quotes the characters of p that a file glob (path.Match)
// reads as a pattern.
func globEscape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune("*?[\\", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// dialable turns a wildcard listen address into one a local client can
// dial and that the dev edge certificate covers.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}
