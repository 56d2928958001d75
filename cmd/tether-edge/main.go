package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/procs"
	"github.com/tetherhq/tether/internal/version"
	"github.com/tetherhq/tether/transport"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var ue *usageErr
		switch {
		case errors.Is(err, flag.ErrHelp):
			os.Exit(0)
		case errors.Is(err, errDenied):
			os.Exit(1) // policy check said no, and why
		case errors.As(err, &ue):
			fmt.Fprintln(os.Stderr, "tether-edge:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "tether-edge:", err)
		os.Exit(1)
	}
}

const usage = `tether-edge is the Tether broker.

Usage:
  tether-edge --config edge.yaml [--listen ADDR]
  tether-edge token
  tether-edge token hash < TOKEN_FILE
  tether-edge dev --dir DIR [--listen ADDR] [--device ID]
  tether-edge dev --cluster 3 --dir DIR [--device ID]
  tether-edge policy check --config edge.yaml --as NAME --device ID REQUEST
  tether-edge --version

Configuration:
  edge.yaml: every key, with its unit, default and an example, is in docs/edge.md
  (https://github.com/tetherhq/tether/blob/main/docs/edge.md); clusters: docs/cluster.md.
  An unknown key or a bad value stops the edge with the file, the line and the key.

Signals:
  SIGHUP           re-read clients, tokens, roles, the labels file, the revocation list,
                   the device CA, recording and auth; reopen the audit log
                   (listen, keepalive, limits, web and cluster need a restart; the tls
                   files are read again at the first handshake after they change)
  SIGTERM, SIGINT  drain (GoAway to every device, wait for open streams) and exit 0

Examples:
  tether-edge token >> tokens.txt
  tether-edge token hash < ops.token     # the token_sha256 line of a token you have
  tether-edge dev --dir ./tether-dev
  tether-edge dev --cluster 3 --dir ./tether-cluster   # three edges behind HAProxy, on this machine
  tether-edge --config /etc/tether/edge.yaml
  tether-edge policy check --config edge.yaml --as alice@example.com --group field-eng --device gw-1 tcp 10.0.0.5:22
`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return runToken(args[1:], os.Stdin, stdout)
		case "dev":
			return runDev(args[1:], stdout, stderr)
		case "policy":
			return runPolicy(args[1:], stdout, stderr)
		case "version", "--version", "-version":
			fmt.Fprintln(stdout, version.Line("tether-edge", "protocol "+transport.ProtocolToken))
			return nil
		}
	}
	fs := flag.NewFlagSet("tether-edge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage, "\nFlags:\n"); fs.PrintDefaults() }
	cfgPath := fs.String("config", "", "edge configuration file (YAML)")
	listen := fs.String("listen", "", "listen address; overrides listen in the config")
	showVersion := fs.Bool("version", false, "print the version, commit, Go version and platform, and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Line("tether-edge", "protocol "+transport.ProtocolToken))
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unknown command %q; run tether-edge --help", fs.Arg(0))
	}
	if *cfgPath == "" {
		return errors.New("--config is required (or run `tether-edge dev --dir DIR` for a ready-made dev set-up)")
	}
	return serve(*cfgPath, *listen, stderr, nil)
}

func runToken(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("tether-edge token", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() == 1 && fs.Arg(0) == "hash":
		return runTokenHash(stdin, stdout)
	case fs.NArg() > 0:
		return fmt.Errorf("unknown argument %q: run `tether-edge token` for a new token, or `tether-edge token hash < TOKEN_FILE` for the token_sha256 of one you have", fs.Arg(0))
	}
	tok, sum, err := newToken()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	fmt.Fprintf(stdout, "token_sha256: %q\n", sum)
	return nil
}

// maxTokenInput bounds what token hash reads.
const maxTokenInput = 16 << 10

