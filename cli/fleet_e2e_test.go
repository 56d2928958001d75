//go:build linux

package cli

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/transport/labels"
)

// TestExecOnAFleet runs the built binaries: tether exec on the devices
// that a glob and a label selector pick, each line prefixed with its
// device, the failures named, and the highest exit code.
func TestExecOnAFleet(t *testing.T) {
	f := newFleet(t)
	for id, site := range map[string]string{"gw-1": "berlin", "gw-2": "berlin", "gw-3": "paris"} {
		f.pki.DeviceWith(id, certs.Options{URIs: labels.URIs(labels.Set{"site": site})})
		f.startAgent(id, "")
	}
	f.addAgent("lab-1", "exec: {enabled: false}\n")

	// Every gateway: each line once, prefixed, stdout and stderr apart.
	out, errOut, code := f.tether("", "exec", "gw-*", "--", "printf 'one\\ntwo\\n'; echo err >&2")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "gw-1: one\ngw-1: two\ngw-2: one\ngw-2: two\ngw-3: one\ngw-3: two\n", sortedLines(out))
	require.Equal(t, "gw-1: err\ngw-2: err\ngw-3: err\n", sortedLines(errOut))

	// A selector alone, one device at a time: a line without its newline
	// ends with the device's output.
	out, errOut, code = f.tether("", "exec", "-l", "site=berlin", "--parallel", "1", "--", "printf partial")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "gw-1: partial\ngw-2: partial\n", sortedLines(out))
	// A selector and a pattern.
	out, errOut, code = f.tether("", "exec", "-l", "site!=berlin", "gw-*", "--", "echo here")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "gw-3: here\n", out)

	// The highest code, and each failure named: exit 3 on the gateways,
	// a refusal on lab-1, whose agent runs no commands.
	out, errOut, code = f.tether("", "exec", "*", "--", "echo ran; exit 3")
	require.Equal(t, ExitRemote, code, errOut)
	require.Equal(t, "gw-1: ran\ngw-2: ran\ngw-3: ran\n", sortedLines(out))
	for _, id := range []string{"gw-1", "gw-2", "gw-3"} {
		require.Contains(t, errOut, "tether: "+id+": exit 3\n")
	}
	require.Regexp(t, `(?m)^tether: lab-1: .*exec`, errOut)
	require.Contains(t, errOut, "tether: failed on 4 of 4 devices\n")
	_, errOut, code = f.tether("", "exec", "-l", "site", "--", "exit 3")
	require.Equal(t, 3, code, errOut)
	require.Contains(t, errOut, "tether: failed on 3 of 3 devices\n")

	// -o json: each device's result, for a script.
	out, errOut, code = f.tether("", "exec", "-o", "json", "*", "--", "echo out; echo err >&2; exit 3")
	require.Equal(t, ExitRemote, code, errOut)
	var recs []struct {
		Device, Stdout, Stderr, Error string
		ExitCode                      int `json:"exit_code"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &recs), out)
	require.Len(t, recs, 4)
	for i, id := range []string{"gw-1", "gw-2", "gw-3"} {
		require.Equal(t, id, recs[i].Device)
		require.Equal(t, 3, recs[i].ExitCode)
		require.Equal(t, "out\n", recs[i].Stdout)
		require.Equal(t, "err\n", recs[i].Stderr)
		require.Empty(t, recs[i].Error)
	}
	require.Equal(t, "lab-1", recs[3].Device)
	require.Equal(t, ExitRemote, recs[3].ExitCode)
	require.Contains(t, recs[3].Error, "exec")
	require.Empty(t, errOut, "-o json prints its results, not a summary")
	// A device alone is a fleet of one; yaml too.
	out, errOut, code = f.tether("", "exec", "-o", "yaml", "gw-2", "--", "echo hi")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "- device: gw-2\n  exit_code: 0\n  stdout: |\n    hi\n  stderr: \"\"\n", out)

	// --timeout: a command still running is hung up, on one device and
	// on each of a fleet, and tether exits 124.
	out, errOut, code = f.tether("", "exec", "--timeout", "1s", "gw-1", "--", "echo started; sleep 60")
	require.Equal(t, ExitTimeout, code, errOut)
	require.Equal(t, "started\n", out)
	require.Contains(t, errOut, "the command did not end within 1s (--timeout); it was hung up")
	out, errOut, code = f.tether("", "exec", "--timeout", "1s", "-l", "site=berlin", "--", "echo started; sleep 60")
	require.Equal(t, ExitTimeout, code, errOut)
	require.Equal(t, "gw-1: started\ngw-2: started\n", sortedLines(out))
	require.Contains(t, errOut, "tether: gw-2: timed out after 1s (--timeout); the command was hung up\n")
	for _, id := range []string{"gw-1", "gw-2"} {
		require.Eventually(t, func() bool { return strings.Count(f.agents[id].Stderr(), "killed by signal") >= 1 },
			20*time.Second, 50*time.Millisecond, "the command on %s was not hung up:\n%s", id, f.agents[id].Stderr())
	}
	_, errOut, code = f.tether("", "exec", "--timeout", "30s", "gw-3", "--", "exit 6")
	require.Equal(t, 6, code, "a command that ends in time keeps its code: %s", errOut)

	// Nothing matches: 7, and what to do; a selector that does not parse:
	// 2.
	_, errOut, code = f.tether("", "exec", "nope-*", "--", "true")
	require.Equal(t, ExitOffline, code, errOut)
	require.Contains(t, errOut, "no connected device matches 'nope-*'")
	_, errOut, code = f.tether("", "exec", "-l", "site=(", "--", "true")
	require.Equal(t, ExitUsage, code, errOut)
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}
