package agent

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport/wire"
)

// TestAgentExecFollowsReload starts with exec off, turns it on by reload
// (with pty.shell as the shell), runs a command, and turns it off again.
func TestAgentExecFollowsReload(t *testing.T) {
	env, edge := startAgent(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := pty.Exec(ctx, edge, "echo $0")
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "exec.enabled")

	env.writeConfig(t, "exec: {enabled: true}\npty: {shell: /bin/sh}\n")
	require.NoError(t, env.agent.Reload(ctx))
	e, err := pty.Exec(ctx, edge, "echo $0; exit 5")
	require.NoError(t, err)
	defer e.Close()
	require.NoError(t, e.CloseWrite())
	var out bytes.Buffer
	st, err := e.Wait(&out, &out)
	require.NoError(t, err)
	require.Equal(t, "sh\n", out.String(), "the command runs with pty.shell")
	require.Equal(t, 5, st.Code)

	env.writeConfig(t, "exec: {enabled: false}\n")
	require.NoError(t, env.agent.Reload(ctx))
	_, err = pty.Exec(ctx, edge, "true")
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "disabled")
}
