#!/bin/sh
# Tells systemd about the new or changed unit. The service is not started:
# it needs its configuration and certificates first (see the comments in
# the example configuration under /etc/tether).
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