// runTokenHash prints the token_sha256 line of the token on stdin (its
// first line, without surrounding spaces), never the token.
func runTokenHash(stdin io.Reader, stdout io.Writer) error {
	b, err := io.ReadAll(io.LimitReader(stdin, maxTokenInput+1))
	if err != nil {
		return fmt.Errorf("read the token from stdin: %w", err)
	}
	if len(b) > maxTokenInput {
		return fmt.Errorf("stdin holds more than %d bytes; pipe in the token file only", maxTokenInput)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	tok := strings.TrimSpace(line)
	if tok == "" {
		return errors.New("no token on stdin; run: tether-edge token hash < TOKEN_FILE")
	}
	h := sha256.Sum256([]byte(tok))
	fmt.Fprintf(stdout, "token_sha256: %q\n", hex.EncodeToString(h[:]))
	return nil
}

// newToken returns a random 256-bit token in hex and its SHA-256 in hex.
func newToken() (token, sum string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("generate token: %w", err)
	}
	token = hex.EncodeToString(b)
	h := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(h[:]), nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// serve runs the edge until SIGTERM or SIGINT. ready, when not nil, gets
// the listen address once the edge accepts connections.
func serve(cfgPath, listenOverride string, stderr io.Writer, ready func(addr string)) error {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.file.LogLevel)
	for _, w := range cfg.warnings {
		log.Warn(w, "config", cfgPath)
	}
	// One P while the edge is lightly loaded, all of them once it is busy
	// (internal/procs).
	defer procs.Start(log)()
	listen := cfg.file.Listen
	if listenOverride != "" {
		listen = listenOverride
	}

	var auditW io.Writer = os.Stdout
	var auditF *auditFile
	if cfg.file.AuditLog != "" && cfg.file.AuditLog != "-" {
		auditF, err = openAuditFile(cfg.file.AuditLog)
		if err != nil {
			return fmt.Errorf("%w (check audit_log in %s)", err, cfgPath)
		}
		defer auditF.Close()
		auditW = auditF
	}
	pool, err := certs.LoadPool(cfg.file.DeviceCA)
	if err != nil {
		return err
	}
	metrics := &edge.Metrics{}
	// Records go through a queue to a writer of their own: a stuck sink
	// (a pipe whose reader stopped) holds up no connection. Closed after
	// the edge, before the file (defers run last first).
	auditor := &edge.JSONAuditor{W: auditW, Logger: log, Metrics: metrics}
	defer func() {
		if err := auditor.Close(); err != nil {
			log.Error("audit log not flushed", "err", err)
		}
	}()
	srv := &edge.Server{
		DeviceCA:  pool,
		Policy:    cfg.policy,
		Revoked:   cfg.revoked,
		Auditor:   auditor,
		Metrics:   metrics,
		Transport: cfg.transport,
		Limits:    cfg.limits,
		Logger:    log,
		EdgeID:    cfg.file.EdgeID,
		Web:       cfg.web,
		Recording: cfg.recording,
		Auth:      cfg.auth,
	}
	switch {
	case cfg.lastSeenTTL <= 0 || cfg.cluster != nil:
		// None kept, or kept in the cluster's bucket (below).
	case cfg.lastSeenFile == "":
		srv.LastSeen = &edge.MemoryLastSeen{TTL: cfg.lastSeenTTL, Max: cfg.lastSeenMax}
	default:
		ls, err := edge.OpenLastSeen(cfg.lastSeenFile, cfg.lastSeenTTL, cfg.lastSeenMax, log)
		if err != nil {
			return fmt.Errorf("%w (check state_dir in %s)", err, cfgPath)
		}
		// Closed after the edge, which records the devices it drops as
		// it stops.
		defer func() {
			if err := ls.Close(); err != nil {
				log.Error("last-seen records not saved", "err", err)
			}
		}()
		srv.LastSeen = ls
	}
	if cfg.webSignOuts != "" && srv.Web != nil {
		so, err := edge.OpenWebRevocations(cfg.webSignOuts)
		if err != nil {
			return fmt.Errorf("%w (check state_dir in %s)", err, cfgPath)
		}
		defer so.Close()
		srv.Web.Revoked = so
	}

	// Signals first, so that a SIGTERM during start-up is not lost.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	// The cluster (NATS and the presence) starts before the listeners, so
	// that the first device is announced; it is closed after the drain,
	// since the drain withdraws the devices' records.
	var cl *clusterRuntime
	if cfg.cluster != nil {
		cl, err = startCluster(cfg.cluster, cfg.lastSeenTTL, log)
		if err != nil {
			return err
		}
		defer cl.Close()
		srv.Cluster = cl.edgeCluster()
		if srv.Web != nil {
			// Sign-outs hold, tickets are used once, and an identity's
			// terminals are counted, on every edge of the cluster.
			srv.Web.Revoked = cl.webRevocations(srv.Web.SessionLifetime)
			srv.Web.Tickets = cl.webTickets()
			srv.Web.Leases = cl.webLeases()
		}
		if cfg.lastSeenTTL > 0 {
			srv.LastSeen = cl.presence
		}
	}
	exchanged := &exchangedStore{}
	if cl != nil {
		exchanged.cluster = cl.exchangedTokens()
	}
	defer exchanged.Close()
	if srv.Auth != nil {
		ex, err := exchanged.get(cfg.exchangedFile)
		if err != nil {
			return fmt.Errorf("%w (check state_dir in %s)", err, cfgPath)
		}
		srv.Auth.Exchanged = ex
	}

	// The certificate files are read again at the first handshake after
	// they change: a renewed certificate needs no restart, and the
	// devices and clients connected stay.
	edgeCert, err := certs.NewFileCert(cfg.file.TLS.Cert, cfg.file.TLS.Key, "edge certificate", log)
	if err != nil {
		return fmt.Errorf("%w (check tls in %s)", err, cfgPath)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another edge running? pick another address with --listen)", listen, err)
	}
	tc := certs.EdgeTLSConfig(tls.Certificate{})
	tc.Certificates = nil
	tc.GetCertificate = edgeCert.GetCertificate
	metrics.ServedCertificate(func() *x509.Certificate {
		c, err := edgeCert.Certificate()
		if err != nil {
			return nil
		}
		return c.Leaf
	})
	hs := srv.HTTPServer(tc)
	errc := make(chan error, 3)
	go func() { errc <- hs.Serve(srv.Listener(ln, hs.TLSConfig)) }()

	var ps *http.Server // the peer listener's server; nil for a single edge
	if cl != nil {
		pln, err := net.Listen("tcp", cfg.cluster.PeerListen)
		if err != nil {
			hs.Close()
			srv.Close()
			return fmt.Errorf("listen for peers on %s: %w (check cluster.peer_listen in %s)", cfg.cluster.PeerListen, err, cfgPath)
		}
		ps = peerHTTPServer(srv, cfg, log)
		go func() { errc <- ps.Serve(srv.PeerListener(pln)) }()
		log.Info("peer listener up", "addr", pln.Addr().String(), "edge_id", cfg.cluster.EdgeID, "advertise", cfg.cluster.Advertise)
	}

	var ms *http.Server
	if cfg.file.MetricsListen != "" {
		mln, err := net.Listen("tcp", cfg.file.MetricsListen)
		if err != nil {
			closeServers(hs, ps)
			srv.Close()
			return fmt.Errorf("listen for metrics on %s: %w", cfg.file.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler())
		ms = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- ms.Serve(mln) }()
		log.Info("serving metrics", "addr", mln.Addr().String())
	}
	log.Info("edge listening", "addr", ln.Addr().String(), "version", version.Version, "clients", len(cfg.file.Clients))
	if ready != nil {
		ready(ln.Addr().String())
	}

	for {
		select {
		case err := <-errc:
			closeServers(ms, hs, ps)
			srv.Close()
			return fmt.Errorf("serve: %w", err)
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				// Reopen first, so that what the reload does (a revoked
				// device cut) is recorded in the new file.
				if auditF != nil {
					if err := auditF.reopen(); err != nil {
						log.Error("cannot reopen the audit log; still writing the old file", "err", err)
					}
				}
				reload(srv, cfg, cfgPath, exchanged, log)
				continue
			}
			log.Info("shutting down: draining", "signal", sig.String(), "drain_timeout", cfg.drain.String())
			ctx, cancel := context.WithTimeout(context.Background(), cfg.drain)
			// Stop accepting, devices and peers alike; then drain: the
			// devices move to other edges and withdraw their records.
			_ = hs.Shutdown(ctx)
			if ps != nil {
				_ = ps.Shutdown(ctx)
			}
			err := srv.Shutdown(ctx)
			cancel()
			// The sessions just closed hand their last bytes over.
			letGo, cancelLetGo := context.WithTimeout(context.Background(), 2*time.Second)
			_ = transport.AwaitClosed(letGo)
			cancelLetGo()
			if err != nil {
				log.Warn("drain timed out; remaining streams were cut", "err", err)
			}
			if cl != nil {
				cl.Close() // the presence deletes this edge's key, then NATS stops
			}
			closeServers(ms)
			log.Info("edge stopped")
			return nil
		}
	}
}

