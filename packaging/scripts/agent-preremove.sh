#!/bin/sh
# Stops and disables tether-agent when the package is removed, not when it is
# upgraded: .deb passes "remove", .rpm passes 0 (no version left).
set -e
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now tether-agent.service >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
