//go:build linux

package packaging_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testutil"
)

// The version and commit the test binaries are stamped with, as make
// dist does through -ldflags.
const (
	testVersion = "v1.2.3"
	testCommit  = "0123456789ab"
	pkgVersion  = "1.2.3" // what scripts/package.sh makes of testVersion
)

// patience bounds each command the test runs; it only keeps a broken test
// from hanging.
const patience = 2 * time.Minute

// entry is one path of a package: its mode as ls prints it and its owner.
type entry struct {
	mode, owner, group string
}

// pkg is what a package must hold.
type pkg struct {
	name      string
	example   string // the example configuration, in this directory
	files     map[string]entry
	conffiles []string
	scripts   map[string]string // deb maintainer script -> text it must hold
	rpmScript []string          // rpm scriptlets it must have
	// checkConfig, when set, runs the packaged binary on the packaged
	// example configuration.
	checkConfig func(t *testing.T, binary, config string)
}

var pkgs = []pkg{
	{
		name:    "tether-agent",
		example: "agent.yaml",
		files: map[string]entry{
			"/usr/bin/tether-agent":                    {"-rwxr-xr-x", "root", "root"},
			"/lib/systemd/system/tether-agent.service": {"-rw-r--r--", "root", "root"},
			"/etc/tether":                              {"drwxr-xr-x", "root", "root"},
			"/etc/tether/agent.yaml":                   {"-rw-------", "root", "root"},
			"/usr/share/man/man1/tether-agent.1.gz":    {"-rw-r--r--", "root", "root"},
		},
		conffiles: []string{"/etc/tether/agent.yaml"},
		scripts: map[string]string{
			"postinst": "systemctl daemon-reload",
			"prerm":    "systemctl disable --now tether-agent.service",
		},
		rpmScript: []string{"postinstall scriptlet", "preuninstall scriptlet"},
		// check's second step is the config, its third the CA file, which
		// is not there yet: exit code 3 says the config passed.
		// (cmd/tether-edge loads the example edge.yaml in its own tests.)
		checkConfig: func(t *testing.T, binary, config string) {
			cmd := exec.Command(binary, "check", "--config", config)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "%s", out)
			require.Equal(t, 3, ee.ExitCode(), "tether-agent check on the example config:\n%s", out)
		},
	},
	{
		name:    "tether-edge",
		example: "edge.yaml",
		files: map[string]entry{
			"/usr/bin/tether-edge":                    {"-rwxr-xr-x", "root", "root"},
			"/lib/systemd/system/tether-edge.service": {"-rw-r--r--", "root", "root"},
			"/etc/tether":                             {"drwxr-xr-x", "root", "root"},
			"/etc/tether/edge.yaml":                   {"-rw-r-----", "root", "tether-edge"},
			"/usr/share/man/man1/tether-edge.1.gz":    {"-rw-r--r--", "root", "root"},
		},
		conffiles: []string{"/etc/tether/edge.yaml"},
		scripts: map[string]string{
			"preinst":  "useradd --system --gid tether-edge",
			"postinst": "systemctl daemon-reload",
			"prerm":    "systemctl disable --now tether-edge.service",
		},
		rpmScript: []string{"preinstall scriptlet", "postinstall scriptlet", "preuninstall scriptlet"},
	},
}

