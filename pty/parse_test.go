//go:build linux

package pty

import (
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want procStat
		ok   bool
	}{
		{"plain", "42 (sh) S 1 42 42 34816 42 4194560", procStat{'S', 1, 42, 42}, true},
		{"spaces and parens in comm", "7 (a) b) (c) Z 3 4 5 0", procStat{'Z', 3, 4, 5}, true},
		{"no comm", "42 sh S 1 2 3", procStat{}, false},
		{"short", "42 (sh) S 1 2", procStat{}, false},
		{"not numbers", "42 (sh) S x 2 3", procStat{}, false},
		{"long state", "42 (sh) SS 1 2 3", procStat{}, false},
		{"empty", "", procStat{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseStat([]byte(tc.in))
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, got)
		})
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("42 (sh) S 1 42 42 34816 42 4194560"))
	f.Add([]byte("7 (a) b) (c) Z 3 4 5 0"))
	f.Add([]byte(")))"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, ok := parseStat(b)
		if !ok && st != (procStat{}) {
			t.Fatalf("failed parse returned %+v", st)
		}
	})
}

const passwdSample = `# comment
root:x:0:0:root:/root:/bin/bash
broken line
bad:x:notanumber:0::/:/bin/sh
svc:x:998:997:service:/var/lib/svc:
ops:x:1000:1000:Ops,,,:/home/ops:/bin/sh
`

func TestParsePasswd(t *testing.T) {
	byName := func(n string) func(passwdEntry) bool { return func(e passwdEntry) bool { return e.name == n } }
	e, ok := parsePasswd(strings.NewReader(passwdSample), byName("ops"))
	require.True(t, ok)
	require.Equal(t, passwdEntry{name: "ops", uid: 1000, gid: 1000, home: "/home/ops", shell: "/bin/sh"}, e)

	e, ok = parsePasswd(strings.NewReader(passwdSample), func(e passwdEntry) bool { return e.uid == 998 })
	require.True(t, ok)
	require.Equal(t, "svc", e.name)
	require.Equal(t, "/bin/sh", shellFor("", account{passwdEntry: e}), "an empty shell field falls back to /bin/sh")
	require.Equal(t, "/bin/zsh", shellFor("/bin/zsh", account{passwdEntry: e}))

	_, ok = parsePasswd(strings.NewReader(passwdSample), byName("bad"))
	require.False(t, ok)
	_, ok = parsePasswd(strings.NewReader(passwdSample), byName("nobody-here"))
	require.False(t, ok)
}

func FuzzParsePasswd(f *testing.F) {
	f.Add(passwdSample, "ops")
	f.Add("a:b:1:2:c:d:e\n", "a")
	f.Add(strings.Repeat("x", 70000)+"\nops:x:1:1::/:/bin/sh\n", "ops")
	f.Fuzz(func(t *testing.T, db, name string) {
		e, ok := parsePasswd(strings.NewReader(db), func(e passwdEntry) bool { return e.name == name })
		if ok && e.name != name {
			t.Fatalf("matched %q for %q", e.name, name)
		}
	})
}

func TestSignalName(t *testing.T) {
	require.Equal(t, "KILL", SignalName(syscall.SIGKILL))
	require.Equal(t, "HUP", SignalName(syscall.SIGHUP))
	require.Equal(t, "99", SignalName(syscall.Signal(99)))
}

func TestLookPath(t *testing.T) {
	p, err := lookPath("sh", rootPath)
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(p, "/sh"), p)
	p, err = lookPath("./x/y", rootPath)
	require.NoError(t, err)
	require.Equal(t, "./x/y", p)
	_, err = lookPath("no-such-command-tether", rootPath)
	require.ErrorContains(t, err, "not found in PATH")
}

func TestEnvironment(t *testing.T) {
	t.Setenv("LANG", "")
	a := account{passwdEntry: passwdEntry{name: "ops", uid: 1000, home: "/home/ops"}}
	require.Equal(t, []string{
		"TERM=xterm-256color", "HOME=/home/ops", "USER=ops", "LOGNAME=ops", "SHELL=/bin/sh", "PATH=" + userPath,
	}, environment(a, "/bin/sh", ""))
	a.uid = 0
	require.Contains(t, environment(a, "/bin/sh", "vt100"), "PATH="+rootPath)
	require.Contains(t, environment(a, "/bin/sh", "vt100"), "TERM=vt100")
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"disabled is always valid", Config{Shell: "relative", MaxSessions: -1}, ""},
		{"defaults", Config{Enabled: true}, ""},
		{"absolute shell", Config{Enabled: true, Shell: "/bin/sh"}, ""},
		{"relative shell", Config{Enabled: true, Shell: "sh"}, "not an absolute path"},
		{"missing shell", Config{Enabled: true, Shell: "/no/such/shell"}, "no such file"},
		{"shell is a directory", Config{Enabled: true, Shell: "/"}, "not an executable file"},
		{"negative max", Config{Enabled: true, MaxSessions: -1}, "negative"},
		{"negative idle", Config{Enabled: true, IdleTimeout: -1}, "negative"},
		{"unknown user", Config{Enabled: true, User: "no-such-user-tether"}, "not in /etc/passwd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.err == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tc.err)
			}
		})
	}
}
