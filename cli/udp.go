package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tetherhq/tether/udp"
)

type udpOptions struct {
	g      *globalOptions
	device string
	specs  []forwardSpec
}

func newUDPCommand(g *globalOptions) *cobra.Command {
	o := &udpOptions{g: g}
	cmd := &cobra.Command{
		Use:   "udp DEVICE [BIND:]LPORT:HOST:RPORT [more...]",
		Short: "Forward local UDP ports to addresses reached from a device",
		Long: `Forward local UDP ports to addresses reached from a device. Each local peer
(address and port) gets its own stream, so answers come back to the peer
that asked; idle peers expire after a minute. BIND defaults to 127.0.0.1;
LPORT 0 picks a free port. One line per forward is printed once it listens:

  127.0.0.1:5353 -> d1 127.0.0.53:53

The command serves until Ctrl-C, and redials the edge when the connection
is lost. When the device ends a flow itself (for example when the remote's
replies exceed the device's cap on reply traffic), a line says why:

  tether: udp flow from 127.0.0.1:40512 via 127.0.0.1:5353 -> d1 127.0.0.53:53 closed by the device: reply traffic exceeded 10x the requests over 10s; the peer's next datagram opens a new flow`,
		Example: `  # The device's DNS resolver on local port 5353
  tether udp d1 5353:127.0.0.53:53
  dig @127.0.0.1 -p 5353 example.com

  # A Modbus/UDP or SNMP agent next to the device
  tether udp d1 1161:192.168.1.20:161`,
		ValidArgsFunction: completeDevice(g),
		Args:              argsUsage(cobra.MinimumNArgs(2), "tether udp DEVICE [BIND:]LPORT:HOST:RPORT [more...]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.device = args[0]
			specs, err := parseForwardSpecs(args[1:])
			if err != nil {
				return err
			}
			o.specs = specs
			return o.run(cmd.Context())
		},
	}
	return cmd
}

func (o *udpOptions) run(ctx context.Context) error {
	conn, err := o.g.prepare(o.device)
	if err != nil {
		return err
	}
	r, err := conn.redial(ctx, o.g.notice)
	if err != nil {
		return err
	}
	defer r.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lns []*udp.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for _, s := range o.specs {
		l := &udp.Listener{
			Opener: r, Local: s.Local, Remote: s.Remote,
			Logger: conn.log,
			OnDeviceClose: func(e *udp.DeviceCloseError) {
				o.g.notice("%s", deviceCloseNotice(o.device, e))
			},
		}
		if err := l.Start(ctx); err != nil {
			return fmt.Errorf("cannot forward %s: %w", s.Local, err)
		}
		lns = append(lns, l)
	}
	stopped := make(chan int, len(lns))
	for i, l := range lns {
		fmt.Fprintf(o.g.io.Out, "%s -> %s %s\n", l.Addr(), o.device, o.specs[i].Remote)
		go func() {
			<-l.Done()
			stopped <- i
		}()
	}
	select {
	case <-ctx.Done():
		// Ctrl-C or SIGTERM: exit as interrupted, as tcp does.
		return ctx.Err()
	case i := <-stopped:
		if err := lns[i].Err(); err != nil {
			return fmt.Errorf("forward %s stopped: %w", lns[i].Addr(), err)
		}
		return nil
	}
}

// deviceCloseNotice is what the user reads when the device ends a UDP flow
// with a reason, for example the reply cap.
func deviceCloseNotice(device string, e *udp.DeviceCloseError) string {
	return fmt.Sprintf("udp flow from %s via %s -> %s %s closed by the device: %s; the peer's next datagram opens a new flow",
		e.Peer, e.Local, device, e.Remote, e.Reason)
}
