// Command tether-agent runs on a device: it keeps the device connected to
// its Tether edge and serves the tunnels, terminals and reloads its owner
// allows in agent.yaml.
//
//	tether-agent --config /etc/tether/agent.yaml     run the agent
//	tether-agent check --config agent.yaml           check the set-up, step by step
//	tether-agent --version                           print the version
//
// SIGHUP reloads the configuration; SIGTERM and SIGINT close every stream
// and exit 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tetherhq/tether/device/agent"
	"github.com/tetherhq/tether/internal/inherit"
	"github.com/tetherhq/tether/internal/procs"
	"github.com/tetherhq/tether/internal/version"
	"github.com/tetherhq/tether/transport"
)

// DefaultConfigPath is where packaging installs the configuration.
const DefaultConfigPath = "/etc/tether/agent.yaml"

// Exit codes of the agent itself; check has its own (see check.go).
const (
	exitOK     = 0
	exitFailed = 1 // the agent stopped with an error
	exitUsage  = 2 // bad flags, config or certificate files
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "check":
			return runCheck(args[1:], stdout, stderr)
		case "version", "--version", "-version":
			fmt.Fprintln(stdout, version.Line("tether-agent", "protocol "+transport.ProtocolToken))
			return exitOK
		}
	}
	fs := flag.NewFlagSet("tether-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", DefaultConfigPath, "the agent's configuration `file`")
	logFormat := fs.String("log-format", "text", "log format on stderr: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version, commit, Go version and platform, and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: tether-agent [flags]
       tether-agent check --config FILE
       tether-agent --version

Keeps this device connected to its Tether edge and serves the tunnels,
terminals and reloads allowed in the config. SIGHUP reloads the config;
SIGTERM closes every stream and exits 0.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Line("tether-agent", "protocol "+transport.ProtocolToken))
		return exitOK
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tether-agent: unexpected argument %q; run tether-agent --help\n", fs.Arg(0))
		return exitUsage
	}
	logger, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "tether-agent: %v\n", err)
		return exitUsage
	}
	// One P while the agent relays keystrokes, all of them for bulk
	// transfers (internal/procs).
	defer procs.Start(logger)()

	// Descriptors inherited from whoever started the agent must not reach
	// the shells and commands it runs: those get exactly what they are
	// handed (a terminal on 0, 1 and 2).
	if n, err := inherit.CloseOnExec(3); err != nil {
		logger.Warn("inherited descriptors may reach sessions and commands", "err", err)
	} else if n > 0 {
		logger.Debug("inherited descriptors marked close-on-exec", "count", n)
	}

	cfg, err := agent.LoadConfig(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "tether-agent: %s: %v\nRun \"tether-agent check --config %s\" for a step-by-step diagnosis.\n", *configPath, err, *configPath)
		return exitUsage
	}
	tlsConf, err := deviceTLS(cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "tether-agent: %v\nRun \"tether-agent check --config %s\" for a step-by-step diagnosis.\n", err, *configPath)
		return exitUsage
	}

	// Signals are caught before the agent starts, so none is lost.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ag := &agent.Agent{ConfigPath: *configPath, Config: cfg, TLSConfig: tlsConf, Version: version.Version, Logger: logger}
	if err := ag.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "tether-agent: %v\n", err)
		return exitUsage
	}
	logger.Info("tether-agent running", "version", version.Version, "config", *configPath, "pid", os.Getpid())
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				logger.Info("SIGHUP: reloading the config")
				ag.TriggerReload()
				continue
			}
			logger.Info("shutting down", "signal", sig.String())
			_ = ag.Close()
			letGo()
			return exitOK
		case <-ag.Done():
			_ = ag.Close()
			letGo()
			logger.Error("agent stopped unexpectedly")
			return exitFailed
		}
	}
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// letGo gives the sessions just closed their second to hand the edge
// their last bytes (transport.AwaitClosed) before the process exits.
func letGo() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = transport.AwaitClosed(ctx)
}
