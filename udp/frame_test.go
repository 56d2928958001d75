package udp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport/target"
)

func TestAppendDecodeFrame(t *testing.T) {
	cases := []struct {
		name string
		port uint16
		data []byte
	}{
		{"empty", 53, nil},
		{"one byte", 1, []byte{7}},
		{"dns", 53, bytes.Repeat([]byte{0xab}, 512)},
		{"largest", 65535, bytes.Repeat([]byte{1}, MaxFrameData)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := AppendFrame([]byte("prefix"), tc.port, tc.data)
			require.NoError(t, err)
			port, data, n, err := DecodeFrame(b[len("prefix"):])
			require.NoError(t, err)
			assert.Equal(t, tc.port, port)
			assert.Equal(t, len(tc.data), len(data))
			assert.True(t, bytes.Equal(tc.data, data))
			assert.Equal(t, FrameHeaderSize+len(tc.data), n)
		})
	}
	_, err := AppendFrame(nil, 1, make([]byte, MaxFrameData+1))
	assert.ErrorIs(t, err, ErrDatagramTooLarge)
}

func TestDecodeFrameShort(t *testing.T) {
	for _, b := range [][]byte{nil, {0}, {0, 53, 0}, {0, 53, 0, 2, 'x'}} {
		_, _, _, err := DecodeFrame(b)
		assert.ErrorIs(t, err, ErrShortFrame, "input %x", b)
	}
}

func TestFrameReader(t *testing.T) {
	var in []byte
	in, _ = AppendFrame(in, 53, []byte("first"))
	in, _ = AppendFrame(in, 54, bytes.Repeat([]byte("z"), 11)) // over the limit
	in, _ = AppendFrame(in, 55, []byte("third"))
	in = append(in, 0, 56, 0, 9, 'c', 'u', 't') // cut short
	fr := newFrameReader(oneByteReader{bytes.NewReader(in)}, 10)

	port, data, err := fr.next()
	require.NoError(t, err)
	assert.Equal(t, uint16(53), port)
	assert.Equal(t, "first", string(data))

	port, _, err = fr.next()
	assert.ErrorIs(t, err, ErrDatagramTooLarge)
	assert.Equal(t, uint16(54), port)

	port, data, err = fr.next()
	require.NoError(t, err, "the reader must stay in step after a skipped frame")
	assert.Equal(t, uint16(55), port)
	assert.Equal(t, "third", string(data))

	_, _, err = fr.next()
	assert.ErrorIs(t, err, ErrShortFrame)

	fr = newFrameReader(bytes.NewReader(nil), 10)
	_, _, err = fr.next()
	assert.ErrorIs(t, err, io.EOF, "a clean end between frames is EOF")
}

// oneByteReader returns one byte per Read, like a peer writing a frame in
// pieces.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

// FuzzDecodeFrame checks that the slice decoder and the stream reader agree
// on any input, never read past what a length announces, and never
// allocate beyond their fixed buffer.
func FuzzDecodeFrame(f *testing.F) {
	seed := func(port uint16, data []byte) []byte {
		b, _ := AppendFrame(nil, port, data)
		return b
	}
	f.Add(seed(53, []byte("query")))
	f.Add(seed(0, nil))
	f.Add(seed(65535, bytes.Repeat([]byte{0xff}, 300)))
	f.Add(append(seed(1, []byte("a")), seed(2, []byte("bc"))...))
	f.Add([]byte{0, 53, 0xff, 0xff, 1, 2, 3})
	f.Add([]byte{0, 53})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		const limit = 256
		fr := newFrameReader(bytes.NewReader(b), limit)
		rest := b
		for {
			port, data, n, derr := DecodeFrame(rest)
			rport, rdata, rerr := fr.next()
			if derr != nil {
				if rerr == nil {
					t.Fatalf("DecodeFrame failed (%v) where the reader returned a frame", derr)
				}
				if !errors.Is(rerr, ErrShortFrame) && !errors.Is(rerr, io.EOF) {
					t.Fatalf("reader error %v on a short input", rerr)
				}
				return
			}
			if n != FrameHeaderSize+len(data) || n > len(rest) {
				t.Fatalf("frame size %d for %d data bytes in %d", n, len(data), len(rest))
			}
			if len(data) > limit {
				if !errors.Is(rerr, ErrDatagramTooLarge) || rport != port {
					t.Fatalf("reader: got %v for a %d-byte datagram; want ErrDatagramTooLarge", rerr, len(data))
				}
			} else if rerr != nil || rport != port || !bytes.Equal(rdata, data) {
				t.Fatalf("reader got port %d %x (%v); DecodeFrame got port %d %x", rport, rdata, rerr, port, data)
			}
			again, err := AppendFrame(nil, port, data)
			if err != nil || !bytes.Equal(again, rest[:n]) {
				t.Fatalf("re-encoding differs: %x vs %x (%v)", again, rest[:n], err)
			}
			rest = rest[n:]
		}
	})
}

// FuzzParseRequest checks that a payload either parses into a request that
// prints back to a payload parsing to the same request, or is refused.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"0:127.0.0.1:53", "5353:[::1]:5353", "1:localhost:161", "0:127.1:53",
		"65535:10.0.0.1:65535", "hello", "", ":", "0::", "01:1.2.3.4:5", "0:[::ffff:127.0.0.1]:53"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %v is not ErrBadRequest", err)
			}
			return
		}
		if r.SourcePort < 0 || r.SourcePort > 65535 || r.Target.Port < 1 || r.Target.Port > 65535 {
			t.Fatalf("ports out of range: %+v", r)
		}
		r2, err := ParseRequest([]byte(r.String()))
		if err != nil || r2 != r {
			t.Fatalf("%q → %+v → %q → %+v (%v)", b, r, r.String(), r2, err)
		}
	})
}

