//go:build linux

package cli

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/internal/testutil"
)

// recordingFleet is a fleet whose edge records every shell (best_effort,
// into recs/ beside its config, audited into audit.jsonl), with one
// device d1 and a third client, auditor, that may read the recordings.
// The ops client runs shells but may not read recordings.
func recordingFleet(t *testing.T) (f *fleet, auditor string) {
	t.Helper()
	auditor, sum := testutil.NewToken(t)
	// The text goes on the clients list, then starts sections of its own.
	f = newFleetWith(t, `  - name: auditor
    token_sha256: "`+sum+`"
    devices: ["*"]
    recordings: read
recording:
  mode: best_effort
  dir: recs
audit_log: audit.jsonl
`)
	f.addAgent("d1", "")
	return f, auditor
}

// castLine is one event line of a recording as read back.
type castLine struct {
	Time float64
	Code string
	Data string
}

// readCast returns a recording's header and events.
func readCast(t *testing.T, path string) (map[string]any, []castLine) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	require.True(t, sc.Scan(), "empty recording")
	var header map[string]any
	require.NoError(t, json.Unmarshal(sc.Bytes(), &header))
	var events []castLine
	for sc.Scan() {
		var raw [3]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &raw), "line %q", sc.Text())
		tm, _ := raw[0].(float64)
		code, _ := raw[1].(string)
		d, _ := raw[2].(string)
		events = append(events, castLine{tm, code, d})
	}
	require.NoError(t, sc.Err())
	return header, events
}

// closedRecording waits for the stream_close audit record of the shell
// recorded as id (or of the only recorded shell when id is empty) and
// returns its recording object.
func closedRecording(t *testing.T, f *fleet, id string) map[string]any {
	t.Helper()
	var rec map[string]any
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(filepath.Join(f.dir, "audit.jsonl"))
		if err != nil {
			return false
		}
		for _, line := range strings.Split(string(data), "\n") {
			var r struct {
				Event     string         `json:"event"`
				Recording map[string]any `json:"recording"`
			}
			if json.Unmarshal([]byte(line), &r) != nil || r.Event != "stream_close" || r.Recording == nil {
				continue
			}
			if id == "" || r.Recording["id"] == id {
				rec = r.Recording
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "no stream_close record for the recording")
	return rec
}

// recordingFiles lists the .cast files under the edge's recording directory.
func recordingFiles(t *testing.T, f *fleet) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(f.dir, "recs", "*", "*", "*", "d1", "*.cast"))
	require.NoError(t, err)
	return files
}

// TestRecordedShellEndToEnd runs the three built binaries: a shell through
// an edge that records it, then the recording listed, replayed from the
// edge and from the file byte for byte as the shell printed it, vouched
// for by the audit log, and refused to a client without the right.
func TestRecordedShellEndToEnd(t *testing.T) {
	f, auditor := recordingFleet(t)

	// é is written as two separate writes, 0.3 s apart: the recorder sees
	// its two bytes in two reads.
	script := `printf 'start-\303'; sleep 0.3; printf '\251-end\n'; printf 'wide: \342\224\200\360\237\230\200 <&> "q" \\ tab\tend\n'; exit 3`
	shellOut, errOut, code := f.tether("", "shell", "-t", "d1", "--", script)
	require.Equal(t, 3, code, errOut)
	require.Contains(t, shellOut, "start-é-end")
	require.True(t, utf8.ValidString(shellOut))

	rec := closedRecording(t, f, "")
	id, _ := rec["id"].(string)
	require.NotEmpty(t, id, "the close record has no recording ID: %v", rec)

	files := recordingFiles(t, f)
	require.Len(t, files, 1)
	file := files[0]
	require.Equal(t, id+".cast", filepath.Base(file))
	data, err := os.ReadFile(file)
	require.NoError(t, err)

	t.Run("the audit log vouches for the file", func(t *testing.T) {
		sum := sha256.Sum256(data)
		require.Equal(t, hex.EncodeToString(sum[:]), rec["sha256"])
		require.EqualValues(t, len(data), rec["bytes"])
		fi, err := os.Stat(file)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	})

	t.Run("the split character survives as one", func(t *testing.T) {
		header, events := readCast(t, file)
		require.EqualValues(t, 2, header["version"])
		var out strings.Builder
		split := false
		for i, e := range events {
			if e.Code != "o" {
				continue
			}
			require.True(t, utf8.ValidString(e.Data))
			out.WriteString(e.Data)
			if strings.HasSuffix(e.Data, "start-") && i+1 < len(events) && strings.HasPrefix(events[i+1].Data, "é") {
				split = true
			}
		}
		require.True(t, split, "the two writes of é are not two events, the first ending before it: %q", events)
		require.Equal(t, shellOut, out.String())
	})

	t.Run("listed", func(t *testing.T) {
		table, errOut, code := runTether(t, baseEnv(t), "", f.args(auditor, "recordings")...)
		require.Equal(t, 0, code, errOut)
		lines := strings.Split(strings.TrimSpace(table), "\n")
		require.Len(t, lines, 2, table)
		require.Equal(t, []string{"ID", "DEVICE", "CLIENT", "AGE", "DURATION", "SIZE"}, strings.Fields(lines[0]))
		require.Equal(t, []string{id, "d1", "ops"}, strings.Fields(lines[1])[:3])

		js, errOut, code := runTether(t, baseEnv(t), "", f.args(auditor, "recordings", "-o", "json")...)
		require.Equal(t, 0, code, errOut)
		var list []struct {
			ID     string `json:"id"`
			Device string `json:"device"`
			Client string `json:"client"`
			Bytes  int64  `json:"bytes"`
		}
		require.NoError(t, json.Unmarshal([]byte(js), &list), js)
		require.Len(t, list, 1)
		require.Equal(t, id, list[0].ID)
		require.Equal(t, "d1", list[0].Device)
		require.Equal(t, "ops", list[0].Client)
		require.EqualValues(t, len(data), list[0].Bytes)

		js, errOut, code = runTether(t, baseEnv(t), "", f.args(auditor, "recordings", "--device", "other", "-o", "json")...)
		require.Equal(t, 0, code, errOut)
		require.NoError(t, json.Unmarshal([]byte(js), &list), js)
		require.Empty(t, list)
	})

	t.Run("played from the edge byte for byte", func(t *testing.T) {
		out, errOut, code := runTether(t, baseEnv(t), "", f.args(auditor, "play", id, "--cat", "--raw")...)
		require.Equal(t, 0, code, errOut)
		require.True(t, utf8.ValidString(out))
		require.Equal(t, shellOut, out)
	})

	t.Run("played from the file byte for byte", func(t *testing.T) {
		out, errOut, code := runTether(t, baseEnv(t), "", "play", file, "--cat")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, shellOut, out)
	})

	t.Run("refused without the right", func(t *testing.T) {
		_, errOut, code := f.tether("", "recordings")
		require.Equal(t, ExitForbidden, code, errOut)
		require.Contains(t, errOut, "recordings: read")

		out, errOut, code := f.tether("", "play", id, "--cat")
		require.Equal(t, ExitForbidden, code, errOut)
		require.Contains(t, errOut, "recordings: read")
		require.Empty(t, out)
	})

	t.Run("an unknown ID", func(t *testing.T) {
		_, errOut, code := runTether(t, baseEnv(t), "", f.args(auditor, "play", "edge-0000000000000000", "--cat")...)
		require.Equal(t, ExitOffline, code, errOut)
		require.Contains(t, errOut, "not found")
	})
}

