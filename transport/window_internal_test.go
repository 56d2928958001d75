package transport

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// updRecorder is a connection that parses the smux frames written to it and
// records every window update: its consumed count and window.
type updRecorder struct {
	net.Conn

	mu   sync.Mutex
	hdr  []byte // header bytes of the frame being parsed
	left int    // its payload bytes still to come
	upd  []byte // payload of the update being parsed
	isU  bool   // the frame being parsed is an update
	seen [][2]uint32
}

func (r *updRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	for _, b := range p {
		switch {
		case r.left > 0:
			r.left--
			if r.isU {
				r.upd = append(r.upd, b)
				if r.left == 0 && len(r.upd) == smuxUPDSize {
					r.seen = append(r.seen, [2]uint32{binary.LittleEndian.Uint32(r.upd), binary.LittleEndian.Uint32(r.upd[4:])})
				}
			}
		default:
			r.hdr = append(r.hdr, b)
			if len(r.hdr) == smuxHeaderSize {
				r.left = int(binary.LittleEndian.Uint16(r.hdr[2:4]))
				r.isU, r.upd = r.hdr[1] == smuxCmdUPD, nil
				r.hdr = r.hdr[:0]
			}
		}
	}
	r.mu.Unlock()
	return r.Conn.Write(p)
}

func (r *updRecorder) updates() [][2]uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][2]uint32(nil), r.seen...)
}

// TestWindowUpdatesKeepTheSenderGoing sends 16 MiB on one stream in
// writes of the sizes a splice makes, reads it as a splice does, and
// checks each window update the receiver sent: the byte whose reading
// triggered update k must lie within the edge that update k-2 granted.
// Otherwise that byte can only leave once update k-1 arrived, and the
// sender waits a round trip for every update: on a long link the stream
// runs at half its window. smux alone, which sends an update every half
// window and advertises that same window, fails this for 65,535-byte
// frames: two intervals of 17 frames are 32 bytes more than 2 MiB.
func TestWindowUpdatesKeepTheSenderGoing(t *testing.T) {
	base := &Config{MaxStreamWindow: DefaultMaxStreamBuffer}
	tests := []struct {
		name  string
		cfg   *Config
		write int
	}{
		{"splice buffers, fixed window", base, DefaultMaxFrameSize},
		{"splice buffers, growing window", nil, DefaultMaxFrameSize},
		{"64 KiB writes", base, 64 << 10},
		{"odd writes", base, 40000},
		{"32 KiB frames", &Config{MaxFrameSize: 32 << 10, MaxStreamWindow: DefaultMaxStreamBuffer}, 32 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			cc, err := net.Dial("tcp", ln.Addr().String())
			require.NoError(t, err)
			sc, err := ln.Accept()
			require.NoError(t, err)
			rec := &updRecorder{Conn: sc}
			server, err := NewServerSession(rec, tt.cfg)
			require.NoError(t, err)
			defer server.Close()
			client, err := NewClientSession(cc, tt.cfg)
			require.NoError(t, err)
			defer client.Close()

			const total = 16 << 20
			st, err := client.Open()
			require.NoError(t, err)
			errc := make(chan error, 1)
			go func() {
				buf := make([]byte, tt.write)
				for left := total; left > 0; left -= len(buf) {
					if left < len(buf) {
						buf = buf[:left]
					}
					if _, err := st.Write(buf); err != nil {
						errc <- err
						return
					}
				}
				errc <- st.CloseWrite()
			}()
			in, err := server.Accept()
			require.NoError(t, err)
			n, err := in.WriteTo(io.Discard)
			require.NoError(t, err)
			require.Equal(t, int64(total), n)
			require.NoError(t, <-errc)
			in.Close()
			st.Close()

			ups := rec.updates()
			require.Greater(t, len(ups), 16, "got %d window updates for 16 MiB; want one every eighth of a window", len(ups))
			window := uint32(tt.cfg.WithDefaults().MaxStreamBuffer)
			for k, u := range ups {
				require.GreaterOrEqual(t, u[1], window, "update %d advertises %d bytes; want at least the %d-byte stream window", k, u[1], window)
				if k < 2 {
					continue
				}
				prev := ups[k-2]
				edge := prev[0] + prev[1]
				require.LessOrEqual(t, int32(u[0]-edge), int32(0),
					"update %d (consumed %d) was triggered %d bytes beyond the edge update %d granted (%d): the sender waits a round trip for it",
					k, u[0], int32(u[0]-edge), k-2, edge)
			}
		})
	}
}

