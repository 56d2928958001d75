// Package cli is the tether command: tunnels, shells and device operations
// through a Tether edge. Each command lives in its own file as an options
// struct and a run function; input and output are injected so that tests
// drive the commands like a terminal would.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/tetherhq/tether/internal/logx"
	"github.com/tetherhq/tether/transport"
)

// IO is where a command reads and writes. When In is an *os.File on a
// terminal, tether shell uses its descriptor for raw mode and the window
// size; with any other reader it runs commands without a terminal.
type IO struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// globalOptions are the flags every command shares.
type globalOptions struct {
	edge, token, tokenFile, ca string
	profile, config            string
	verbose                    bool
	timeout                    time.Duration

	io       IO
	getenv   func(string) string
	noticeMu *sync.Mutex // serializes notice lines on io.ErrOut; set by run

	// msg names the edge, device, token source and CA in error messages.
	msg msgContext
}

// settings merges flags, environment and config file.
func (g *globalOptions) settings() (*Settings, error) {
	if g.timeout <= 0 {
		return nil, usageErrorf("--connect-timeout must be positive, such as 10s")
	}
	s, err := resolveSettings(g, g.getenv)
	if err != nil {
		return nil, err
	}
	g.msg.edge, g.msg.tokenFrom, g.msg.ca = s.Edge, s.TokenFrom, s.CA
	for _, w := range s.Warnings {
		g.notice("warning: %s", w)
	}
	return s, nil
}

