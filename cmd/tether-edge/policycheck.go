package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/transport/labels"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
)

const policyUsage = `tether-edge policy check answers whether the edge's roles allow a request,
from the configuration alone (no edge needs to run), with the reason.

Usage:
  tether-edge policy check --config edge.yaml (--as NAME [--group G]... [--method oidc|jwt] | --token-name NAME)
                           --device ID [--label KEY=VALUE]... REQUEST

REQUEST is one of:
  tcp HOST:PORT        udp HOST:PORT        pty        exec        reload
  files read PATH      files write PATH     recordings device

The device's labels are those given with --label (its certificate's) with
the edge's labels file (devices.labels_file) on top, as the edge sees them.
It prints "yes: ..." and exits 0, or "no: <the reason>" and exits 1.

Examples:
  tether-edge policy check --config edge.yaml --as alice@example.com --group field-eng --device gw-1 tcp 10.0.0.5:22
  tether-edge policy check --config edge.yaml --token-name ci-deploy --device gw-1 --label site=berlin exec
  tether-edge policy check --config edge.yaml --as bob@example.com --device gw-9 files read /var/log/syslog
`

// errDenied is the answer "no": exit status 1, the reason already printed.
var errDenied = errors.New("denied")

// usageErr is a mistake in the command line or the configuration: exit
// status 2, so that a script tells it from "no".
type usageErr struct{ msg string }

