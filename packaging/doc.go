// Package packaging holds what the tether-agent and tether-edge packages
// install besides the binaries (systemd units, example configurations,
// maintainer scripts) and the nfpm configurations that describe them
// (make dist-packages). Its test builds the packages for this machine's
// architecture and inspects them with dpkg-deb and rpm. It has no Go API.
package packaging