// TestPackages builds tether, tether-agent and tether-edge as make dist
// does, for this machine's architecture, checks what each prints for
// --version, packages the agent and the edge with scripts/package.sh, and
// checks the .deb with dpkg-deb (control fields, conffiles, maintainer
// scripts, every path with its mode and owner, the files' contents, and
// that the packaged binary runs --version) and the .rpm with rpm.
func TestPackages(t *testing.T) {
	testutil.NeedTool(t, "dpkg-deb", "dpkg")
	bin, out := t.TempDir(), t.TempDir()
	build := testutil.Build{
		Flags: []string{"-trimpath", "-ldflags", "-s -w" +
			" -X github.com/tetherhq/tether/internal/version.Version=" + testVersion +
			" -X github.com/tetherhq/tether/internal/version.Commit=" + testCommit},
		Env: []string{"CGO_ENABLED=0"},
	}
	require.NoError(t, build.Binaries(bin, "../cmd/tether-agent", "../cmd/tether-edge", "../cmd/tether"))
	t.Run("version", func(t *testing.T) { checkVersions(t, bin) })
	// The manual pages, as make man writes them.
	man := t.TempDir()
	run(t, nil, "go", "run", "../internal/tools/mangen", "-bin", bin, "-out", man)
	tools := t.TempDir()
	env := []string{"NFPM_BIN=" + tools, "MANDIR=" + man}
	for _, p := range pkgs {
		what := strings.TrimPrefix(p.name, "tether-")
		run(t, env, "../scripts/package.sh", what, runtime.GOARCH, filepath.Join(bin, p.name), testVersion, out)
	}

	// A build from a commit with no release tag (git describe prints the
	// commit) sorts before every release, and dpkg and rpm accept it.
	t.Run("untagged version", func(t *testing.T) {
		dev := t.TempDir()
		run(t, env, "../scripts/package.sh", "agent", runtime.GOARCH, filepath.Join(bin, "tether-agent"), "9e40a23-dirty", dev)
		const want = "0.0.0~git.9e40a23.dirty"
		deb := filepath.Join(dev, "tether-agent_"+want+"_"+debArch()+".deb")
		require.Equal(t, want+"\n", run(t, nil, "dpkg-deb", "-f", deb, "Version"))
		run(t, nil, "dpkg", "--compare-versions", want, "lt", "0.1.0")
		if _, err := exec.LookPath("rpm"); err == nil {
			rpm := filepath.Join(dev, "tether-agent-"+want+"-1."+rpmArch()+".rpm")
			require.Equal(t, want, run(t, nil, "rpm", "-qp", "--qf", "%{VERSION}", rpm))
		}
	})

	for _, p := range pkgs {
		t.Run(p.name+".deb", func(t *testing.T) {
			checkDeb(t, p, filepath.Join(out, p.name+"_"+pkgVersion+"_"+debArch()+".deb"))
		})
		t.Run(p.name+".rpm", func(t *testing.T) {
			testutil.NeedTool(t, "rpm", "rpm")
			checkRPM(t, p, filepath.Join(out, p.name+"-"+pkgVersion+"-1."+rpmArch()+".rpm"))
		})
	}
}

// versionLine is what name --version prints for the test build.
func versionLine(name string) string {
	return name + " " + testVersion + " (protocol qbee-v1, commit " + testCommit + ", " +
		runtime.Version() + ", linux/" + runtime.GOARCH + ")\n"
}

// checkVersions runs --version, and the version command, of the three
// binaries as make dist builds them.
func checkVersions(t *testing.T, bin string) {
	for _, name := range []string{"tether", "tether-edge", "tether-agent"} {
		for _, args := range [][]string{{"--version"}, {"version"}} {
			require.Equal(t, versionLine(name), run(t, nil, filepath.Join(bin, name), args...), "%s %s", name, args[0])
		}
	}
}

