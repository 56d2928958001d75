package apitest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// modulePath is the module under test.
const modulePath = "github.com/tetherhq/tether"

// The import line a program written against the reference has, and the one
// line that replaces it.
const (
	referenceImport = `"go.qbee.io/transport"`
	compatImport    = `transport "github.com/tetherhq/tether/transport/qbeecompat"`
)

// supportPackages are the internal packages our public packages may use:
// shared product code, declared as such (one nil-logger default, one token
// bucket, the recording file format, one bounded file read, the scheduler
// governor's Hold, which a file transfer takes and which only counts in a
// program that runs no governor, the goroutines that serve a session's
// streams). Any other internal package reached from
// the public API (test helpers above all) fails TestNoInternalPackages.
var supportPackages = []string{
	modulePath + "/internal/asciicast",
	modulePath + "/internal/limitread",
	modulePath + "/internal/logx",
	modulePath + "/internal/procs",
	modulePath + "/internal/ratelimit",
	modulePath + "/internal/workers",
}

// goTimeout bounds one go command: building the programs is the slow part.
const goTimeout = 10 * time.Minute

// outside is the temporary module shared by the tests, made by TestMain.
var outside struct {
	dir string
	env []string
	err error // why it could not be made; each test reports it
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tether-apitest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "apitest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	outside.dir = dir
	outside.err = writeModule(dir)
	outside.env = goEnv()
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "apitest: leaked goroutines:", err)
			code = 1
		}
	}
	return code
}

// TestOurAPIFromAnotherModule runs testdata/ours, a test of the native API,
// in a module of its own.
func TestOurAPIFromAnotherModule(t *testing.T) {
	t.Parallel()
	out := goCommand(t, "test", "-count=1", "-v", "-run", "^TestTunnels$", "./ours")
	if !strings.Contains(out, "--- PASS: TestTunnels") {
		t.Errorf("got output\n%s\nwant TestTunnels to run and pass", out)
	}
}

// TestQbeeProgramWithOneImportChanged runs testdata/qbee, written against
// the reference implementation's names, after changing its import line only.
func TestQbeeProgramWithOneImportChanged(t *testing.T) {
	t.Parallel()
	got := goCommand(t, "run", "./qbee")
	want := "tcp tunnel: hello world\nstream: echo:ping\nudp tunnel: echo:ping\n"
	if got != want {
		t.Errorf("got output\n%s\nwant\n%s", got, want)
	}
}

// TestNoInternalPackages checks the packages the programs build from: none
// of them may be one of our internal packages, but for the declared support
// packages.
func TestNoInternalPackages(t *testing.T) {
	t.Parallel()
	out := goCommand(t, "list", "-deps", "-test", "./...")
	var ours []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		pkg := sc.Text()
		if !strings.HasPrefix(pkg, modulePath+"/") {
			continue
		}
		ours = append(ours, pkg)
		if strings.Contains(pkg, "/internal/") && !slices.Contains(supportPackages, pkg) {
			t.Errorf("the programs build from %s; want the public API to need no internal package but %v", pkg, supportPackages)
		}
	}
	// The list must be the real one: both programs' public packages are in it.
	for _, want := range []string{"/mock", "/transport/qbeecompat", "/udp", "/edge"} {
		if !slices.Contains(ours, modulePath+want) {
			t.Errorf("go list -deps lacks %s%s; got %v", modulePath, want, ours)
		}
	}
}

// TestImportSubstitution checks the substitution itself: the template has
// exactly one reference import line, names nothing of ours, and differs from
// the compiled program by that line alone.
func TestImportSubstitution(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "qbee", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(src, []byte("tetherhq")) {
		t.Errorf("the template mentions tetherhq; want it written against the reference only")
	}
	got, err := substituteImport(string(src))
	if err != nil {
		t.Fatal(err)
	}
	srcLines, gotLines := strings.Split(string(src), "\n"), strings.Split(got, "\n")
	if len(srcLines) != len(gotLines) {
		t.Fatalf("got %d lines; want %d", len(gotLines), len(srcLines))
	}
	var changed []string
	for i := range srcLines {
		if srcLines[i] != gotLines[i] {
			changed = append(changed, gotLines[i])
		}
	}
	if want := []string{"\t" + compatImport}; !slices.Equal(changed, want) {
		t.Errorf("got changed lines %q; want %q", changed, want)
	}
}