func TestParseRequest(t *testing.T) {
	good := []struct {
		in   string
		src  int
		host string
		port int
	}{
		{"0:127.0.0.1:53", 0, "127.0.0.1", 53},
		{"5353:[::1]:5353", 5353, "::1", 5353},
		{"161:127.1:161", 161, "127.0.0.1", 161},
		{"1:[::ffff:127.0.0.1]:53", 1, "127.0.0.1", 53},
		{"65535:Device.Local:9", 65535, "device.local", 9},
	}
	for _, tc := range good {
		r, err := ParseRequest([]byte(tc.in))
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.src, r.SourcePort, tc.in)
		assert.Equal(t, tc.host, r.Target.Host, tc.in)
		assert.Equal(t, tc.port, r.Target.Port, tc.in)
	}
	for _, in := range []string{"", "53", "x:127.0.0.1:53", "-1:127.0.0.1:53", "01:127.0.0.1:53", "65536:127.0.0.1:53",
		" 1:127.0.0.1:53", "1:127.0.0.1:53 ", "1:127.0.0.1:0", "1:127.0.0.1", "1::53", "1:::1:53", "1:127.0.0.1:053"} {
		_, err := ParseRequest([]byte(in))
		assert.ErrorIs(t, err, ErrBadRequest, "%q must be refused", in)
	}
}

func TestCheckDestination(t *testing.T) {
	refused := []string{"0.0.0.0", "0.1.2.3", "::", "224.0.0.1", "239.255.255.250", "ff02::fb", "255.255.255.255"}
	for _, s := range refused {
		assert.ErrorIs(t, checkDestination(netip.MustParseAddr(s)), ErrRefused, s)
	}
	for _, s := range []string{"127.0.0.1", "::1", "10.0.0.7", "192.168.1.10", "2001:db8::1"} {
		assert.NoError(t, checkDestination(netip.MustParseAddr(s)), s)
	}
}

func TestBindAddr(t *testing.T) {
	cases := []struct{ dst, want string }{
		{"127.0.0.1", "127.0.0.1:53"},
		{"127.0.0.2", "127.0.0.1:53"},
		{"::1", "[::1]:53"},
		{"10.0.0.7", "0.0.0.0:53"},
		{"2001:db8::1", "[::]:53"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, bindAddr(netip.MustParseAddr(tc.dst), 53).String(), tc.dst)
	}
}

func TestPacketBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	b := packetBucket(100) // burst of 10
	passed := 0
	for i := 0; i < 50; i++ {
		if b.Allow(now) {
			passed++
		}
	}
	assert.Equal(t, 10, passed, "a burst passes a tenth of a second's worth")
	assert.False(t, b.Allow(now))
	now = now.Add(50 * time.Millisecond) // 5 tokens
	passed = 0
	for i := 0; i < 50; i++ {
		if b.Allow(now) {
			passed++
		}
	}
	assert.Equal(t, 5, passed)
	now = now.Add(time.Hour)
	passed = 0
	for i := 0; i < 50; i++ {
		if b.Allow(now) {
			passed++
		}
	}
	assert.Equal(t, 10, passed, "tokens never exceed the burst")

	for _, pps := range []int{0, -1} {
		unlimited := packetBucket(pps)
		for i := 0; i < 1000; i++ {
			require.True(t, unlimited.Allow(now), "packetBucket(%d) is unlimited", pps)
		}
	}
	slow := packetBucket(5) // a burst of at least one
	require.True(t, slow.Allow(now))
	require.False(t, slow.Allow(now))
}

type fakeResolver struct {
	addrs []netip.Addr
	err   error
}

func (f fakeResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return f.addrs, f.err
}

func TestResolveTarget(t *testing.T) {
	name := target.Target{Host: "svc.example", Port: 53}
	a := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	got, err := resolveTarget(context.Background(), fakeResolver{addrs: a("224.0.0.1", "::ffff:10.0.0.1")}, name)
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.1", got.String(), "the first usable address, unmapped")

	_, err = resolveTarget(context.Background(), fakeResolver{addrs: a("255.255.255.255", "ff02::1")}, name)
	assert.ErrorIs(t, err, ErrRefused, "a name with only unusable addresses is refused")

	_, err = resolveTarget(context.Background(), fakeResolver{err: errors.New("no such host")}, name)
	assert.ErrorContains(t, err, "no such host")
	assert.NotErrorIs(t, err, ErrRefused)

	_, err = resolveTarget(context.Background(), fakeResolver{}, name)
	assert.ErrorContains(t, err, "no addresses")

	got, err = resolveTarget(context.Background(), fakeResolver{err: errors.New("unused")}, target.Target{Host: "127.0.0.1", Port: 53})
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", got.String(), "an IP needs no lookup")
}

// BenchmarkFrameReader measures decoding a stream of 512-byte datagram
// frames, the per-datagram work of both relays besides the sockets.
func BenchmarkFrameReader(b *testing.B) {
	var in []byte
	const frames = 16384 // enough work for one iteration (make bench runs 1x)
	for i := 0; i < frames; i++ {
		in, _ = AppendFrame(in, 53, make([]byte, 512))
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	r := bytes.NewReader(in)
	fr := newFrameReader(r, 0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Reset(in)
		for j := 0; j < frames; j++ {
			if _, _, err := fr.next(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*frames)/b.Elapsed().Seconds(), "frames/s")
}
