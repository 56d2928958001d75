package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/tetherhq/tether/internal/shellquote"
	"github.com/tetherhq/tether/transport"
)

type sshOptions struct {
	g    *globalOptions
	dest string // [USER@]DEVICE, as given to ssh
	args []string
}

// The system calls of tether ssh; tests replace them to see what would run.
var (
	sshLookPath   = exec.LookPath
	sshExecutable = os.Executable
	sshEnviron    = os.Environ
	sshExec       = syscall.Exec
)

func newSSHCommand(g *globalOptions) *cobra.Command {
	o := &sshOptions{g: g}
	cmd := &cobra.Command{
		Use:   "ssh [flags] [USER@]DEVICE [SSH OPTIONS] [COMMAND [ARGS...]]",
		Short: "Run ssh to a device's sshd through the edge",
		Long: `Run the system's ssh to a device's own sshd through the edge, with ssh's
ProxyCommand set to this tether's nc:

  ssh -o ProxyCommand="tether nc DEVICE 127.0.0.1:%p" -o HostKeyAlias=DEVICE.tether [USER@]DEVICE ...

Everything after DEVICE goes to ssh unchanged: its options (-p PORT sets the
port on the device, 22 by default; -L, -D, -i...), then the remote command.
tether's own flags come before DEVICE. The edge, the token and the CA in
force reach the ProxyCommand through its environment, never its command
line, where other users could read them in ps.

Host keys are remembered per device under the name DEVICE.tether in
~/.ssh/known_hosts, whatever the device's address. ssh exits with its own
codes: 255 when the connection failed, when tether nc prints the reason.
For scp, sftp, rsync or another ssh client, set the ProxyCommand yourself
(see tether nc --help).`,
		Example: `  # A login shell on device d1 as root
  tether ssh root@d1

  # One command, with a profile of the config file
  tether --profile lab ssh root@d1 uptime

  # The device's sshd listens on port 2222; forward a port on the way
  tether ssh root@d1 -p 2222 -L 8080:127.0.0.1:80`,
		ValidArgsFunction: completeDevice(g),
		Args:              argsUsage(cobra.MinimumNArgs(1), "tether ssh [flags] [USER@]DEVICE [SSH OPTIONS] [COMMAND]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dest, o.args = args[0], args[1:]
			return o.run()
		},
	}
	// Flags after DEVICE are ssh's.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

// sshTarget is the ProxyCommand's target on the device: its loopback at the
// port ssh was given (%p, 22 unless -p or a Port setting says otherwise).
const sshTarget = "127.0.0.1:%p"

func (o *sshOptions) run() error {
	device := o.dest
	if i := strings.LastIndexByte(device, '@'); i >= 0 {
		device = device[i+1:]
	}
	if strings.Contains(o.dest, "://") {
		return usageErrorf("%q: give [USER@]DEVICE, and the port as -p PORT after it", o.dest)
	}
	if device == "" {
		return usageErrorf("%q names no device; usage: tether ssh [USER@]DEVICE [SSH OPTIONS] [COMMAND]", o.dest)
	}
	o.g.msg.device = device
	s, err := o.g.settings()
	if err != nil {
		return err
	}
	if err := s.requireEdge(); err != nil {
		return err
	}
	if _, err := tlsConfig(s); err != nil {
		return err
	}
	sshPath, err := sshLookPath("ssh")
	if err != nil {
		return fmt.Errorf("ssh is not installed (not found in PATH): install OpenSSH's client, such as apt install openssh-client, or point another ssh client at ProxyCommand 'tether nc %s 127.0.0.1:22'", device)
	}
	self, err := sshExecutable()
	if err != nil {
		return fmt.Errorf("find this tether's own path for the ProxyCommand: %w", err)
	}
	env, err := o.proxyEnv(s)
	if err != nil {
		return err
	}
	argv := append([]string{"ssh",
		"-o", "ProxyCommand=" + o.proxyCommand(self, device),
		"-o", "HostKeyAlias=" + device + ".tether",
		o.dest}, o.args...)
	if err := sshExec(sshPath, argv, env); err != nil {
		return fmt.Errorf("run %s: %w", sshPath, err)
	}
	return nil
}

// proxyCommand is the ProxyCommand line: this tether's nc to the device,
// with the flags in force that carry no secret. ssh runs it with the
// user's shell after expanding %-tokens, so every word is quoted for the
// shell and its % doubled, except the %p of the target.
func (o *sshOptions) proxyCommand(self, device string) string {
	words := []string{self}
	if o.g.verbose {
		words = append(words, "-v")
	}
	if o.g.timeout > 0 && o.g.timeout != transport.DefaultHandshakeTimeout {
		words = append(words, "--connect-timeout", o.g.timeout.String())
	}
	words = append(words, "nc", device)
	quoted := make([]string, 0, len(words)+1)
	for _, w := range words {
		quoted = append(quoted, strings.ReplaceAll(shellquote.Quote(w), "%", "%%"))
	}
	return strings.Join(append(quoted, sshTarget), " ")
}

// proxyEnv is the environment of ssh and so of its ProxyCommand: this
// process's, with the TETHER_ settings replaced by the ones in force. The
// token goes there, not on the command line: another user can read a
// command line in ps, but not the environment.
func (o *sshOptions) proxyEnv(s *Settings) ([]string, error) {
	var env []string
	for _, kv := range sshEnviron() {
		if !strings.HasPrefix(kv, "TETHER_") {
			env = append(env, kv)
		}
	}
	env = append(env, EnvEdge+"="+s.Edge, EnvToken+"="+s.Token)
	if s.CA != "" {
		ca, err := filepath.Abs(s.CA)
		if err != nil {
			return nil, &configError{fmt.Errorf("the CA certificate %s: %w", s.CA, err)}
		}
		env = append(env, EnvCA+"="+ca)
	}
	// The same config file and profile, so that tether nc reads what this
	// command read (the settings above beat them).
	if cfg := o.configPath(); cfg != "" {
		abs, err := filepath.Abs(cfg)
		if err != nil {
			return nil, &configError{fmt.Errorf("the config file %s: %w", cfg, err)}
		}
		env = append(env, EnvConfig+"="+abs)
	}
	if s.Profile != "" {
		env = append(env, EnvProfile+"="+s.Profile)
	}
	return env, nil
}

// configPath is the config file named by --config or TETHER_CONFIG, or "".
func (o *sshOptions) configPath() string {
	if o.g.config != "" {
		return o.g.config
	}
	return o.g.getenv(EnvConfig)
}
