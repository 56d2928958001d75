//go:build linux

package edge_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

// recBenchChildEnv makes the test binary run as an edge process that
// records shells into the directory it names ("-" records nothing), for
// BenchmarkRecording: "<PKI dir> <recording dir>".
const recBenchChildEnv = "TETHER_EDGE_REC_BENCH_CHILD"

func init() {
	if v := os.Getenv(recBenchChildEnv); v != "" {
		os.Exit(runRecBenchEdge(v))
	}
}

// runRecBenchEdge serves an edge, prints its address and its metrics
// address (which also serves /cpu: the process's CPU time in
// microseconds), and exits when stdin closes.
func runRecBenchEdge(arg string) int {
	pkiDir, recDir, _ := strings.Cut(arg, " ")
	if prof := os.Getenv("TETHER_EDGE_REC_BENCH_CPUPROFILE"); prof != "" {
		if recDir == "-" {
			prof += ".unrecorded"
		}
		f, err := os.Create(prof)
		if err == nil {
			_ = pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	kp, err := certs.Load(filepath.Join(pkiDir, "edge.crt"), filepath.Join(pkiDir, "edge.key"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pool, err := certs.LoadPool(filepath.Join(pkiDir, "ca.crt"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	metrics := &edge.Metrics{}
	srv := &edge.Server{DeviceCA: pool, Policy: edge.AllowAll{}, Metrics: metrics,
		Limits: edge.Limits{UpgradeRate: 1e6, UpgradeBurst: 1e6, MaxStreamsPerClientPerDevice: 1 << 20}}
	if recDir != "-" {
		srv.Recording = &edge.RecordingConfig{Mode: edge.RecordingBestEffort, Dir: recDir}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	hs := srv.HTTPServer(certs.EdgeTLSConfig(kp.TLSCertificate()))
	go hs.Serve(srv.Listener(ln, hs.TLSConfig))
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler())
	mux.HandleFunc("/cpu", func(w http.ResponseWriter, _ *http.Request) {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		fmt.Fprintln(w, ru.Utime.Nano()/1000+ru.Stime.Nano()/1000)
	})
	mux.HandleFunc("/mem", func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintln(w, ms.HeapInuse+ms.StackInuse)
	})
	ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go ms.Serve(mln)
	fmt.Printf("%s %s\n", ln.Addr(), mln.Addr())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	hs.Close()
	ms.Close()
	srv.Close()
	return 0
}

// benchEdge is an edge child process with a device connected to it.
type benchEdge struct {
	url, metrics string
	c            *client.Client
	dial         func() *client.Client // another client session
}

func startRecBenchEdge(b *testing.B, pki *certstest.PKI, recDir string) *benchEdge {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), recBenchChildEnv+"="+pki.Dir+" "+recDir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("edge child: %v", err)
	}
	addrs := strings.Fields(line)
	e := &benchEdge{url: "https://" + addrs[0], metrics: "http://" + addrs[1]}

	dkp, err := pki.CA.IssueDevice("bench-rec", certs.Options{})
	if err != nil {
		b.Fatal(err)
	}
	dc := &device.Client{URL: e.url + "/device", TLSConfig: pki.DeviceTLS(dkp), BackoffInitial: 50 * time.Millisecond, BackoffMax: time.Second}
	srv := &pty.Server{Config: pty.Config{Enabled: true, Shell: "/bin/sh"}}
	dc.Handle(wire.MsgPTY, srv.ServePTY)
	dc.Handle(wire.MsgPTYCommand, srv.ServeCommand)
	if err := dc.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dc.Close(); srv.Close() })
	deadline := time.Now().Add(30 * time.Second)
	for scrapeSum(b, e.metrics+"/metrics", "tether_edge_devices_connected") < 1 {
		if time.Now().After(deadline) {
			b.Fatal("the device did not connect")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.dial = func() *client.Client {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := (&client.Dialer{Edge: e.url, Token: "bench", TLSConfig: certs.ClientTLSConfig(certs.PoolOf(pki.CA.Cert))}).Dial(ctx, "bench-rec")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	e.c = e.dial()
	return e
}

// cpu is the edge process's CPU time so far.
func (e *benchEdge) cpu(b *testing.B) time.Duration {
	resp, err := http.Get(e.metrics + "/cpu")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	us, err := strconv.ParseInt(strings.TrimSpace(string(body)), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return time.Duration(us) * time.Microsecond
}

// shell runs command in a PTY and reads its output to the end; it
// returns the bytes read.
func (e *benchEdge) shell(b *testing.B, command string) int64 {
	p, err := pty.Open(context.Background(), e.c, pty.Request{Cols: 120, Rows: 40, Command: "/bin/sh", Args: []string{"-c", command}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	n, err := io.Copy(io.Discard, p)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// writeTextCorpus writes n bytes of log-like text lines, the output of a
// typical text session.
func writeTextCorpus(b *testing.B, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	units := []string{"sshd", "kernel", "systemd", "tether-agent", "cron", "dhclient"}
	for i, written := 0, 0; written < n; i++ {
		l := fmt.Sprintf("Dec  2 14:%02d:%02d device-%03d %s[%d]: event %d: %s <status=ok> & queue=%d\n",
			i/60%60, i%60, i%7, units[i%len(units)], 1000+i%97, i, strings.Repeat("text ", 2+i%9), i%13)
		w.WriteString(l)
		written += len(l)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
}

// BenchmarkRecording measures what recording costs, against an edge that
// records nothing, in the same run: PTY throughput of a text flood
// (x-unrecorded-throughput, goal >= 0.9), the edge's CPU time per byte
// (x-unrecorded-edge-cpu, goal <= 1.05), a typical text session's file
// against its raw output (x-raw-output, goal <= 1.3), and the edge's
// memory per open recorded shell beyond an unrecorded one (x-64KiB, goal
// <= 1).
func BenchmarkRecording(b *testing.B) {
	pki := certstest.New(b)
	recDir := b.TempDir()
	plain := startRecBenchEdge(b, pki, "-")
	rec := startRecBenchEdge(b, pki, recDir)
	corpus := filepath.Join(b.TempDir(), "corpus.txt")
	const floodBytes = 16 << 20
	writeTextCorpus(b, corpus, floodBytes)

	// Throughput and CPU: the same flood through each edge, in turns;
	// the best time of each counts, the CPU of all runs.
	const rounds = 6
	var best [2]time.Duration
	var cpu [2]time.Duration
	var moved [2]int64
	for r := 0; r < rounds; r++ {
		for i, e := range []*benchEdge{plain, rec} {
			c0 := e.cpu(b)
			t0 := time.Now()
			moved[i] += e.shell(b, "cat "+corpus)
			d := time.Since(t0)
			cpu[i] += e.cpu(b) - c0
			if best[i] == 0 || d < best[i] {
				best[i] = d
			}
		}
	}
	mbps := func(i int) float64 { return float64(moved[i]/rounds) / best[i].Seconds() / 1e6 }
	cpuPerGB := func(i int) float64 { return cpu[i].Seconds() / (float64(moved[i]) / 1e9) }
	b.ReportMetric(mbps(0), "unrecorded-MB/s")
	b.ReportMetric(mbps(1), "recorded-MB/s")
	b.ReportMetric(mbps(1)/mbps(0), "x-unrecorded-throughput")
	b.ReportMetric(cpuPerGB(0), "unrecorded-edge-CPU-s/GB")
	b.ReportMetric(cpuPerGB(1), "recorded-edge-CPU-s/GB")
	b.ReportMetric(cpuPerGB(1)/cpuPerGB(0), "x-unrecorded-edge-cpu")

	// A typical text session: commands whose output comes in bursts
	// (a page of log lines each), with pauses between them; the edge's
	// CPU for it, and the size of its recording.
	if err := os.RemoveAll(recDir); err != nil {
		b.Fatal(err)
	}
	typical := fmt.Sprintf(`for i in $(seq 1 40); do sed -n "$((i*50)),$((i*50+49))p" %s; sleep 0.02; done; ls -l /usr/bin | head -200`, corpus)
	var typCPU [2]time.Duration
	var raw int64
	for i, e := range []*benchEdge{plain, rec} {
		c0 := e.cpu(b)
		raw = e.shell(b, typical)
		// The recording is closed once the shell's exit status is in.
		for deadline := time.Now().Add(30 * time.Second); scrapeSum(b, e.metrics+"/metrics", "tether_edge_recordings_active") > 0; {
			if time.Now().After(deadline) {
				b.Fatal("the recording did not close")
			}
			time.Sleep(20 * time.Millisecond)
		}
		typCPU[i] = e.cpu(b) - c0
	}
	b.ReportMetric(float64(typCPU[1])/float64(typCPU[0]), "x-unrecorded-edge-cpu-typical")
	var size int64
	_ = filepath.Walk(recDir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			size += fi.Size()
		}
		return nil
	})
	b.ReportMetric(float64(size)/float64(raw), "x-raw-output")

	// Memory: open shells that printed a screen and wait, on each edge.
	const shells = 120 // 30 per client session, whose stream cap is 64
	mem := func(e *benchEdge) float64 {
		resp, err := http.Get(e.metrics + "/mem")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		v, err := strconv.ParseFloat(strings.TrimSpace(string(body)), 64)
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	memOf := func(e *benchEdge) float64 {
		before := mem(e)
		var open []*pty.Session
		clients := []*client.Client{e.c, e.dial(), e.dial(), e.dial()}
		before = mem(e) // the sessions are not the shells'
		for i := 0; i < shells; i++ {
			p, err := pty.Open(context.Background(), clients[i%len(clients)], pty.Request{Cols: 120, Rows: 40, Command: "/bin/sh", Args: []string{"-c", fmt.Sprintf("head -c 3000 %s; echo; echo ready; sleep 60", corpus)}})
			if err != nil {
				b.Fatal(err)
			}
			open = append(open, p)
			br := bufio.NewReader(p)
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				if strings.HasPrefix(l, "ready") {
					break
				}
			}
		}
		time.Sleep(100 * time.Millisecond) // past the coalescing
		after := mem(e)
		for _, p := range open {
			p.Close()
		}
		for _, c := range clients[1:] {
			c.Close()
		}
		return (after - before) / shells
	}
	// The least of two turns each: other work on the machine only adds.
	perPlain, perRec := memOf(plain), memOf(rec)
	perPlain, perRec = min(perPlain, memOf(plain)), min(perRec, memOf(rec))
	extra := perRec - perPlain
	b.ReportMetric(perPlain/1024, "unrecorded-KiB/shell")
	b.ReportMetric(perRec/1024, "recorded-KiB/shell")
	b.ReportMetric(extra/1024, "recording-KiB/shell")
	b.ReportMetric(extra/(64<<10), "x-64KiB")
}
