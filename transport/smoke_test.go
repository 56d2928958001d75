package transport_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/transport"
)

// miniBroker is a minimal edge: one device, any client.
type miniBroker struct {
	t    *testing.T
	url  string
	mu   sync.Mutex
	dev  *transport.Session
	srv  *http.Server
	wg   sync.WaitGroup
	sess []*transport.Session
}

func newMiniBroker(t *testing.T, tc *tls.Config) *miniBroker {
	b := &miniBroker{t: t}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	require.NoError(t, err)
	b.url = "https://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/device", func(w http.ResponseWriter, r *http.Request) {
		s, err := transport.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		b.mu.Lock()
		b.dev = s
		b.sess = append(b.sess, s)
		b.mu.Unlock()
	})
	mux.HandleFunc("/client/", func(w http.ResponseWriter, r *http.Request) {
		s, err := transport.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		b.mu.Lock()
		b.sess = append(b.sess, s)
		dev := b.dev
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for {
				cs, err := s.AcceptStream()
				if err != nil {
					return
				}
				ds, err := dev.OpenStream()
				if err != nil {
					cs.Close()
					continue
				}
				b.wg.Add(1)
				go func() { defer b.wg.Done(); transport.Splice(cs, ds) }()
			}
		}()
	})
	b.srv = &http.Server{Handler: mux}
	go b.srv.Serve(ln)
	t.Cleanup(func() {
		b.srv.Close()
		b.mu.Lock()
		for _, s := range b.sess {
			s.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func TestSmokeTunnelHalfClose(t *testing.T) {
	pki := certstest.New(t)
	b := newMiniBroker(t, pki.EdgeTLS())

	// Target answers only after EOF.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, _ := io.ReadAll(c)
				resp := make([]byte, 300_000)
				copy(resp, req)
				c.Write(resp)
			}()
		}
	}()

	dc := transport.NewDeviceClient(b.url+"/device", pki.DeviceTLS(pki.Device("d1")), nil, nil)
	dc.Handle(transport.MsgTCP, func(ctx context.Context, st *transport.Stream, payload []byte) {
		c, err := net.DialTimeout("tcp", string(payload), 5*time.Second)
		if err != nil {
			transport.WriteError(st, err.Error())
			return
		}
		transport.WriteOK(st, nil)
		transport.Splice(st, c)
	})
	require.NoError(t, dc.Start(context.Background()))
	defer dc.Close()
	<-dc.Ready()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := transport.DialClient(ctx, b.url, "d1", "tok", pki.ClientTLS(), nil)
	require.NoError(t, err)
	defer cl.Close()
	for i := 0; i < 20; i++ {
		conn, err := cl.DialTCP(ctx, ln.Addr().String())
		require.NoError(t, err)
		_, err = conn.Write([]byte("hello"))
		require.NoError(t, err)
		require.NoError(t, conn.(*transport.Stream).CloseWrite())
		time.Sleep(10 * time.Millisecond)
		got, err := io.ReadAll(conn)
		require.NoError(t, err)
		require.Len(t, got, 300_000)
		require.Equal(t, "hello", string(got[:5]))
		conn.Close()
	}
}
