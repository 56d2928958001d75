package udp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
	"github.com/tetherhq/tether/udp"
)

// echo answers every datagram with "answer:" and the datagram.
func echo(_ *net.UDPAddr, data []byte) []byte {
	return append([]byte("answer:"), data...)
}

func TestDNSStyleEcho(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{})
	srv := newUDPServer(t, "127.0.0.1:0", echo)
	l := r.listen(t, srv.addr(), nil)
	peer := localPeer(t)

	query := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0, 1, 0, 1}
	_, err := peer.WriteToUDP(query, l.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	got, from := readFrom(t, peer)
	assert.Equal(t, append([]byte("answer:"), query...), got)
	assert.Equal(t, l.Addr().String(), from.String(), "the answer must come from the listener's address")

	st := l.Stats()
	assert.Equal(t, 1, st.Peers)
	assert.EqualValues(t, 1, st.StreamsOpened)
	assert.EqualValues(t, 1, r.dev.Stats().Opened)
}

func TestThousandDatagramsIntactInOrder(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{MaxPacketsPerSecond: -1})
	srv := newUDPServer(t, "127.0.0.1:0", func(_ *net.UDPAddr, d []byte) []byte { return d })
	l := r.listen(t, srv.addr(), nil)
	peer := localPeer(t)
	dst := l.Addr().(*net.UDPAddr)

	const count, window = 1000, 16
	rng := rand.New(rand.NewPCG(1, 2))
	sent := make([][]byte, count)
	for i := range sent {
		d := make([]byte, 1+rng.IntN(1400))
		for j := range d {
			d[j] = byte(rng.Uint32())
		}
		if len(d) >= 2 {
			binary.BigEndian.PutUint16(d, uint16(i))
		}
		sent[i] = d
	}
	next := 0
	for i := 0; i < count; i++ {
		// Keep a window in flight, so that no socket buffer overflows on a
		// busy machine: the test is about integrity and order, not speed.
		for next < count && next < i+window {
			_, err := peer.WriteToUDP(sent[next], dst)
			require.NoError(t, err)
			next++
		}
		got, _ := readFrom(t, peer)
		require.Truef(t, bytes.Equal(sent[i], got), "datagram %d: got %d bytes %x...; want %d bytes %x...",
			i, len(got), got[:min(8, len(got))], len(sent[i]), sent[i][:min(8, len(sent[i]))])
	}
	// The counters move just after each send.
	require.Eventually(t, func() bool {
		st := l.Stats()
		return st.DatagramsOut == count && st.DatagramsIn == count
	}, 10*time.Second, 5*time.Millisecond)
	assert.Zero(t, l.Stats().Dropped)
}

func TestPeersIsolated(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{})
	var mu sync.Mutex
	sources := map[string]bool{}
	srv := newUDPServer(t, "127.0.0.1:0", func(from *net.UDPAddr, d []byte) []byte {
		mu.Lock()
		sources[from.String()] = true
		mu.Unlock()
		return d
	})
	l := r.listen(t, srv.addr(), nil)
	a, b := localPeer(t), localPeer(t)
	dst := l.Addr().(*net.UDPAddr)

	for i := 0; i < 20; i++ {
		_, err := a.WriteToUDP([]byte(fmt.Sprintf("A%d", i)), dst)
		require.NoError(t, err)
		_, err = b.WriteToUDP([]byte(fmt.Sprintf("B%d", i)), dst)
		require.NoError(t, err)
		ga, _ := readFrom(t, a)
		gb, _ := readFrom(t, b)
		require.Equal(t, fmt.Sprintf("A%d", i), string(ga), "peer A got another peer's answer")
		require.Equal(t, fmt.Sprintf("B%d", i), string(gb), "peer B got another peer's answer")
	}
	mu.Lock()
	assert.Len(t, sources, 2, "each local peer must reach the remote from its own source port")
	mu.Unlock()
	assert.Equal(t, 2, l.Stats().Peers)
	assert.EqualValues(t, 2, r.dev.Stats().Opened)
	assert.Equal(t, 2, r.client.Session().NumStreams())
}

