package transport_test

import (
	"bufio"
	"crypto/tls"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/transport"
)

// The raw peer of the shared test rig (internal/testbroker) under the
// short names these tests use.
const (
	cmdSYN = testbroker.CmdSYN
	cmdFIN = testbroker.CmdFIN
	cmdPSH = testbroker.CmdPSH
	cmdNOP = testbroker.CmdNOP
	cmdUPD = testbroker.CmdUPD
	cmdRST = testbroker.CmdRST
)

const upgradeRequest = testbroker.UpgradeRequest

type rawPeer = testbroker.RawPeer

var (
	rawDial = testbroker.RawDial
	frame   = testbroker.Frame
	msg     = testbroker.Msg
)

// upgradeServer serves Upgrade on 127.0.0.1 over TLS and hands every
// session to the test. Sessions are closed when the test ends.
type upgradeServer struct {
	addr     string
	sessions chan *transport.Session
	refused  chan error
}

func newUpgradeServer(t testing.TB, cfg *transport.Config) (*upgradeServer, *certstest.PKI) {
	t.Helper()
	pki := certstest.New(t)
	return serveUpgrade(t, cfg, pki.EdgeTLS()), pki
}

// serveUpgrade is newUpgradeServer with the server's TLS configuration.
func serveUpgrade(t testing.TB, cfg *transport.Config, tc *tls.Config) *upgradeServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	require.NoError(t, err)
	us := &upgradeServer{addr: ln.Addr().String(), sessions: make(chan *transport.Session, 16), refused: make(chan error, 16)}
	var (
		mu   sync.Mutex
		all  []*transport.Session
		done bool
	)
	srv := &http.Server{ErrorLog: quietLog, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := transport.Upgrade(w, r, cfg)
		if err != nil {
			us.refused <- err
			return
		}
		mu.Lock()
		if done {
			s.Close()
		}
		all = append(all, s)
		mu.Unlock()
		us.sessions <- s
	})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
		mu.Lock()
		done = true
		for _, s := range all {
			s.Close()
		}
		mu.Unlock()
	})
	return us
}

func (us *upgradeServer) session(t testing.TB) *transport.Session {
	t.Helper()
	select {
	case s := <-us.sessions:
		return s
	case <-time.After(waitLong):
		t.Fatal("no session was upgraded")
		return nil
	}
}

// newRawEdgeAnswer serves one fixed answer to every request and returns
// the URL to dial.
func newRawEdgeAnswer(t testing.TB, pki *certstest.PKI, answer string) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.EdgeTLS())
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(waitLong))
			if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				_, _ = c.Write([]byte(answer))
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return "https://" + ln.Addr().String() + "/device"
}
