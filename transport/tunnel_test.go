package transport_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport/wire"
)

// TestTunnelHalfCloseStress runs 1,000 request → half-close → response
// exchanges with responses spread over 0..1 MiB through client → broker →
// device → target, several at a time, and checks that no byte is lost.
func TestTunnelHalfCloseStress(t *testing.T) {
	b := testbroker.New(t, nil)
	b.StartDevice(t, nil, nil)
	cl := b.DialClient(t, nil)
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

// TestTunnelHeadOfLine: a stream whose reader has stopped completely must
// not stall another stream of the same session, which moves 16 MiB.
func TestTunnelHeadOfLine(t *testing.T) {
	b := testbroker.New(t, nil)
	b.StartDevice(t, nil, nil)
	cl := b.DialClient(t, nil)
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

	stalled, _, err := cl.OpenStream(ctx, wire.MsgTCP, []byte(target))
	require.NoError(t, err)
	defer stalled.Close()
	// Read one byte so the stream is certainly flowing, then stop reading.
	_, err = io.ReadFull(stalled, make([]byte, 1))
	require.NoError(t, err)

	moving, _, err := cl.OpenStream(ctx, wire.MsgTCP, []byte(target))
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
