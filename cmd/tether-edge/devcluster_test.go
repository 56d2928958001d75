package main

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/device/agent"
	"github.com/tetherhq/tether/internal/testutil"
)

// runTrial runs `tether-edge dev --cluster N --dir dir` with args and
// returns its stdout; it must exit 0.
func runTrial(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(edgeBin, append([]string{"dev"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tether-edge dev %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

func TestDevClusterWritesATrial(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "trial")
	out := runTrial(t, "--cluster", "3", "--dir", dir, "--device", "bench-1")
	p := func(name string) string { return filepath.Join(dir, name) }

	// The commands it prints, exactly.
	for _, want := range []string{
		"Created a trial of 3 edges in " + dir + ` (device "bench-1").`,
		"  tether-edge --config " + p("edge-1.yaml") + "\n",
		"  tether-edge --config " + p("edge-2.yaml") + "\n",
		"  tether-edge --config " + p("edge-3.yaml") + "\n",
		"  haproxy -f " + p("haproxy.cfg") + "\n",
		"  tether-agent --config " + p("agent.yaml") + "\n",
		fmt.Sprintf("  tether --edge https://127.0.0.1:8440 --ca %s --token-file %s devices\n", p("ca.crt"), p("client.token")),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range trialFiles(3) {
		st, err := os.Stat(p(f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		secret := strings.HasSuffix(f, ".key") || strings.HasSuffix(f, ".yaml") || f == "client.token"
		if mode := st.Mode().Perm(); secret && mode != 0o600 {
			t.Errorf("%s has mode %v; want 0600", f, mode)
		}
	}

	// Each edge configuration loads and validates: its own ports, its own
	// peer certificate, routes to the two others, replicas 3, no warning.
	// Paths are relative to the file: load from another directory.
	t.Chdir(t.TempDir())
	balancerServers := map[string]bool{}
	for i := 1; i <= 3; i++ {
		c, err := loadConfig(p(trialEdgeConfig(i)))
		if err != nil {
			t.Fatalf("edge-%d.yaml: %v", i, err)
		}
		cl := c.cluster
		if cl == nil {
			t.Fatalf("edge-%d.yaml has no cluster section", i)
		}
		var others []string
		for j := 1; j <= 3; j++ {
			if j != i {
				others = append(others, fmt.Sprintf("127.0.0.1:%d", 6220+j))
			}
		}
		checks := []struct {
			what      string
			got, want any
		}{
			{"listen", c.file.Listen, fmt.Sprintf("127.0.0.1:%d", 8440+i)},
			{"metrics", c.file.MetricsListen, fmt.Sprintf("127.0.0.1:%d", 9090+i)},
			{"edge ID", cl.EdgeID, fmt.Sprintf("edge-%d", i)},
			{"peer listen", cl.PeerListen, fmt.Sprintf("127.0.0.1:%d", 8450+i)},
			{"advertise", cl.Advertise, fmt.Sprintf("https://127.0.0.1:%d", 8450+i)},
			{"route listen", cl.Embedded.Listen, fmt.Sprintf("127.0.0.1:%d", 6220+i)},
			{"routes", strings.Join(cl.Embedded.Routes, ","), strings.Join(others, ",")},
			{"store", cl.Embedded.Store, p(fmt.Sprintf("nats/edge-%d", i))},
			{"replicas", cl.Replicas, 3},
			{"warnings", strings.Join(c.warnings, "; "), ""},
		}
		for _, ch := range checks {
			if ch.got != ch.want {
				t.Errorf("edge-%d.yaml %s: got %v; want %v", i, ch.what, ch.got, ch.want)
			}
		}
		balancerServers[fmt.Sprintf("    server edge-%d %s\n", i, c.file.Listen)] = true
	}

	// The agent dials the balancer, with a certificate the edges accept.
	ac, err := agent.LoadConfig(p("agent.yaml"))
	if err != nil {
		t.Fatalf("agent.yaml: %v", err)
	}
	if ac.Edge != "https://127.0.0.1:8440/device" {
		t.Errorf("agent edge: got %s; want the balancer, https://127.0.0.1:8440/device", ac.Edge)
	}
	devCert, err := certs.LoadCertificate(ac.Cert)
	if err != nil {
		t.Fatal(err)
	}
	devPool, err := certs.LoadPool(p("device-ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if id, err := certs.VerifyDevice([]*x509.Certificate{devCert}, devPool, devCert.NotBefore.Add(1)); err != nil || id != "bench-1" {
		t.Errorf("the agent's certificate: got %q, %v; want bench-1 under the device CA", id, err)
	}
	checkDevFiles(t, dir, p(trialEdgeConfig(2)), "bench-1")
	if want := "File transfers (tether cp) reach " + p("files") + " on the device, and nothing else.\n"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}

	// HAProxy: TCP, round robin over the three edges, TLS health checks of
	// /readyz that verify the edges' certificate against the edge CA.
	cfg, err := os.ReadFile(p("haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	hcfg := string(cfg)
	for _, want := range []string{
		"    mode tcp\n", "    bind 127.0.0.1:8440\n", "    balance roundrobin\n", "    option httpchk GET /readyz\n",
		"    http-check expect status 200\n", " check check-ssl verify required ca-file " + p("ca.crt") + " verifyhost localhost ",
	} {
		if !strings.Contains(hcfg, want) {
			t.Errorf("haproxy.cfg lacks %q:\n%s", want, hcfg)
		}
	}
	for s := range balancerServers {
		if !strings.Contains(hcfg, s) {
			t.Errorf("haproxy.cfg lacks %q:\n%s", s, hcfg)
		}
	}
	if strings.Contains(hcfg, "verify none") {
		t.Errorf("haproxy.cfg checks without verifying:\n%s", hcfg)
	}
	edgeCert, err := certs.LoadCertificate(p("edge.crt"))
	if err != nil {
		t.Fatal(err)
	}
	caPool, err := certs.LoadPool(p("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "127.0.0.1"} {
		if _, err := edgeCert.Verify(x509.VerifyOptions{Roots: caPool, DNSName: host}); err != nil {
			t.Errorf("the edges' certificate does not verify for %s against ca.crt (HAProxy's ca-file, the agent's ca): %v", host, err)
		}
	}
	t.Run("haproxy -c", func(t *testing.T) {
		bin, err := exec.LookPath("haproxy")
		if err != nil {
			t.Skip("haproxy is not installed (apt-get install haproxy); the file was checked above but not by HAProxy itself")
		}
		if out, err := exec.Command(bin, "-c", "-f", p("haproxy.cfg")).CombinedOutput(); err != nil {
			t.Errorf("haproxy -c: %v\n%s", err, out)
		}
	})

	// A second run reuses the trial.
	tok, _ := os.ReadFile(p("client.token"))
	out = runTrial(t, "--cluster", "3", "--dir", dir)
	if !strings.Contains(out, "Using the trial of 3 edges in "+dir) || !strings.Contains(out, "haproxy -f "+p("haproxy.cfg")) {
		t.Errorf("second run did not reuse the trial:\n%s", out)
	}
	if tok2, _ := os.ReadFile(p("client.token")); !bytes.Equal(tok, tok2) {
		t.Error("the second run replaced client.token")
	}
}

func TestDevClusterRefusals(t *testing.T) {
	trial := filepath.Join(t.TempDir(), "trial")
	runTrial(t, "--cluster", "3", "--dir", trial)
	single := filepath.Join(t.TempDir(), "single")
	if err := createDev(single, defaultDevListen, "demo"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"another size on a trial", []string{"--cluster", "5", "--dir", trial}, "holds a trial of 3 edges; run with --cluster 3"},
		{"a single edge on a trial", []string{"--dir", trial}, "holds a cluster trial"},
		{"a trial on a single edge's set-up", []string{"--cluster", "3", "--dir", single}, "holds a single-edge dev set-up"},
		{"too many edges", []string{"--cluster", "6", "--dir", t.TempDir()}, "want 1 to 5 edges"},
		{"--listen with --cluster", []string{"--cluster", "3", "--listen", "127.0.0.1:9000", "--dir", t.TempDir()}, "--listen is for a single dev edge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			cmd := exec.Command(edgeBin, append([]string{"dev"}, tt.args...)...)
			cmd.Stderr = &stderr
			err := cmd.Run()
			if err == nil {
				t.Fatal("exit 0; want an error")
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("got %q; want it to say %q", stderr.String(), tt.want)
			}
		})
	}
	// An incomplete trial is named as such.
	if err := os.Remove(filepath.Join(trial, "peer-2.key")); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(edgeBin, "dev", "--cluster", "3", "--dir", trial)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "incomplete (missing peer-2.key)") {
		t.Errorf("incomplete trial: got %v, %q; want it named incomplete", err, stderr.String())
	}
}

// TestDevClusterTrialRuns starts the three edges of a trial (its ports
// moved to free ones): their embedded NATS servers form one cluster over
// mTLS routes (the buckets have three replicas, so no edge joins without
// the others), and a device on one edge is listed by another with its
// edge.
func TestDevClusterTrialRuns(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "trial")
	runTrial(t, "--cluster", "3", "--dir", dir)
	var moves []string // old, new address pairs for strings.NewReplacer
	for i := 1; i <= 3; i++ {
		for _, base := range []int{trialEdgePort, trialPeerPort, trialNATSPort, trialMetricsPort} {
			moves = append(moves, trialAddr(base, i), testutil.FreeAddr(t))
		}
	}
	move := strings.NewReplacer(moves...)
	addrs := make([]string, 4)
	for i := 1; i <= 3; i++ {
		path := filepath.Join(dir, trialEdgeConfig(i))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(move.Replace(string(b))), 0o600); err != nil {
			t.Fatal(err)
		}
		addrs[i] = move.Replace(trialAddr(trialEdgePort, i))
	}
	procs := make([]*testutil.Proc, 4)
	for i := 1; i <= 3; i++ {
		procs[i] = startEdge(t, "--config", filepath.Join(dir, trialEdgeConfig(i)))
	}
	for i := 1; i <= 3; i++ {
		waitFor(t, fmt.Sprintf("edge-%d to join the cluster state", i), func() bool {
			return procs[i].Exited() || strings.Contains(procs[i].Stderr(), `msg="joined the cluster state" edge_id=edge-`+fmt.Sprint(i))
		})
		if procs[i].Exited() {
			t.Fatalf("edge-%d exited:\n%s", i, procs[i].Stderr())
		}
	}

	kp, err := certs.Load(filepath.Join(dir, "device.crt"), filepath.Join(dir, "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	edgePool, err := certs.LoadPool(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	dc := &device.Client{URL: "https://" + addrs[1] + "/device", TLSConfig: certs.DeviceTLSConfig(kp.TLSCertificate(), edgePool), Config: nil, Logger: nil}
	if err := dc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	tok, err := os.ReadFile(filepath.Join(dir, "client.token"))
	if err != nil {
		t.Fatal(err)
	}
	hc := httpsClient(t, filepath.Join(dir, "ca.crt"))
	var listed []struct{ ID, Edge string }
	waitFor(t, "edge-3 to list the device on edge-1", func() bool {
		listed = nil
		err := testutil.GetJSON(hc, "https://"+addrs[3]+"/api/devices", strings.TrimSpace(string(tok)), &listed)
		return err == nil && len(listed) == 1 && listed[0].ID == "demo" && listed[0].Edge == "edge-1"
	})
	dc.Close()
	for i := 3; i >= 1; i-- {
		if err := stopEdge(t, procs[i]); err != nil {
			t.Errorf("edge-%d: exit %v after SIGTERM; want 0\n%s", i, err, procs[i].Stderr())
		}
	}
}

// checkDevFiles checks the file transfers of the dev set-up in dir: the
// agent lets tether cp read and write dir/files and nothing else, in a
// directory of the operator's alone, and the edge of edgeConfig lets the
// set-up's client reach device whatever the agent admits.
func checkDevFiles(t *testing.T, dir, edgeConfig, device string) {
	t.Helper()
	files := filepath.Join(dir, "files")
	ac, err := agent.LoadConfig(filepath.Join(dir, "agent.yaml"))
	if err != nil {
		t.Fatalf("agent.yaml: %v", err)
	}
	if want := []string{files}; !slices.Equal(ac.Files.Read, want) || !slices.Equal(ac.Files.Write, want) {
		t.Errorf("agent files: read %q, write %q; want %q for both", ac.Files.Read, ac.Files.Write, want)
	}
	if st, err := os.Stat(files); err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v, %v; want a directory with mode 0700", files, st, err)
	}
	for _, req := range [][]string{{"files", "write", files + "/fw.img"}, {"files", "read", files}} {
		var out, errOut strings.Builder
		args := append([]string{"policy", "check", "--config", edgeConfig, "--token-name", "dev", "--device", device}, req...)
		if err := run(args, &out, &errOut); err != nil {
			t.Errorf("tether-edge %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
		}
	}
}