// logger writes the library's warnings to stderr, without timestamps; -v
// adds debug detail.
func (g *globalOptions) logger() *slog.Logger {
	level := slog.LevelWarn
	if g.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(g.io.ErrOut, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// debugLogger is the logger of library code whose warnings the command
// already reports in its own words: silent unless -v is given.
func (g *globalOptions) debugLogger() *slog.Logger {
	if !g.verbose {
		return logx.Or(nil)
	}
	return g.logger()
}

// Main runs the tether command with args (without the program name) and
// returns the process exit code. ctx ends on Ctrl-C. nc and shell read
// stdin on a goroutine that ends at stdin's next read after they return:
// Main is meant to be followed by the end of the process.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return run(ctx, args, IO{In: stdin, Out: stdout, ErrOut: stderr}, os.Getenv)
}

func run(ctx context.Context, args []string, streams IO, getenv func(string) string) int {
	g := &globalOptions{io: streams, getenv: getenv, noticeMu: new(sync.Mutex)}
	root := newRootCommand(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ue *usageError
	if !errors.As(err, &ue) && isCobraUsage(err) {
		err = &usageError{err.Error()}
	}
	code, msg := describe(err, g.msg)
	if msg != "" {
		fmt.Fprintf(streams.ErrOut, "tether: %s\n", termSafe(msg))
	}
	if errors.As(err, &ue) {
		fmt.Fprintln(streams.ErrOut, "Run 'tether --help' for usage.")
	}
	return code
}

// isCobraUsage reports errors cobra returns for bad flags and arguments.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "flag needs an argument",
		"invalid argument", "accepts ", "requires at least", "requires at most", "requires exactly"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

const rootLong = `tether opens tunnels, shells and device operations through a Tether edge.

Settings come from flags, then the environment (TETHER_EDGE, TETHER_TOKEN,
TETHER_TOKEN_FILE, TETHER_CA, TETHER_PROFILE, TETHER_CONFIG), then the
config file ($XDG_CONFIG_HOME/tether/config.yaml, by default
~/.config/tether/config.yaml), which holds named profiles:

  default: prod
  profiles:
    prod:
      edge: https://edge.example.com:8443
      token_file: prod.token      # relative to the config file
      ca: ca.crt

`

const rootExamples = `  # List the devices connected to the edge
  tether --edge https://edge.example.com:8443 --token-file ~/.tether-token devices

  # Forward local port 8080 to port 80 on device d1, like ssh -L
  tether tcp d1 8080:127.0.0.1:80

  # A shell on device d1, or one command
  tether shell d1
  tether shell d1 -- uptime

  # A command without a terminal: stdout and stderr apart, stdin to its end
  tether exec d1 -- 'dmesg | tail' > dmesg.txt

  # ssh to a device through the edge
  ssh -o ProxyCommand='tether nc %h 127.0.0.1:22' root@d1`

const completionExamples = `  # bash, for this shell
  source <(tether completion bash)

  # zsh, for every new shell
  tether completion zsh > "${fpath[1]}/_tether"

  # DEVICE arguments complete with the IDs the edge lists
  tether shell <TAB>`

func newRootCommand(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:           "tether",
		Short:         "Reach devices behind a Tether edge: tunnels, shells, reloads",
		Long:          rootLong + exitCodeHelp,
		Example:       rootExamples,
		SilenceErrors: true,
		SilenceUsage:  true,
		CompletionOptions: cobra.CompletionOptions{
			HiddenDefaultCmd: false,
		},
	}
	// Section headings in capitals, as in EXIT CODES above.
	root.SetUsageTemplate(strings.NewReplacer(
		"Usage:", "USAGE",
		"Aliases:", "ALIASES",
		"Examples:", "EXAMPLES",
		"Available Commands:", "COMMANDS",
		"Additional Commands:", "MORE COMMANDS",
		"Global Flags:", "GLOBAL FLAGS",
		"Flags:", "FLAGS",
		"Additional help topics:", "HELP TOPICS",
	).Replace(root.UsageTemplate()))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{err.Error()}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&g.edge, "edge", "", "edge base URL, such as https://edge.example.com:8443 ("+EnvEdge+")")
	pf.StringVar(&g.token, "token", "", "bearer token ("+EnvToken+"); prefer --token-file, which keeps it out of ps")
	pf.StringVar(&g.tokenFile, "token-file", "", "file holding the bearer token ("+EnvTokenFile+")")
	pf.StringVar(&g.ca, "ca", "", "CA certificate that signed the edge's certificate ("+EnvCA+"; the system pool when unset)")
	pf.StringVar(&g.profile, "profile", "", "profile of the config file to use ("+EnvProfile+"; the file's default when unset)")
	pf.StringVar(&g.config, "config", "", "config file ("+EnvConfig+"; default $XDG_CONFIG_HOME/tether/config.yaml)")
	pf.DurationVar(&g.timeout, "connect-timeout", transport.DefaultHandshakeTimeout, "how long to wait for the edge to answer a connection")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "log connection details to stderr")

	root.AddCommand(
		newDevicesCommand(g),
		newTCPCommand(g),
		newUDPCommand(g),
		newShellCommand(g),
		newExecCommand(g),
		newNCCommand(g),
		newSOCKSCommand(g),
		newSSHCommand(g),
		newReloadCommand(g),
		newCPCommand(g),
		newRecordingsCommand(g),
		newPlayCommand(g),
		newCertsCommand(g),
		newLoginCommand(g),
		newWhoamiCommand(g),
		newLogoutCommand(g),
		newVersionCommand(g),
	)
	addVersionFlag(root)
	// The completion command takes its output stream when it is made.
	root.SetIn(g.io.In)
	root.SetOut(g.io.Out)
	root.SetErr(g.io.ErrOut)
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err.Error()} })
		if c.Name() == "completion" {
			c.Example = completionExamples
			for _, sub := range c.Commands() {
				sub.Example = fmt.Sprintf("  tether completion %s > tether-completion.%s", sub.Name(), sub.Name())
			}
		}
	}
	return root
}

// argsUsage wraps a cobra positional-argument check so that its failure is
// a usage error naming the expected form.
func argsUsage(check cobra.PositionalArgs, form string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageErrorf("%v; usage: %s", err, form)
		}
		return nil
	}
}
