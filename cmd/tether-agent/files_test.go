package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckReportsFiles(t *testing.T) {
	w := newWorld(t)
	p := w.writeAgentConfig("dev-1", "files: {read: [\"/var/log\", \"/home/*/out\"]}\n")
	out, code := runBin(t, "tether-agent", "check", "--config", p)
	require.Equal(t, checkOK, code, "check exit code; output:\n%s", out)
	require.Contains(t, out, "ok    files: read /var/log, /home/*/out; write none")

	p = w.writeAgentConfig("dev-1", "files: {write: [\"data/in\"]}\n")
	out, code = runBin(t, "tether-agent", "check", "--config", p)
	require.NotEqual(t, checkOK, code)
	require.Contains(t, out, `files.write: "data/in" is not an absolute path`)
}