// substituteImport replaces the one import line of the reference.
func substituteImport(src string) (string, error) {
	lines := strings.Split(src, "\n")
	n := 0
	for i, l := range lines {
		if strings.TrimSpace(l) == referenceImport {
			lines[i] = strings.Replace(l, referenceImport, compatImport, 1)
			n++
		}
	}
	if n != 1 {
		return "", fmt.Errorf("testdata/qbee/main.go has %d lines importing %s; want exactly 1", n, referenceImport)
	}
	return strings.Join(lines, "\n"), nil
}

// goCommand runs the go command in the temporary module and returns its
// standard output; any failure fails the test with everything it printed.
func goCommand(t *testing.T, args ...string) string {
	t.Helper()
	if outside.err != nil {
		t.Fatalf("temporary module: %v", outside.err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("these tests run the go command, and it is not on PATH: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), goTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = outside.dir
	cmd.Env = outside.env
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// goEnv is the environment of the go commands: ours, with module mode on,
// no workspace, this toolchain, and GOFLAGS of our choosing only (the
// module's go.mod is complete, so it stays read-only).
func goEnv() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		for _, k := range []string{"GOFLAGS=", "GOWORK=", "GO111MODULE=", "GOTOOLCHAIN="} {
			if strings.HasPrefix(kv, k) {
				return true
			}
		}
		return false
	})
	return append(env, "GOFLAGS=-mod=readonly", "GOWORK=off", "GO111MODULE=on", "GOTOOLCHAIN=local")
}

// writeModule writes the temporary module: a go.mod that requires this
// module (replaced by this checkout) at our go version, with our
// requirements and go.sum so that it builds offline, and the two programs.
func writeModule(dir string) error {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	ourMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return fmt.Errorf("read our go.mod: %w", err)
	}
	goVersion, requires, err := parseGoMod(string(ourMod))
	if err != nil {
		return err
	}
	goMod := fmt.Sprintf("module example.com/outside\n\ngo %s\n\nrequire %s v0.0.0\n\n%s\nreplace %s => %s\n",
		goVersion, modulePath, requires, modulePath, root)
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		return fmt.Errorf("read our go.sum: %w", err)
	}
	ours, err := os.ReadFile(filepath.Join("testdata", "ours", "tunnels_test.go"))
	if err != nil {
		return err
	}
	qbee, err := os.ReadFile(filepath.Join("testdata", "qbee", "main.go"))
	if err != nil {
		return err
	}
	qbeeCompat, err := substituteImport(string(qbee))
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"go.mod":               []byte(goMod),
		"go.sum":               sum,
		"ours/tunnels_test.go": ours,
		"qbee/main.go":         []byte(qbeeCompat),
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// parseGoMod returns the go version of a go.mod and its require directives,
// as text.
func parseGoMod(goMod string) (goVersion, requires string, err error) {
	var b strings.Builder
	inBlock := false
	for line := range strings.Lines(goMod) {
		trimmed := strings.TrimSpace(line)
		switch {
		case inBlock:
			b.WriteString(line)
			inBlock = trimmed != ")"
		case strings.HasPrefix(trimmed, "go "):
			goVersion = strings.TrimSpace(strings.TrimPrefix(trimmed, "go "))
		case trimmed == "require (":
			b.WriteString(line)
			inBlock = true
		case strings.HasPrefix(trimmed, "require "):
			b.WriteString(line)
		}
	}
	if goVersion == "" {
		return "", "", errors.New("our go.mod has no go directive")
	}
	return goVersion, b.String(), nil
}
