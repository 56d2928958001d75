#!/bin/sh
# Makes the system user the edge's service runs as, before the files that
# belong to it are unpacked. Works for both .deb (preinst) and .rpm (%pre).
set -e
if ! getent group tether-edge >/dev/null; then
	groupadd --system tether-edge
fi
if ! getent passwd tether-edge >/dev/null; then
	useradd --system --gid tether-edge --no-create-home \
		--home-dir /var/lib/tether-edge --shell /usr/sbin/nologin \
		--comment "Tether edge" tether-edge
fi
exit 0