// TestReplyFromOtherPort: the remote answers from another port; the local
// peer must see the answer come from the matching local port, and what it
// sends there must reach that remote port.
func TestReplyFromOtherPort(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{})
	// The remote lives on 127.0.0.2 so that its ports are free on 127.0.0.1,
	// where the Listener opens its matching secondary socket.
	alt := make(chan string, 10)
	altSrv := newUDPServer(t, "127.0.0.2:0", func(from *net.UDPAddr, d []byte) []byte {
		alt <- from.String() + " " + string(d)
		return nil
	})
	altConn := altSrv.conn
	mainSrv := newUDPServer(t, "127.0.0.2:0", func(from *net.UDPAddr, d []byte) []byte {
		_, _ = altConn.WriteToUDP(append([]byte("from-alt:"), d...), from)
		return nil
	})
	l := r.listen(t, mainSrv.addr(), nil)
	peer := localPeer(t)

	_, err := peer.WriteToUDP([]byte("hello"), l.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	got, from := readFrom(t, peer)
	assert.Equal(t, "from-alt:hello", string(got))
	assert.Equal(t, "127.0.0.1", from.IP.String())
	assert.Equal(t, altSrv.port(), from.Port, "the answer must come from the local port matching the remote's source port")
	assert.Equal(t, 1, l.Stats().Secondaries)

	// The peer answers the port it heard from; it reaches the remote's
	// other port, through the same tunnel.
	_, err = peer.WriteToUDP([]byte("back"), from)
	require.NoError(t, err)
	select {
	case got := <-alt:
		assert.True(t, strings.HasSuffix(got, " back"), "got %q", got)
		assert.True(t, strings.HasPrefix(got, "127.0.0.1:"), "the device sends from loopback; got %q", got)
	case <-time.After(10 * time.Second):
		t.Fatal("the datagram sent to the secondary socket did not reach the remote's other port")
	}
	assert.EqualValues(t, 1, r.dev.Stats().Opened, "both directions must share the peer's one stream")
}

func TestClientIdleExpiryClosesStreamsAndSockets(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{IdleTimeout: time.Hour})
	altSrv := newUDPServer(t, "127.0.0.2:0", func(*net.UDPAddr, []byte) []byte { return nil })
	altConn := altSrv.conn
	mainSrv := newUDPServer(t, "127.0.0.2:0", func(from *net.UDPAddr, d []byte) []byte {
		_, _ = altConn.WriteToUDP(d, from)
		return d
	})
	l := r.listen(t, mainSrv.addr(), &udp.Listener{IdleTimeout: 300 * time.Millisecond})
	peer := localPeer(t)

	_, err := peer.WriteToUDP([]byte("ping"), l.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	ports := map[int]bool{}
	for i := 0; i < 2; i++ {
		_, from := readFrom(t, peer)
		ports[from.Port] = true
	}
	require.True(t, ports[altSrv.port()], "an answer must come from the secondary socket")

	require.Eventually(t, func() bool {
		st := l.Stats()
		return st.Peers == 0 && st.Secondaries == 0 &&
			r.client.Session().NumStreams() == 0 && r.dev.Stats().Active == 0
	}, 20*time.Second, 10*time.Millisecond, "idle streams and sockets must close")

	// The secondary socket is really closed: its port can be bound again.
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: altSrv.port()})
	require.NoError(t, err, "the secondary socket's port is still in use")
	c.Close()

	// A new datagram opens a new stream.
	_, err = peer.WriteToUDP([]byte("again"), l.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	got, _ := readFrom(t, peer)
	require.Contains(t, []string{"again"}, string(got))
	assert.EqualValues(t, 2, l.Stats().StreamsOpened)
}

