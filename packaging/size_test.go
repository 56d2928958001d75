//go:build linux

package packaging_test

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// agentBudget is the most a stripped tether-agent may weigh, on every
// architecture: devices keep it in flash.
const agentBudget = 8 << 20

// TestAgentFitsItsBudget builds the largest agent, linux/mipsle, as make
// dist-agent does (its MIPS_LDFLAGS read from the Makefile), and checks
// that it fits the budget and that its segments are aligned to 16 KiB, no
// less: a kernel with 16 KiB pages must still load it.
func TestAgentFitsItsBudget(t *testing.T) {
	mk, err := os.ReadFile("../Makefile")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^MIPS_LDFLAGS := (.*)$`).FindSubmatch(mk)
	require.NotNil(t, m, "the Makefile sets no MIPS_LDFLAGS")
	agent := filepath.Join(t.TempDir(), "tether-agent-linux-mipsle")
	// A version as long as git describe's between releases. A cold
	// cross-build compiles the standard library for mipsle too: it gets
	// more time than the other commands.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/tetherhq/tether/internal/version.Version=v1.12.3-123-g0123456789ab"+
			" -X github.com/tetherhq/tether/internal/version.Commit="+testCommit+" "+string(m[1]),
		"-o", agent, "../cmd/tether-agent")
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=mipsle", "GOMIPS=softfloat", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "build the mipsle agent: %s", out)
	fi, err := os.Stat(agent)
	require.NoError(t, err)
	require.LessOrEqual(t, fi.Size(), int64(agentBudget), "the mipsle agent is %d bytes, %.3f of its 8 MiB budget", fi.Size(), float64(fi.Size())/agentBudget)
	f, err := elf.Open(agent)
	require.NoError(t, err)
	defer f.Close()
	loads := 0
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			loads++
			require.GreaterOrEqual(t, p.Align, uint64(16<<10), "a segment aligned to %#x: kernels with 16 KiB pages cannot load it", p.Align)
		}
	}
	require.Positive(t, loads)
	t.Logf("the mipsle agent is %d bytes, %.3f of its budget", fi.Size(), float64(fi.Size())/agentBudget)
}
