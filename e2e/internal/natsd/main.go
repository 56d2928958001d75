// Command natsd runs one NATS server with JetStream, in its own process,
// as the external NATS cluster that edges point at by URL in the tests.
// It serves TLS and authenticates with a credentials file, as a
// production NATS in operator mode does: at start it makes an operator, an
// account with JetStream and a user, and writes the user's credentials
// (0600) for the edges. When it is ready it writes its client URL to the
// file named by -ready, and it stops on SIGTERM or SIGINT.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "client listen address")
	store := flag.String("store", "", "JetStream store directory (required)")
	cert := flag.String("cert", "", "TLS certificate (required)")
	key := flag.String("key", "", "TLS key (required)")
	creds := flag.String("creds", "", "where to write the user's credentials (required)")
	ready := flag.String("ready", "", "where to write the client URL once ready (required)")
	flag.Parse()
	if *store == "" || *cert == "" || *key == "" || *creds == "" || *ready == "" {
		fmt.Fprintln(os.Stderr, "natsd: -store, -cert, -key, -creds and -ready are required")
		os.Exit(2)
	}
	if err := run(*listen, *store, *cert, *key, *creds, *ready); err != nil {
		fmt.Fprintln(os.Stderr, "natsd:", err)
		os.Exit(1)
	}
}

func run(listen, store, certFile, keyFile, credsFile, readyFile string) error {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return err
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	trust, err := newTrust()
	if err != nil {
		return err
	}
	if err := os.WriteFile(credsFile, trust.creds, 0o600); err != nil {
		return err
	}
	opts := &server.Options{
		Host: host, Port: port, JetStream: true, StoreDir: store, NoSigs: true,
		TLSConfig:        &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{kp}},
		TLS:              true,
		TLSTimeout:       2,
		TrustedOperators: []*jwt.OperatorClaims{trust.operator},
		AccountResolver:  trust.resolver,
		SystemAccount:    trust.system,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return err
	}
	srv.ConfigureLogger()
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("the server did not start")
	}
	url := "tls://" + srv.Addr().String()
	if err := os.WriteFile(readyFile, []byte(url), 0o600); err != nil {
		srv.Shutdown()
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	srv.Shutdown()
	srv.WaitForShutdown()
	return nil
}

// trust is an operator with a system account and one account with
// JetStream, and the credentials of that account's user.
type trust struct {
	operator *jwt.OperatorClaims
	resolver *server.MemAccResolver
	system   string
	creds    []byte
}

func newTrust() (*trust, error) {
	okp, err := nkeys.CreateOperator()
	if err != nil {
		return nil, err
	}
	opub, _ := okp.PublicKey()
	sysKP, _ := nkeys.CreateAccount()
	sysPub, _ := sysKP.PublicKey()
	accKP, _ := nkeys.CreateAccount()
	accPub, _ := accKP.PublicKey()
	userKP, _ := nkeys.CreateUser()
	userPub, _ := userKP.PublicKey()

	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "tether-test"
	oc.SystemAccount = sysPub
	ojwt, err := oc.Encode(okp)
	if err != nil {
		return nil, err
	}
	if oc, err = jwt.DecodeOperatorClaims(ojwt); err != nil {
		return nil, err
	}

	sys := jwt.NewAccountClaims(sysPub)
	sys.Name = "SYS"
	sysJWT, err := sys.Encode(okp)
	if err != nil {
		return nil, err
	}
	acc := jwt.NewAccountClaims(accPub)
	acc.Name = "tether"
	acc.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := acc.Encode(okp)
	if err != nil {
		return nil, err
	}
	user := jwt.NewUserClaims(userPub)
	user.Name = "edges"
	userJWT, err := user.Encode(accKP)
	if err != nil {
		return nil, err
	}
	seed, err := userKP.Seed()
	if err != nil {
		return nil, err
	}
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	if err != nil {
		return nil, err
	}
	res := &server.MemAccResolver{}
	if err := res.Store(sysPub, sysJWT); err != nil {
		return nil, err
	}
	if err := res.Store(accPub, accJWT); err != nil {
		return nil, err
	}
	return &trust{operator: oc, resolver: res, system: sysPub, creds: creds}, nil
}
