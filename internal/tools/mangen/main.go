// Command mangen writes the manual pages of tether, tether-edge and
// tether-agent (section 1) into a directory; make man runs it.
//
//	go run ./internal/tools/mangen -bin bin -out dist/man
//
// The pages of tether and its commands come from the cobra command tree
// (cobra/doc), one page per command. tether-edge and tether-agent parse
// their flags with the standard library, so their pages are made from what
// the built binaries print for --help, which is their one source of usage.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra/doc"

	"github.com/tetherhq/tether/cli"
	"github.com/tetherhq/tether/internal/version"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "mangen:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mangen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	binDir := fs.String("bin", "bin", "`directory` holding the built tether-edge and tether-agent")
	out := fs.String("out", "dist/man", "`directory` to write the pages to (created if missing)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; run mangen --help", fs.Arg(0))
	}
	pages, err := generate(context.Background(), *binDir, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d manual pages in %s\n", len(pages), *out)
	return nil
}

// header is the title line of a page; an empty title lets cobra/doc name
// each page of the tree after its command.
func header(title string) *doc.GenManHeader {
	return &doc.GenManHeader{
		Title:   strings.ToUpper(title),
		Section: "1",
		Source:  "Tether " + version.Version,
		Manual:  "Tether Manual",
		Date:    buildDate(),
	}
}

// buildDate is the date on every page: SOURCE_DATE_EPOCH when set, so that
// a rebuild of the same source gives the same pages, else today.
func buildDate() *time.Time {
	t := time.Now().UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		var sec int64
		if _, err := fmt.Sscan(s, &sec); err == nil {
			t = time.Unix(sec, 0).UTC()
		}
	}
	return &t
}

// service is a binary whose page is made from its --help output.
type service struct {
	name    string
	summary string     // the NAME line, after the dash
	helps   [][]string // argument lists whose --help output makes the page, main usage first
	seeAlso []string
}

var services = []service{
	{
		name:    "tether-edge",
		summary: "the Tether broker between engineers and devices",
		helps:   [][]string{{"--help"}, {"dev", "--help"}},
		seeAlso: []string{"tether(1)", "tether-agent(1)"},
	},
	{
		name:    "tether-agent",
		summary: "keep a device connected to its Tether edge",
		helps:   [][]string{{"--help"}, {"check", "--help"}},
		seeAlso: []string{"tether(1)", "tether-edge(1)"},
	},
}

// generate writes every page into out and returns their file names.
func generate(ctx context.Context, binDir, out string) ([]string, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", out, err)
	}
	root := cli.CommandTree()
	root.DisableAutoGenTag = true
	// cobra adds --version when the command runs; the page lists it too.
	root.InitDefaultVersionFlag()
	if err := doc.GenManTree(root, header(""), out); err != nil {
		return nil, fmt.Errorf("tether's pages: %w", err)
	}
	for _, s := range services {
		page, err := servicePage(ctx, filepath.Join(binDir, s.name), s)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(out, s.name+".1"), page, 0o644); err != nil {
			return nil, fmt.Errorf("write %s's page: %w", s.name, err)
		}
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".1") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// helpTimeout bounds one run of a binary's --help.
const helpTimeout = 30 * time.Second

// servicePage runs the binary at path with each of s.helps and makes a
// page of the output.
func servicePage(ctx context.Context, path string, s service) ([]byte, error) {
	var b bytes.Buffer
	h := header(s.name)
	fmt.Fprintf(&b, ".TH %q %q %q %q %q\n", h.Title, h.Section, h.Date.Format("Jan 2006"), h.Source, h.Manual)
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", s.name, roffEscape(s.summary))
	for i, args := range s.helps {
		text, err := helpText(ctx, path, args)
		if err != nil {
			return nil, err
		}
		title := "DESCRIPTION"
		if i > 0 {
			title = strings.ToUpper(strings.Join(args[:len(args)-1], " "))
		}
		fmt.Fprintf(&b, ".SH %s\n.nf\n%s.fi\n", title, roffEscape(text))
	}
	fmt.Fprintf(&b, ".SH SEE ALSO\n%s\n", strings.Join(s.seeAlso, ", "))
	return b.Bytes(), nil
}

// helpText runs path with args and returns what it printed, stdout and
// stderr together (the flag package prints usage on stderr).
func helpText(ctx context.Context, path string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, helpTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("run %s %s: %w (build the binaries first: make build): %s",
			path, strings.Join(args, " "), err, out.String())
	}
	text := out.String()
	if strings.TrimSpace(text) == "" {
		return "", fmt.Errorf("%s %s printed nothing", path, strings.Join(args, " "))
	}
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return text, nil
}

// roffEscape makes text safe in a roff page: backslashes are escaped, and
// a line that starts with a dot or a quote is not taken for a request.
func roffEscape(text string) string {
	text = strings.ReplaceAll(text, `\`, `\e`)
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}