func TestDeviceIdleExpiry(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{IdleTimeout: 500 * time.Millisecond})
	srv := newUDPServer(t, "127.0.0.1:0", echo)
	l := r.listen(t, srv.addr(), &udp.Listener{IdleTimeout: time.Hour})
	peer := localPeer(t)

	_, err := peer.WriteToUDP([]byte("one"), l.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	got, _ := readFrom(t, peer)
	require.Equal(t, "answer:one", string(got))

	require.Eventually(t, func() bool {
		return r.dev.Stats().Expired == 1 && r.dev.Stats().Active == 0 &&
			l.Stats().Peers == 0 && r.client.Session().NumStreams() == 0
	}, 20*time.Second, 10*time.Millisecond, "the device must end an idle tunnel and the client must notice")

	_, err = peer.WriteToUDP([]byte("two"), l.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	got, _ = readFrom(t, peer)
	require.Equal(t, "answer:two", string(got))
	assert.EqualValues(t, 2, r.dev.Stats().Opened)
}

// TestRefusedTargets checks every refusal of the device: through the real
// edge for well-formed requests (the edge refuses malformed ones itself),
// and through the raw broker for everything, so the device's own strict
// parsing is what answers.
func TestRefusedTargets(t *testing.T) {
	cfg := udp.DeviceConfig{Authorize: func(_ context.Context, tg target.Target) (netip.Addr, error) {
		if tg.Port == 25 {
			return netip.Addr{}, fmt.Errorf("not allowed: port 25 on device d1")
		}
		return netip.ParseAddr(tg.Host)
	}}
	cases := []struct {
		name, payload, want string
		malformed           bool
	}{
		{"broadcast", "0:255.255.255.255:53", "broadcast", false},
		{"broadcast odd spelling", "0:0xffffffff:53", "broadcast", false},
		{"multicast v4", "5353:224.0.0.251:5353", "multicast", false},
		{"multicast v6", "0:[ff02::1]:53", "multicast", false},
		{"unspecified v4", "0:0.0.0.0:53", "unspecified", false},
		{"unspecified v6", "0:[::]:53", "unspecified", false},
		{"this network", "0:0.1.2.3:53", "unspecified", false},
		{"policy", "0:127.0.0.1:25", "not allowed: port 25 on device d1", false},
		{"port zero", "0:127.0.0.1:0", "out of range", true},
		{"no source port", "127.0.0.1:53", "bad tunnel request", true},
		{"source port too big", "65536:127.0.0.1:53", "out of range", true},
		{"signed source port", "+1:127.0.0.1:53", "not a decimal", true},
		{"junk", "hello", "bad tunnel request", true},
		{"empty", "", "bad tunnel request", true},
		{"unbracketed v6", "0:::1:53", "bad tunnel request", true},
	}
	for _, via := range []struct {
		name string
		raw  bool
	}{{"edge", false}, {"raw", true}} {
		t.Run(via.name, func(t *testing.T) {
			var r *rig
			if via.raw {
				r = newRawRig(t, cfg)
			} else {
				r = newRig(t, cfg)
			}
			reached := 0
			for _, tc := range cases {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				st, _, err := r.client.OpenStream(ctx, wire.MsgUDP, []byte(tc.payload))
				cancel()
				if st != nil {
					st.Close()
				}
				var re *wire.RemoteError
				require.ErrorAs(t, err, &re, "%s: payload %q must be answered with an Error", tc.name, tc.payload)
				if via.raw || !tc.malformed {
					reached++
					assert.Contains(t, re.Reason, tc.want, tc.name)
				}
			}
			assert.EqualValues(t, reached, r.dev.Stats().Refused)
			assert.Zero(t, r.dev.Stats().Opened)
			assert.Zero(t, r.dev.Stats().DatagramsOut)
		})
	}
}

func TestListenRefusesNonUnicastRemote(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{})
	for _, remote := range []string{"255.255.255.255:53", "224.0.0.1:5353", "0.0.0.0:53", "[ff02::1]:53", "127.0.0.1:0", "nonsense"} {
		l := &udp.Listener{Opener: r.client, Remote: remote}
		err := l.Start(context.Background())
		assert.Error(t, err, "remote %q", remote)
		select {
		case <-l.Done():
			t.Errorf("remote %q: Done closed after a failed Start; want it open until Close", remote)
		default:
		}
		assert.Nil(t, l.Addr(), "remote %q: a socket bound after a failed Start", remote)
		l.Close()
	}
}

// rawTunnel opens a UDP tunnel stream by hand, to write frames directly.
func rawTunnel(t *testing.T, r *rig, payload string) *transport.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, _, err := r.client.OpenStream(ctx, wire.MsgUDP, []byte(payload))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

func frame(t *testing.T, port uint16, data []byte) []byte {
	b, err := udp.AppendFrame(nil, port, data)
	require.NoError(t, err)
	return b
}

