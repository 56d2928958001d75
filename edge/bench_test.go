package edge_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

// benchChildEnv makes the test binary run as a bare edge process (see
// runBenchEdge), so that memory is measured in a process that holds only
// the edge's side of each session.
const benchChildEnv = "TETHER_EDGE_BENCH_CHILD_DIR"

func init() {
	if dir := os.Getenv(benchChildEnv); dir != "" {
		os.Exit(runBenchEdge(dir))
	}
}

// runBenchEdge serves an edge with the PKI files in dir, prints its address
// and its metrics address, and exits when stdin closes.
func runBenchEdge(dir string) int {
	kp, err := certs.Load(filepath.Join(dir, "edge.crt"), filepath.Join(dir, "edge.key"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pool, err := certs.LoadPool(filepath.Join(dir, "ca.crt"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	metrics := &edge.Metrics{}
	srv := &edge.Server{DeviceCA: pool, Policy: edge.AllowAll{}, Metrics: metrics,
		Limits: edge.Limits{UpgradeRate: 1e6, UpgradeBurst: 1e6}}
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
	ms := &http.Server{Handler: metrics.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go ms.Serve(mln)
	fmt.Printf("%s %s\n", ln.Addr(), mln.Addr())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
	hs.Close()
	ms.Close()
	srv.Close()
	return 0
}

func scrapeSum(b *testing.B, url string, names ...string) float64 {
	b.Helper()
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		for _, n := range names {
			if f[0] == n {
				v, _ := strconv.ParseFloat(f[1], 64)
				sum += v
			}
		}
	}
	return sum
}

// BenchmarkEdgeIdleSessionMemory connects 1,000 idle device sessions to an
// edge running in its own process and reports the edge's heap and stacks
// per session, next to the session receive buffer that bounds it.
func BenchmarkEdgeIdleSessionMemory(b *testing.B) {
	const sessions = 1000
	pki := certstest.New(b)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchChildEnv+"="+pki.Dir)
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
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("edge child: %v", err)
	}
	addrs := strings.Fields(line)
	edgeURL, metricsURL := "https://"+addrs[0]+"/device", "http://"+addrs[1]+"/metrics"
	mem := func() float64 {
		return scrapeSum(b, metricsURL, "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes")
	}
	before := mem()

	// Each session needs its own device ID: the edge replaces by ID.
	var mu sync.Mutex
	var sess []*transport.Session
	defer func() {
		for _, s := range sess {
			s.Close()
		}
	}()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := 0; i < sessions; i++ {
		dkp, err := pki.CA.IssueDevice(fmt.Sprintf("idle-%04d", i), certs.Options{})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			s, err := transport.Dial(ctx, edgeURL, "", pki.DeviceTLS(dkp), nil)
			if err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			sess = append(sess, s)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	deadline := time.Now().Add(60 * time.Second)
	for scrapeSum(b, metricsURL, "tether_edge_devices_connected") < sessions {
		if time.Now().After(deadline) {
			b.Fatal("the edge did not register every session")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let handshake garbage be collected
	after := mem()
	per := (after - before) / sessions
	b.ReportMetric(per/1024, "KiB/idle-session")
	b.ReportMetric(per/float64(transport.DefaultConfig().MaxReceiveBuffer), "x-receive-buffer")
}

// openLatency opens n streams one after another through o and returns the
// sorted round-trip times (opening message to answer).
func openLatency(b *testing.B, o transport.Opener, n int) []time.Duration {
	b.Helper()
	out := make([]time.Duration, 0, n)
	ctx := context.Background()
	for i := 0; i < n; i++ {
		t0 := time.Now()
		st, _, err := o.OpenStream(ctx, wire.MsgReload, nil)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(t0))
		st.Close()
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func pct(d []time.Duration, p float64) float64 {
	return float64(d[int(p*float64(len(d)-1))].Microseconds())
}

// BenchmarkStreamOpenLatency opens streams through the edge (client ->
// edge -> device and back) and, in the same run, directly on a raw smux
// session to the device, and reports p50/p99 of both.
func BenchmarkStreamOpenLatency(b *testing.B) {
	const n = 2000
	ok := func(ctx context.Context, st *transport.Stream, p []byte) error {
		_ = wire.WriteOK(st, nil)
		return nil
	}

	m := mock.New(b, mock.Options{Logger: slog.New(slog.DiscardHandler)})
	dev := m.DeviceClientWithID("bench")
	dev.Handle(wire.MsgReload, ok)
	viaEdge := m.ClientFor("bench")

	// Raw: the same DeviceClient handler code, its session dialled straight
	// by the opener (no edge in between).
	pki := certstest.New(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	rawSess := make(chan *transport.Session, 1)
	hs := &http.Server{TLSConfig: pki.EdgeTLS(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := transport.Upgrade(w, r, nil)
		if err == nil {
			rawSess <- s
		}
	})}
	go hs.ServeTLS(ln, "", "")
	defer hs.Close()
	rawDev := &device.Client{URL: "https://" + ln.Addr().String() + "/device", TLSConfig: pki.DeviceTLS(pki.Device("raw")), Config: nil, Logger: nil}
	rawDev.Handle(wire.MsgReload, ok)
	if err := rawDev.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer rawDev.Close()
	s := <-rawSess
	defer s.Close()
	raw := client.New(s)

	openLatency(b, viaEdge, 200) // warm up
	openLatency(b, raw, 200)
	b.ResetTimer()
	e := openLatency(b, viaEdge, n)
	r := openLatency(b, raw, n)
	b.StopTimer()
	b.ReportMetric(pct(e, 0.50), "edge-p50-us")
	b.ReportMetric(pct(e, 0.99), "edge-p99-us")
	b.ReportMetric(pct(r, 0.50), "raw-p50-us")
	b.ReportMetric(pct(r, 0.99), "raw-p99-us")
	b.ReportMetric(pct(e, 0.50)/pct(r, 0.50), "x-raw-p50")
	b.ReportMetric(pct(e, 0.99)/pct(r, 0.99), "x-raw-p99")
}