// TestRecordedTerminalShellResizes records a shell run on a real terminal
// (tmux) whose window is resized: the header has the first size, a resize
// event the second, and the replay shows what was typed.
func TestRecordedTerminalShellResizes(t *testing.T) {
	f, auditor := recordingFleet(t)
	m, dir := shellInTmux(t, f)
	_, err := m.run("send-keys", "-t", "s", "echo typed-$((6*7))", "Enter")
	require.NoError(t, err)
	m.wait("the typed command did not run", func(p string) bool { return strings.Contains(p, "typed-42") })
	out, err := m.run("resize-window", "-t", "s", "-x", "120", "-y", "40")
	require.NoError(t, err, out)
	require.Eventually(t, func() bool {
		if strings.Contains(m.pane(), "40 120") {
			return true
		}
		_, _ = m.run("send-keys", "-t", "s", "stty size", "Enter")
		return false
	}, 30*time.Second, 500*time.Millisecond, "the resize did not reach the device:\n%s", m.pane())
	_, err = m.run("send-keys", "-t", "s", "exit 4", "Enter")
	require.NoError(t, err)
	require.Equal(t, "4", finished(t, m, dir))

	rec := closedRecording(t, f, "")
	files := recordingFiles(t, f)
	require.Len(t, files, 1)
	header, events := readCast(t, files[0])
	require.EqualValues(t, 100, header["width"])
	require.EqualValues(t, 30, header["height"])
	var resizes []string
	for _, e := range events {
		if e.Code == "r" {
			resizes = append(resizes, e.Data)
		}
		require.NotEqual(t, "i", e.Code, "input recorded though recording.input is off")
	}
	require.Equal(t, []string{"120x40"}, resizes)

	played, errOut, code := runTether(t, baseEnv(t), "", f.args(auditor, "play", rec["id"].(string), "--cat")...)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, played, "typed-42")
	require.Contains(t, played, "40 120")
}

// TestRecordedFullScreenProgramReplays records vi, a full-screen program,
// through the edge, and replays the recording on a terminal: stopped
// while vi shows, the replay leaves the terminal on its normal screen.
func TestRecordedFullScreenProgramReplays(t *testing.T) {
	testutil.NeedTool(t, "vi", "vim")
	f, auditor := recordingFleet(t)
	target := filepath.Join(t.TempDir(), "vi-target.txt")
	_, errOut, code := f.tether("", "shell", "-t", "d1", "--", "vi -u NONE -i NONE -N -c 'sleep 1' -c 'q!' "+target)
	require.Equal(t, 0, code, errOut)
	id, _ := closedRecording(t, f, "")["id"].(string)
	files := recordingFiles(t, f)
	require.Len(t, files, 1)
	data, err := os.ReadFile(files[0])
	require.NoError(t, err)
	require.Contains(t, string(data), `\u001b[?1049h`, "vi did not enter the alternate screen")

	// Slowed down ten times, vi's second lasts ten: time to stop it there.
	m, dir := playInTmux(t, "vi-target.txt", append(f.args(auditor), "--speed", "0.1", id)...)
	require.Equal(t, "1", m.alternateOn(), "the replay did not enter the alternate screen")
	_, err = m.run("send-keys", "-t", "s", "q")
	require.NoError(t, err)
	require.Equal(t, "0", finished(t, m, dir))
	require.Equal(t, "0", m.alternateOn(), "the terminal was left in the alternate screen:\n%s", m.pane())
	require.NotContains(t, m.pane(), "vi-target.txt")
}