func TestRateLimitDropsCounted(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{MaxPacketsPerSecond: 1})
	got := make(chan []byte, 1000)
	srv := newUDPServer(t, "127.0.0.1:0", func(_ *net.UDPAddr, d []byte) []byte {
		got <- append([]byte(nil), d...)
		return nil
	})
	st := rawTunnel(t, r, fmt.Sprintf("0:%s", srv.addr()))
	const n = 200
	var all []byte
	for i := 0; i < n; i++ {
		all = append(all, frame(t, uint16(srv.port()), []byte(fmt.Sprintf("d%d", i)))...)
	}
	_, err := st.Write(all)
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		s := r.dev.Stats()
		return s.DroppedRate+s.DatagramsOut == n
	}, 20*time.Second, 10*time.Millisecond)
	s := r.dev.Stats()
	assert.Positive(t, s.DroppedRate, "a burst over the rate must be dropped")
	assert.Positive(t, s.DatagramsOut, "the bucket's first token must pass")
	// What passed reached the target, in order, starting with the first.
	select {
	case first := <-got:
		assert.Equal(t, "d0", string(first))
	case <-time.After(10 * time.Second):
		t.Fatal("no datagram reached the target")
	}
}

func TestRawFramesBoundedAndCounted(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{MaxDatagram: 100})
	got := make(chan []byte, 10)
	srcs := make(chan *net.UDPAddr, 10)
	srv := newUDPServer(t, "127.0.0.1:0", func(from *net.UDPAddr, d []byte) []byte {
		srcs <- from
		got <- append([]byte(nil), d...)
		return nil
	})
	st := rawTunnel(t, r, "0:"+srv.addr())
	port := uint16(srv.port())

	// Too long for MaxDatagram: dropped and counted; the stream stays in step.
	_, err := st.Write(frame(t, port, bytes.Repeat([]byte("x"), 200)))
	require.NoError(t, err)
	// Port 0: dropped and counted.
	_, err = st.Write(frame(t, 0, []byte("nowhere")))
	require.NoError(t, err)
	// A frame split over several writes is reassembled.
	f := frame(t, port, []byte("fits"))
	for _, b := range f {
		_, err = st.Write([]byte{b})
		require.NoError(t, err)
	}
	select {
	case d := <-got:
		assert.Equal(t, "fits", string(d))
	case <-time.After(10 * time.Second):
		t.Fatal("the valid frame did not arrive")
	}
	// The counters move just after the send.
	require.Eventually(t, func() bool { return r.dev.Stats().DatagramsOut == 1 }, 10*time.Second, 5*time.Millisecond)
	s := r.dev.Stats()
	assert.EqualValues(t, 1, s.DroppedTooLarge)
	assert.EqualValues(t, 1, s.DroppedInvalid)
	tunnelAddr := <-srcs

	// From the target: too long is dropped and counted, the next arrives
	// framed with the target's source port.
	_, err = srv.conn.WriteToUDP(bytes.Repeat([]byte("y"), 101), tunnelAddr)
	require.NoError(t, err)
	// From another address: dropped, the tunnel only carries its target.
	stranger, err := net.ListenUDP("udp", mustUDPAddr(t, "127.0.0.2:0"))
	require.NoError(t, err)
	defer stranger.Close()
	_, err = stranger.WriteToUDP([]byte("spoof"), tunnelAddr)
	require.NoError(t, err)
	_, err = srv.conn.WriteToUDP([]byte("reply"), tunnelAddr)
	require.NoError(t, err)

	require.NoError(t, st.SetReadDeadline(time.Now().Add(10*time.Second)))
	hdr := make([]byte, 4+len("reply"))
	_, err = io.ReadFull(st, hdr)
	require.NoError(t, err)
	p, data, _, err := udp.DecodeFrame(hdr)
	require.NoError(t, err)
	assert.Equal(t, port, p)
	assert.Equal(t, "reply", string(data))
	require.Eventually(t, func() bool {
		s := r.dev.Stats()
		return s.DroppedTooLarge == 2 && s.DroppedForeign == 1
	}, 10*time.Second, 10*time.Millisecond)
}