// fakeClock is a policer's clock that tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// TestWindowGrowsWithTheRoundTrip drives a policer as a long link would:
// a stream that consumes its whole window every round trip has its window
// doubled each round trip up to MaxStreamWindow; one that carries little
// keeps the window it started with.
func TestWindowGrowsWithTheRoundTrip(t *testing.T) {
	const rtt = 50 * time.Millisecond
	d := (&Config{}).WithDefaults()
	clk := &fakeClock{t: time.Unix(1000, 0)}
	p := newPolicer(d, func(uint32) {})
	p.now = clk.now
	p.opened(1, false)
	p.opened(3, false)

	upd := make([]byte, smuxUPDSize)
	advertise := func(sid, consumed uint32) uint32 {
		binary.LittleEndian.PutUint32(upd, consumed)
		binary.LittleEndian.PutUint32(upd[4:], uint32(d.MaxStreamBuffer/2))
		p.advertise(sid, upd)
		return binary.LittleEndian.Uint32(upd[4:])
	}

	// Stream 1 is bound by its window on a link whose whole round trip is
	// on the way back: the sender sends to the highest edge among the
	// updates sent a round trip ago or more, the receiver reads at once,
	// and an update leaves every eighth of the starting window, as smux
	// sends them.
	type sent struct {
		at   time.Time
		edge uint32
	}
	var (
		ups                []sent
		delivered, lastUpd uint32
		windows            []uint32
		senderEdge         = uint32(smuxInitialWindow)
		start              = clk.t
	)
	w := advertise(1, 0)
	require.Equal(t, uint32(d.MaxStreamBuffer), w)
	ups = append(ups, sent{clk.t, w})
	for tick := 1; tick <= 16*8; tick++ {
		clk.t = start.Add(time.Duration(tick) * rtt / 8)
		for _, u := range ups {
			if !u.at.After(clk.t.Add(-rtt)) && int32(u.edge-senderEdge) > 0 {
				senderEdge = u.edge
			}
		}
		for int32(senderEdge-delivered) > 0 {
			f := min(senderEdge-delivered, DefaultMaxFrameSize)
			require.NoError(t, p.received(1, f))
			delivered += f
			p.streams[1].app.Store(delivered)
			if delivered-lastUpd >= uint32(d.MaxStreamBuffer/8) {
				w := advertise(1, delivered)
				ups = append(ups, sent{clk.t, delivered + w})
				lastUpd = delivered
			}
		}
		if tick%8 == 0 {
			windows = append(windows, p.streams[1].window)
		}
	}
	got := p.roundTrip()
	require.Equal(t, rtt, got, "got a round trip of %v; want the %v between an update and the bytes beyond its old edge", got, rtt)
	require.Equal(t, uint32(d.MaxStreamWindow), windows[len(windows)-1], "got windows %v; want growth to MaxStreamWindow", windows)
	for i := 1; i < len(windows); i++ {
		require.GreaterOrEqual(t, windows[i], windows[i-1], "got windows %v; want them never to shrink without pressure", windows)
	}

	// Stream 3 carries 64 KiB per round trip: its window stays put.
	var c3 uint32
	for round := 0; round < 8; round++ {
		clk.t = clk.t.Add(rtt)
		require.NoError(t, p.received(3, 64<<10))
		c3 += 64 << 10
		p.streams[3].app.Store(c3)
		require.Equal(t, uint32(d.MaxStreamBuffer), advertise(3, c3), "round %d: a slow stream's window changed", round)
	}
}