func checkDeb(t *testing.T, p pkg, deb string) {
	// Control fields.
	fields := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(run(t, nil, "dpkg-deb", "-f", deb)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ": "); ok && !strings.HasPrefix(k, " ") {
			fields[k] = v
		}
	}
	require.Equal(t, p.name, fields["Package"])
	require.Equal(t, pkgVersion, fields["Version"])
	require.Equal(t, debArch(), fields["Architecture"])
	require.Equal(t, "net", fields["Section"])
	require.NotEmpty(t, fields["Maintainer"])
	require.Contains(t, fields["Description"], "Tether")

	// Configuration files survive upgrades and keep local changes.
	require.Equal(t, p.conffiles, strings.Fields(run(t, nil, "dpkg-deb", "-I", deb, "conffiles")))

	// Maintainer scripts: present, executable, valid sh, doing their job.
	ctrl := filepath.Join(t.TempDir(), "DEBIAN")
	run(t, nil, "dpkg-deb", "-e", deb, ctrl)
	for name, want := range p.scripts {
		path := filepath.Join(ctrl, name)
		st, err := os.Stat(path)
		require.NoError(t, err, "the package has no %s", name)
		require.NotZero(t, st.Mode()&0o111, "%s is not executable", name)
		run(t, nil, "sh", "-n", path)
		text, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Contains(t, string(text), want, name)
	}

	// Every path, with its mode and owner; nothing else.
	got := map[string]entry{}
	sc = bufio.NewScanner(strings.NewReader(run(t, nil, "dpkg-deb", "-c", deb)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		require.GreaterOrEqual(t, len(f), 6, "dpkg-deb -c line %q", sc.Text())
		path := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
		owner, group, _ := strings.Cut(f[1], "/")
		if _, want := p.files[path]; !want && f[0][0] == 'd' {
			continue // a parent directory such as /usr or /lib/systemd
		}
		got[path] = entry{f[0], owner, group}
	}
	require.Equal(t, p.files, got)

	// The files themselves.
	root := filepath.Join(t.TempDir(), "root")
	run(t, nil, "dpkg-deb", "-x", deb, root)
	unit := p.name + ".service"
	requireSameFile(t, unit, filepath.Join(root, "lib/systemd/system", unit))
	requireSameFile(t, p.example, filepath.Join(root, "etc/tether", p.example))
	binary := filepath.Join(root, "usr/bin", p.name)
	unitText, err := os.ReadFile(unit)
	require.NoError(t, err)
	require.Contains(t, string(unitText), "\nExecStart=/usr/bin/"+p.name+" ", "the unit starts the packaged binary")

	// The packaged binary runs and says what it is.
	require.Equal(t, versionLine(p.name), run(t, nil, binary, "--version"))

	// The manual page, gzipped as Debian wants it.
	page := run(t, nil, "gzip", "-dc", filepath.Join(root, "usr/share/man/man1", p.name+".1.gz"))
	require.Contains(t, page, `.TH "`+strings.ToUpper(p.name)+`" "1"`)
	require.Contains(t, page, "-version")

	// The example configuration is one the binary accepts as it stands.
	if p.checkConfig != nil {
		p.checkConfig(t, binary, filepath.Join(root, "etc/tether", p.example))
	}

	// systemd accepts the unit, where systemd-analyze is installed: every
	// key known, every command present (the binary at its extracted path).
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		local := filepath.Join(t.TempDir(), unit)
		text := strings.ReplaceAll(string(unitText), "/usr/bin/"+p.name, binary)
		require.NoError(t, os.WriteFile(local, []byte(text), 0o644))
		msg, err := exec.Command("systemd-analyze", "verify", local).CombinedOutput()
		require.NoError(t, err, "systemd-analyze verify %s: %s", unit, msg)
		require.Empty(t, string(msg), "systemd-analyze verify has remarks on %s", unit)
	}
}

func checkRPM(t *testing.T, p pkg, rpm string) {
	require.Equal(t, p.name+" "+pkgVersion+" "+rpmArch()+"\n",
		run(t, nil, "rpm", "-qp", "--qf", "%{NAME} %{VERSION} %{ARCH}\n", rpm))

	got := map[string]entry{}
	list := run(t, nil, "rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]", rpm)
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		f := strings.Fields(line)
		require.Len(t, f, 4, "rpm line %q", line)
		got[f[3]] = entry{f[0], f[1], f[2]}
	}
	require.Equal(t, p.files, got)
	// %config(noreplace): an edited configuration is kept on upgrade.
	flags := run(t, nil, "rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", rpm)
	for _, c := range p.conffiles {
		require.Contains(t, flags, c+" cn\n", "%s should be %%config(noreplace)", c)
	}
	scripts := run(t, nil, "rpm", "-qp", "--scripts", rpm)
	for _, s := range p.rpmScript {
		require.Contains(t, scripts, s)
	}
}

// run runs a command with more environment variables and returns its
// standard output; it fails the test when the command fails.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "%s %s: %s", name, strings.Join(args, " "), stderr.String())
	return stdout.String()
}

// requireSameFile fails unless the files at want and got have the same
// contents.
func requireSameFile(t *testing.T, want, got string) {
	t.Helper()
	w, err := os.ReadFile(want)
	require.NoError(t, err)
	g, err := os.ReadFile(got)
	require.NoError(t, err, "the package does not hold %s", got)
	require.Equal(t, string(w), string(g), "%s differs from %s", got, want)
}

// debArch is Debian's name of this machine's architecture.
func debArch() string {
	switch runtime.GOARCH {
	case "386":
		return "i386"
	}
	return runtime.GOARCH
}

// rpmArch is RPM's name of this machine's architecture.
func rpmArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}