// TestManyPeersConcurrent runs many peers at once against a short idle
// timeout on the Listener, so that its expiry races with traffic; under
// -race it checks the Listener's maps and timers, and the device ending
// tunnels whose client closed them while answers are on the way. A peer
// whose stream expired while its answer was on the way asks again.
//
// The device's own idle timeout stays long: a tunnel idles out when no
// datagram arrives within it of the OK, and on a loaded machine opening
// sixteen streams at once takes longer than any timeout short enough to
// race here (TestDeviceIdleExpiry covers the device's expiry).
func TestManyPeersConcurrent(t *testing.T) {
	const idle = 100 * time.Millisecond
	r := newRig(t, udp.DeviceConfig{IdleTimeout: time.Hour})
	srv := newUDPServer(t, "127.0.0.1:0", func(_ *net.UDPAddr, d []byte) []byte { return d })
	l := r.listen(t, srv.addr(), &udp.Listener{IdleTimeout: idle})
	dst := l.Addr().(*net.UDPAddr)

	const peers, rounds = 16, 10
	var wg sync.WaitGroup
	errs := make(chan error, peers)
	for p := 0; p < peers; p++ {
		c := localPeer(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 100)
			for i := 0; i < rounds; i++ {
				if i%3 == 2 {
					// Fall quiet around the idle timeout now and then (some
					// peers a little less, some a little more), so that
					// expiry races with the next datagram.
					time.Sleep(idle - 10*time.Millisecond + time.Duration(p)*4*time.Millisecond)
				}
				msg := fmt.Sprintf("%d/%d", p, i)
				ok := false
				for attempt := 0; attempt < 20 && !ok; attempt++ {
					if _, err := c.WriteToUDP([]byte(msg), dst); err != nil {
						errs <- err
						return
					}
					_ = c.SetReadDeadline(time.Now().Add(time.Second))
					for {
						n, _, err := c.ReadFromUDP(buf)
						if err != nil {
							break // timed out: ask again
						}
						if string(buf[:n]) == msg {
							ok = true
							break
						}
						if !strings.HasPrefix(string(buf[:n]), fmt.Sprintf("%d/", p)) {
							errs <- fmt.Errorf("peer %d got another peer's datagram %q", p, buf[:n])
							return
						}
					}
				}
				if !ok {
					errs <- fmt.Errorf("peer %d: no answer to %q after 20 attempts", p, msg)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	require.Eventually(t, func() bool {
		return l.Stats().Peers == 0 && r.dev.Stats().Active == 0
	}, 20*time.Second, 10*time.Millisecond)
	t.Logf("streams opened: %d for %d peers; device tunnels opened: %d", l.Stats().StreamsOpened, peers, r.dev.Stats().Opened)
}

func TestCloseEndsEverything(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{})
	srv := newUDPServer(t, "127.0.0.1:0", echo)
	l := &udp.Listener{Opener: r.client, Remote: srv.addr(), Logger: testLogger(t)}
	require.NoError(t, l.Start(context.Background()))
	for i := 0; i < 3; i++ {
		p := localPeer(t)
		_, err := p.WriteToUDP([]byte("x"), l.Addr().(*net.UDPAddr))
		require.NoError(t, err)
		readFrom(t, p)
	}
	require.Equal(t, 3, l.Stats().Peers)
	require.NoError(t, l.Close())
	select {
	case <-l.Done():
	default:
		t.Fatal("Done must be closed after Close")
	}
	assert.NoError(t, l.Err())
	assert.Equal(t, 0, l.Stats().Peers)
	require.Eventually(t, func() bool { return r.dev.Stats().Active == 0 }, 20*time.Second, 10*time.Millisecond)
	// The main socket is closed.
	c, err := net.ListenUDP("udp", l.Addr().(*net.UDPAddr))
	require.NoError(t, err, "the listener's port is still bound after Close")
	c.Close()
	require.NoError(t, l.Close(), "Close is idempotent")
}

func TestDeviceCloseEndsTunnels(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{})
	srv := newUDPServer(t, "127.0.0.1:0", echo)
	st := rawTunnel(t, r, "0:"+srv.addr())
	require.Eventually(t, func() bool { return r.dev.Stats().Active == 1 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, r.dev.Close())
	assert.EqualValues(t, 0, r.dev.Stats().Active)
	require.NoError(t, st.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err := st.Read(make([]byte, 1))
	require.Error(t, err, "the stream must end when the handler closes")
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the stream stayed open: %v", err)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _, err = r.client.OpenStream(ctx, wire.MsgUDP, []byte("0:"+srv.addr()))
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	assert.Contains(t, re.Reason, "shutting down")
}

// TestIPv6Loopback: a loopback IPv6 target is reached from a socket bound
// to ::1.
func TestIPv6Loopback(t *testing.T) {
	probe, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("this host has no IPv6 loopback: %v", err)
	}
	probe.Close()
	r := newRig(t, udp.DeviceConfig{})
	froms := make(chan string, 1)
	srv := newUDPServer(t, "[::1]:0", func(from *net.UDPAddr, d []byte) []byte {
		select {
		case froms <- from.IP.String():
		default:
		}
		return append([]byte("v6:"), d...)
	})
	l := r.listen(t, srv.addr(), nil)
	peer := localPeer(t)
	_, err = peer.WriteToUDP([]byte("q"), l.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	got, _ := readFrom(t, peer)
	assert.Equal(t, "v6:q", string(got))
	assert.Equal(t, "::1", <-froms, "the device must send from the IPv6 loopback")
}

// TestSuggestedSourcePort: the device sends from the local peer's port when
// that port is free on the device, as qbee-v1 does.
func TestSuggestedSourcePort(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{})
	froms := make(chan int, 1)
	srv := newUDPServer(t, "127.0.0.1:0", func(from *net.UDPAddr, d []byte) []byte {
		select {
		case froms <- from.Port:
		default:
		}
		return d
	})
	// Listener and peer on 127.0.0.2, so the peer's port is free on
	// 127.0.0.1, where the device binds for a loopback target.
	l := &udp.Listener{Opener: r.client, Local: "127.0.0.2:0", Remote: srv.addr(), Logger: testLogger(t)}
	require.NoError(t, l.Start(context.Background()))
	defer l.Close()
	peer, err := net.ListenUDP("udp", mustUDPAddr(t, "127.0.0.2:0"))
	require.NoError(t, err)
	defer peer.Close()

	_, err = peer.WriteToUDP([]byte("hi"), l.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	got, from := readFrom(t, peer)
	assert.Equal(t, "hi", string(got))
	assert.Equal(t, l.Addr().String(), from.String())
	assert.Equal(t, peer.LocalAddr().(*net.UDPAddr).Port, <-froms, "the device must try the peer's port first")
}

// TestListenerAgainstBadDevice: a device that answers OK, sends a good
// frame and then half a frame must cost the Listener the stream, and
// nothing else. (A frame from port 0 is a close frame:
// TestListenerShowsDeviceCloseReason.)
func TestListenerAgainstBadDevice(t *testing.T) {
	const remotePort = 5300
	var calls atomic.Int32
	r := newRawRigWith(t, func(ctx context.Context, st *transport.Stream, payload []byte) error {
		calls.Add(1)
		if err := wire.WriteOK(st, nil); err != nil {
			return nil
		}
		var fr []byte
		fr, _ = udp.AppendFrame(fr, remotePort, []byte("good"))
		fr = append(fr, 0x14, 0xb4, 0xff, 0xff, 'h', 'a', 'l', 'f')
		_, _ = st.Write(fr)
		// Wait for the client to give up on the stream.
		_, _ = io.Copy(io.Discard, st)
		return nil
	})
	l := r.listen(t, fmt.Sprintf("127.0.0.1:%d", remotePort), &udp.Listener{IdleTimeout: time.Hour})
	peer := localPeer(t)
	_, err := peer.WriteToUDP([]byte("q"), l.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	got, from := readFrom(t, peer)
	assert.Equal(t, "good", string(got))
	assert.Equal(t, l.Addr().String(), from.String())
	// The cut frame stays pending until the device closes; closing the
	// device side ends the stream, and the Listener forgets the peer.
	require.Eventually(t, func() bool { return l.Stats().DatagramsOut == 1 }, 20*time.Second, 5*time.Millisecond,
		"the peer's datagram must have gone out before the session is cut")
	r.client.Close()
	require.Eventually(t, func() bool { return l.Stats().Peers == 0 }, 20*time.Second, 10*time.Millisecond)
	assert.Zero(t, l.Stats().Dropped, "%+v", l.Stats())
	assert.Zero(t, l.Stats().ClosedByDevice, "%+v", l.Stats())
	assert.EqualValues(t, 1, l.Stats().DatagramsIn)
	assert.EqualValues(t, 1, calls.Load())
}

// TestListenerOpenRefused: a refused stream costs the peer's datagrams for
// a short hold-off, and the next datagram asks again.
func TestListenerOpenRefused(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{Authorize: func(context.Context, target.Target) (netip.Addr, error) {
		return netip.Addr{}, errors.New("not allowed: udp on device d1")
	}})
	srv := newUDPServer(t, "127.0.0.1:0", echo)
	l := r.listen(t, srv.addr(), &udp.Listener{IdleTimeout: 50 * time.Millisecond})
	peer := localPeer(t)
	require.Eventually(t, func() bool {
		_, _ = peer.WriteToUDP([]byte("q"), l.Addr().(*net.UDPAddr))
		return l.Stats().OpenFailures >= 2
	}, 20*time.Second, 20*time.Millisecond, "a peer must ask again after the hold-off")
	st := l.Stats()
	assert.Positive(t, st.Dropped)
	assert.Zero(t, st.StreamsOpened)
	assert.Zero(t, st.DatagramsOut)
	assert.GreaterOrEqual(t, r.dev.Stats().Refused, int64(2))
}

func TestListenerMaxPeers(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{})
	srv := newUDPServer(t, "127.0.0.1:0", echo)
	l := r.listen(t, srv.addr(), &udp.Listener{MaxPeers: 1})
	a, b := localPeer(t), localPeer(t)
	_, err := a.WriteToUDP([]byte("a"), l.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	got, _ := readFrom(t, a)
	assert.Equal(t, "answer:a", string(got))

	_, err = b.WriteToUDP([]byte("b"), l.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return l.Stats().Dropped == 1 }, 20*time.Second, 5*time.Millisecond,
		"a peer beyond MaxPeers is dropped and counted")
	assert.Equal(t, 1, l.Stats().Peers)
	assert.EqualValues(t, 1, r.dev.Stats().Opened)
}

// TestSetConfig: a new configuration applies to tunnels opened after it;
// open tunnels keep theirs.
func TestSetConfig(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{})
	got := make(chan string, 10)
	srv := newUDPServer(t, "127.0.0.1:0", func(_ *net.UDPAddr, d []byte) []byte {
		got <- string(d)
		return nil
	})
	st := rawTunnel(t, r, "0:"+srv.addr())
	r.dev.SetConfig(udp.DeviceConfig{Authorize: func(context.Context, target.Target) (netip.Addr, error) {
		return netip.Addr{}, errors.New("udp is off on this device")
	}})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _, err := r.client.OpenStream(ctx, wire.MsgUDP, []byte("0:"+srv.addr()))
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "udp is off on this device", re.Reason)

	_, err = st.Write(frame(t, uint16(srv.port()), []byte("still open")))
	require.NoError(t, err)
	select {
	case d := <-got:
		assert.Equal(t, "still open", d)
	case <-time.After(10 * time.Second):
		t.Fatal("the tunnel opened before SetConfig stopped relaying")
	}
}