// TestWindowsStayWithinTheBudget: once a stream has grown, streams that
// open later still fit: the windows of all open streams and smux's
// initial window for each stream that may still open never exceed
// MaxReceiveBuffer, and the grown stream's edge never moves back.
func TestWindowsStayWithinTheBudget(t *testing.T) {
	d := (&Config{MaxStreams: 16}).WithDefaults() // a 32 MiB budget
	clk := &fakeClock{t: time.Unix(1000, 0)}
	p := newPolicer(d, func(uint32) {})
	p.now = clk.now
	p.rtt = 10 * time.Millisecond
	upd := make([]byte, smuxUPDSize)
	advertise := func(sid, consumed uint32) uint32 {
		binary.LittleEndian.PutUint32(upd, consumed)
		p.advertise(sid, upd)
		return binary.LittleEndian.Uint32(upd[4:])
	}
	check := func(what string) {
		t.Helper()
		reserve := int64(d.MaxStreams-len(p.streams)) * smuxInitialWindow
		require.LessOrEqual(t, p.committed+reserve, int64(d.MaxReceiveBuffer),
			"%s: %d bytes of windows and %d reserved exceed the %d-byte budget", what, p.committed, reserve, d.MaxReceiveBuffer)
	}

	// One stream grows as far as the budget lets it.
	p.opened(1, false)
	var c uint32
	edge := uint32(0)
	for range 20 {
		clk.t = clk.t.Add(p.rtt)
		c += 8 << 20
		w := advertise(1, c)
		require.GreaterOrEqual(t, int32(c+w-edge), int32(0), "the edge moved back")
		edge = c + w
		check("one growing stream")
	}
	require.Greater(t, p.streams[1].window, uint32(d.MaxStreamBuffer), "the lone stream did not grow")

	// The others open and read: each gets what is left, and all fit.
	for sid := uint32(3); sid < uint32(2*d.MaxStreams); sid += 2 {
		p.opened(sid, false)
		check(fmt.Sprintf("stream %d opened", sid))
		w := advertise(sid, 1)
		require.GreaterOrEqual(t, w, uint32(smuxInitialWindow), "stream %d got a window of %d", sid, w)
		check(fmt.Sprintf("stream %d updated", sid))
	}
}

// delayProxy forwards TCP connections to target, holding every chunk for
// oneWay in each direction, without limiting throughput. Close stops it
// and waits for its goroutines.
type delayProxy struct {
	ln     net.Listener
	oneWay time.Duration
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newDelayProxy(t *testing.T, target string, rtt time.Duration) *delayProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	d := &delayProxy{ln: ln, oneWay: rtt / 2}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			d.mu.Lock()
			d.conns = append(d.conns, in, out)
			d.mu.Unlock()
			d.wg.Add(2)
			go d.pipe(out, in)
			go d.pipe(in, out)
		}
	}()
	t.Cleanup(d.close)
	return d
}

func (d *delayProxy) close() {
	d.ln.Close()
	d.mu.Lock()
	for _, c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

func (d *delayProxy) pipe(dst, src net.Conn) {
	defer d.wg.Done()
	type chunk struct {
		due  time.Time
		data []byte
	}
	q := make(chan chunk, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range q {
			time.Sleep(time.Until(c.due))
			if _, err := dst.Write(c.data); err != nil {
				src.Close()
				for range q {
				}
				return
			}
		}
		dst.Close()
	}()
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			q <- chunk{time.Now().Add(d.oneWay), buf[:n]}
		}
		if err != nil {
			close(q)
			<-done
			return
		}
	}
}

// TestRoundTripIsMeasured carries a bulk stream over a link with a 40 ms
// round trip and checks the receiver's measure of it: a window update
// cannot bring bytes beyond the edge it replaced sooner than a round trip,
// so the measure is never below the link's; and it was taken.
func TestRoundTripIsMeasured(t *testing.T) {
	const rtt = 40 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	proxy := newDelayProxy(t, ln.Addr().String(), rtt)
	cc, err := net.Dial("tcp", proxy.ln.Addr().String())
	require.NoError(t, err)
	sc, err := ln.Accept()
	require.NoError(t, err)
	server, err := NewServerSession(sc, nil)
	require.NoError(t, err)
	defer server.Close()
	client, err := NewClientSession(cc, nil)
	require.NoError(t, err)
	defer client.Close()

	const total = 8 << 20
	st, err := client.Open()
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, DefaultMaxFrameSize)
		for left := total; left > 0; left -= len(buf) {
			if _, err := st.Write(buf[:min(len(buf), left)]); err != nil {
				errc <- err
				return
			}
		}
		errc <- st.CloseWrite()
	}()
	in, err := server.Accept()
	require.NoError(t, err)
	n, err := in.WriteTo(io.Discard)
	require.NoError(t, err)
	require.Equal(t, int64(total), n)
	require.NoError(t, <-errc)
	in.Close()
	st.Close()

	got := server.conn.pol.roundTrip()
	require.GreaterOrEqual(t, got, rtt, "got a round trip of %v over a %v link; a measure below the link's is impossible", got, rtt)
}
