package transport_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

func TestTunnelRoundTrip(t *testing.T) {
	b, pki := newBroker(t, nil)
	startDevice(t, b, pki, nil, nil)
	cl := dialClient(t, b, pki, nil)
	target := testutil.TCPServer(t, testutil.LineEcho)

	conn, err := tcp.Dial(testCtx(t), cl, target)
	require.NoError(t, err)
	defer conn.Close()
	msg := pattern(7, 200_000)
	errc := make(chan error, 1)
	go func() { _, err := conn.Write(msg); errc <- err }()
	got := make([]byte, len(msg))
	_, err = io.ReadFull(conn, got)
	require.NoError(t, err)
	require.NoError(t, <-errc)
	require.True(t, bytes.Equal(msg, got), "echo differs from what was sent")
}

func TestTunnelDialRefusedIsRemoteError(t *testing.T) {
	b, pki := newBroker(t, nil)
	startDevice(t, b, pki, nil, nil)
	cl := dialClient(t, b, pki, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()

	_, err = tcp.Dial(testCtx(t), cl, addr)
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "connection refused")
}

// TestTunnelHalfClose: the client writes a request and half-closes; the
// target answers only after EOF, and the client reads the whole answer.
func TestTunnelHalfClose(t *testing.T) {
	b, pki := newBroker(t, nil)
	startDevice(t, b, pki, nil, nil)
	cl := dialClient(t, b, pki, nil)
	target := testutil.TCPServer(t, patternAfterEOF)

	for _, size := range []int{0, 1, 300_000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			conn, err := tcp.Dial(testCtx(t), cl, target)
			require.NoError(t, err)
			defer conn.Close()
			req := binary.BigEndian.AppendUint32(nil, uint32(size))
			req = append(req, 42)
			_, err = conn.Write(req)
			require.NoError(t, err)
			require.NoError(t, conn.(*transport.Stream).CloseWrite())
			got, err := io.ReadAll(conn)
			require.NoError(t, err)
			require.Equal(t, size, len(got), "response length")
			require.True(t, bytes.Equal(pattern(42, size), got), "response content differs")
		})
	}
}

// TestTunnelHalfCloseStress runs 1,000 request → half-close → response
// exchanges with responses spread over 0..1 MiB through client → broker →
// device → target, several at a time, and checks that no byte is lost.
func TestTunnelHalfCloseStress(t *testing.T) {
	b, pki := newBroker(t, nil)
	startDevice(t, b, pki, nil, nil)
	cl := dialClient(t, b, pki, nil)
	target := testutil.TCPServer(t, patternAfterEOF)

	const (
		exchanges = 1000
		workers   = 8
	)
	// Sizes spread over 0..1 MiB: the edges, then a skew towards small
	// answers so the run stays short, with large ones throughout.
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := make([]int, exchanges)
	for i := range sizes {
		switch {
		case i == 0:
			sizes[i] = 0
		case i == 1:
			sizes[i] = 1 << 20
		case i%10 == 0:
			sizes[i] = rng.IntN(1<<20 + 1)
		default:
			sizes[i] = rng.IntN(64 << 10)
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		fails []string
		total int64
		next  = make(chan int)
	)
	// Only a guard against a hang: the exchanges share one generous bound.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				n, err := exchange(ctx, cl, target, sizes[i], byte(i))
				mu.Lock()
				total += int64(n)
				if err != nil {
					fails = append(fails, fmt.Sprintf("exchange %d (%d bytes): %v", i, sizes[i], err))
				}
				mu.Unlock()
			}
		}()
	}
	for i := range exchanges {
		next <- i
	}
	close(next)
	wg.Wait()
	require.Empty(t, fails)
	var want int64
	for _, s := range sizes {
		want += int64(s)
	}
	require.Equal(t, want, total, "bytes received over all exchanges")
}

func exchange(ctx context.Context, cl *client.Client, target string, size int, seed byte) (int, error) {
	conn, err := tcp.Dial(ctx, cl, target)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	req := binary.BigEndian.AppendUint32(nil, uint32(size))
	req = append(req, seed)
	if _, err := conn.Write(req); err != nil {
		return 0, err
	}
	if err := conn.(*transport.Stream).CloseWrite(); err != nil {
		return 0, err
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		return len(got), err
	}
	if len(got) != size {
		return len(got), fmt.Errorf("got %d bytes; want %d", len(got), size)
	}
	if !bytes.Equal(got, pattern(seed, size)) {
		return len(got), errors.New("content differs")
	}
	return len(got), nil
}

// TestTunnelHeadOfLine: a stream whose reader has stopped completely must
// not stall another stream of the same session, which moves 16 MiB.
func TestTunnelHeadOfLine(t *testing.T) {
	b, pki := newBroker(t, nil)
	startDevice(t, b, pki, nil, nil)
	cl := dialClient(t, b, pki, nil)
	const size = 16 << 20
	// The target sends size bytes as soon as a connection opens.
	target := testutil.TCPServer(t, func(c *net.TCPConn) {
		chunk := pattern(1, 64<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
		_ = c.CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	})
	ctx := testCtx(t)

	stalled, err := tcp.Dial(ctx, cl, target)
	require.NoError(t, err)
	defer stalled.Close()
	// Read one byte so the stream is certainly flowing, then stop reading.
	_, err = io.ReadFull(stalled, make([]byte, 1))
	require.NoError(t, err)

	moving, err := tcp.Dial(ctx, cl, target)
	require.NoError(t, err)
	defer moving.Close()
	n, err := io.Copy(io.Discard, moving)
	require.NoError(t, err)
	require.Equal(t, int64(size), n, "bytes on the moving stream")

	// The stalled stream still holds its data; it was only paused.
	n, err = io.Copy(io.Discard, stalled)
	require.NoError(t, err)
	require.Equal(t, int64(size-1), n, "bytes on the stalled stream")
}