// TestReplyFromOtherPortBusy: when the matching local port is taken, the
// secondary socket takes any port, and what the peer sends there still
// reaches the remote's other port.
func TestReplyFromOtherPortBusy(t *testing.T) {
	r := newRig(t, udp.DeviceConfig{})
	alt := make(chan string, 10)
	altSrv := newUDPServer(t, "127.0.0.2:0", func(_ *net.UDPAddr, d []byte) []byte {
		alt <- string(d)
		return nil
	})
	// Take the matching port on the Listener's IP.
	blocker, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: altSrv.port()})
	require.NoError(t, err)
	defer blocker.Close()
	altConn := altSrv.conn
	mainSrv := newUDPServer(t, "127.0.0.2:0", func(from *net.UDPAddr, d []byte) []byte {
		_, _ = altConn.WriteToUDP(d, from)
		return nil
	})
	l := r.listen(t, mainSrv.addr(), nil)
	peer := localPeer(t)

	_, err = peer.WriteToUDP([]byte("hello"), l.Addr().(*net.UDPAddr))
	require.NoError(t, err)
	got, from := readFrom(t, peer)
	assert.Equal(t, "hello", string(got))
	assert.NotEqual(t, altSrv.port(), from.Port, "the matching port is taken")
	assert.NotEqual(t, l.Addr().(*net.UDPAddr).Port, from.Port, "the answer must not look like it came from the remote's main port")

	_, err = peer.WriteToUDP([]byte("back"), from)
	require.NoError(t, err)
	select {
	case d := <-alt:
		assert.Equal(t, "back", d)
	case <-time.After(10 * time.Second):
		t.Fatal("the datagram sent to the fallback secondary socket did not reach the remote's other port")
	}
}