func (e *usageErr) Error() string { return e.msg }

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runPolicy(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, policyUsage)
		if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			return flag.ErrHelp
		}
		return &usageErr{fmt.Sprintf("unknown policy command %q: the one command is policy check", args[0])}
	}
	fs := flag.NewFlagSet("tether-edge policy check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, policyUsage, "\nFlags:\n"); fs.PrintDefaults() }
	cfgPath := fs.String("config", "", "edge configuration file (YAML)")
	as := fs.String("as", "", "a person's name, as the identity provider gives it (alice@example.com)")
	method := fs.String("method", edge.MethodOIDC, "how the person signed in: oidc or jwt (with --as)")
	tokenName := fs.String("token-name", "", "the name of a static token (tokens: or clients:) instead of a person")
	device := fs.String("device", "", "the device ID")
	var groups, lbls multiFlag
	fs.Var(&groups, "group", "a group of the person (repeatable)")
	fs.Var(&lbls, "label", "a label of the device's certificate, KEY=VALUE (repeatable)")
	// Flags may follow the request, as in the examples: parse them where
	// they are.
	var rest []string
	for a := args[1:]; ; {
		if err := fs.Parse(a); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return &usageErr{err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		a = fs.Args()[1:]
	}
	id, err := checkIdentity(*as, *method, *tokenName, groups)
	if err != nil {
		return err
	}
	if *cfgPath == "" {
		return &usageErr{"--config is required: the edge.yaml whose roles to check"}
	}
	if *device == "" {
		return &usageErr{"--device is required: the ID of the device to check"}
	}
	certLabels, err := labels.ParseSet(lbls...)
	if err != nil {
		return &usageErr{"--label: " + err.Error()}
	}
	what, req, err := parseCheckRequest(rest)
	if err != nil {
		return err
	}
	cfg, err := loadPolicyConfig(*cfgPath)
	if err != nil {
		return &usageErr{err.Error()}
	}
	pol := cfg.policy
	dev := pol.LabelDevice(edge.DeviceRef{ID: *device, Labels: certLabels})
	if len(dev.Labels) > 0 {
		fmt.Fprintf(stdout, "device %s has labels %s\n", dev.ID, labels.Set(dev.Labels))
	}
	yes := func(msg string) error {
		fmt.Fprintf(stdout, "yes: %s %s on device %s", id, msg, dev.ID)
		if roles := pol.Roles(id, dev); len(roles) > 0 {
			fmt.Fprintf(stdout, " (roles there: %s)", strings.Join(roles, ", "))
		}
		fmt.Fprintln(stdout)
		return nil
	}
	no := func(reason string) error {
		fmt.Fprintf(stdout, "no: %s\n", reason)
		return errDenied
	}
	if !pol.DeviceAllowed(id, dev) {
		return no(pol.DeviceDenial(id, dev))
	}
	switch what {
	case "device":
		return yes("may reach")
	case "recordings":
		if !pol.RecordingsAllowedOn(id, dev) {
			return no(fmt.Sprintf("no role of %s on device %s grants recordings: read (its roles there: %s)", id.Name, dev.ID, strings.Join(pol.Roles(id, dev), ", ")))
		}
		return yes("may read the recordings")
	}
	if err := pol.Authorize(id, dev, req); err != nil {
		return no(err.Error())
	}
	msg := "may open " + rest[0]
	if len(rest) > 1 {
		msg += " " + strings.Join(rest[1:], " ")
	}
	if r := pol.GrantingRole(id, dev, req); r != "" {
		msg = "(by role " + r + ") " + msg
	}
	if req.Type == wire.MsgPTY {
		if mode := pol.RecordingMode(id, dev); mode != "" {
			fmt.Fprintf(stdout, "recording: %s, by its roles\n", mode)
		}
	}
	return yes(msg)
}

// checkIdentity builds the identity to check from the flags.
func checkIdentity(as, method, tokenName string, groups []string) (edge.Identity, error) {
	switch {
	case as != "" && tokenName != "":
		return edge.Identity{}, &usageErr{"give --as (a person) or --token-name (a static token), not both"}
	case tokenName != "":
		if len(groups) > 0 {
			return edge.Identity{}, &usageErr{"a static token has no groups: drop --group, or check a person with --as"}
		}
		return edge.Identity{Name: tokenName, Method: edge.MethodToken}, nil
	case as == "":
		return edge.Identity{}, &usageErr{"--as NAME or --token-name NAME is required: who to check"}
	case method != edge.MethodOIDC && method != edge.MethodJWT:
		return edge.Identity{}, &usageErr{fmt.Sprintf("--method %q: use oidc or jwt (a static token is --token-name)", method)}
	}
	return edge.Identity{Name: as, Method: method, Groups: groups}, nil
}

// parseCheckRequest reads REQUEST into the word that names it and the
// canonical request the edge would authorize.
func parseCheckRequest(args []string) (string, edge.Request, error) {
	bad := func(format string, a ...any) (string, edge.Request, error) {
		return "", edge.Request{}, &usageErr{fmt.Sprintf(format, a...) + "; see tether-edge policy check --help"}
	}
	if len(args) == 0 {
		return bad("what to check is missing: tcp HOST:PORT, udp HOST:PORT, pty, exec, reload, files read|write PATH, recordings or device")
	}
	word, rest := args[0], args[1:]
	one := func(n int) bool { return len(rest) == n }
	switch word {
	case "tcp", "udp":
		if !one(1) {
			return bad("%s takes one HOST:PORT", word)
		}
		t, err := target.Parse(rest[0])
		if err != nil {
			return bad("%s %s: %v", word, rest[0], err)
		}
		typ := wire.MsgTCP
		if word == "udp" {
			typ = wire.MsgUDP
		}
		return word, edge.Request{Type: typ, Target: t}, nil
	case "pty", "exec", "reload", "recordings", "device":
		if !one(0) {
			return bad("%s takes no argument", word)
		}
		typ := map[string]wire.MsgType{"pty": wire.MsgPTY, "exec": wire.MsgExec, "reload": wire.MsgReload}[word]
		return word, edge.Request{Type: typ}, nil
	case "files":
		if !one(2) || (rest[0] != "read" && rest[0] != "write") {
			return bad("files takes read or write and an absolute PATH")
		}
		if err := wire.CheckFilePath(rest[1]); err != nil {
			return bad("files %s %s: %v", rest[0], rest[1], err)
		}
		dir := 0
		if rest[0] == "write" {
			dir = 1
		}
		return word, edge.Request{Type: wire.MsgFileTransfer, File: &wire.FileRequest{Direction: dir, Path: rest[1]}}, nil
	}
	return bad("unknown request %q", word)
}

// loadPolicyConfig reads edge.yaml for its policy only: the files it
// names for TLS and the revocation list are not read, the labels file is.
func loadPolicyConfig(path string) (*config, error) {
	data, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	return parseConfig(path, data, false)
}