// closeServers closes the servers that are not nil.
func closeServers(servers ...*http.Server) {
	for _, s := range servers {
		if s != nil {
			s.Close()
		}
	}
}

// peerHTTPServer serves the peer listener: the upgrades of other edges'
// peer sessions, with the public listener's bounds on the handshake and
// the request head.
func peerHTTPServer(srv *edge.Server, cfg *config, log *slog.Logger) *http.Server {
	handshake := cfg.transport.WithDefaults().HandshakeTimeout
	return &http.Server{
		Handler:           srv.PeerHandler(),
		ReadHeaderTimeout: handshake,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    cmp.Or(cfg.limits.MaxHeaderBytes, 16<<10),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// reload re-reads the config's clients, revocation list, device CA,
// recording and auth sections, the auth section added or removed
// included. A broken file keeps the running policy. The rest takes effect
// at the next start; a changed cluster section says so.
func reload(srv *edge.Server, running *config, cfgPath string, exchanged *exchangedStore, log *slog.Logger) {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		log.Error("reload failed; keeping the running policy", "err", err)
		return
	}
	for _, w := range cfg.warnings {
		log.Warn(w, "config", cfgPath)
	}
	what := "clients, tokens, roles, the labels file, the recording section, the revocation list and the device CA"
	if cfg.auth != nil {
		// The running edge's record of exchanged ID tokens (a cluster's
		// bucket, the state_dir's file, opened now if auth.oidc is new)
		// stays.
		ex, err := exchanged.get(cfg.exchangedFile)
		if err != nil {
			log.Error("reload failed: no record of exchanged ID tokens; keeping the running policy and sign-in", "err", err, "config", cfgPath)
			return
		}
		cfg.auth.Exchanged = ex
	}
	pool, err := certs.LoadPool(cfg.file.DeviceCA)
	if err != nil {
		log.Error("reload failed: the device CA; keeping the running policy", "err", err, "config", cfgPath)
		return
	}
	if err := srv.ReloadAuth(cfg.policy, cfg.revoked, cfg.auth); err != nil {
		log.Error("reload failed; keeping the running policy and sign-in", "err", err, "config", cfgPath)
		return
	}
	srv.ReloadDeviceCA(pool)
	if cfg.auth != nil {
		what += ", the auth section and its user CA"
	} else {
		what += ", and no auth section: tokens alone sign in"
	}
	srv.SetRecording(cfg.recording) // new shells take it
	log.Info("reloaded "+what+" (listen, keepalive, limits, web and cluster need a restart)", "config", cfgPath)
	if !reflect.DeepEqual(cfg.file.Cluster, running.file.Cluster) {
		log.Warn("the cluster section changed; the edge keeps running with the old one until it is restarted", "config", cfgPath)
	}
}
