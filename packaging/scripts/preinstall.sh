#!/bin/sh
# tagbridge package: before the files are unpacked, on install and upgrade.
#   deb preinst: install | upgrade OLD-VERSION | abort-upgrade NEW-VERSION
#   rpm %pre:    1 (install) | 2 (upgrade)
# Creates the system user and group tagbridge, which own some of the
# package's files: no login shell, no home directory of its own.
set -e

if ! getent group tagbridge >/dev/null; then
	groupadd --system tagbridge
fi
if ! getent passwd tagbridge >/dev/null; then
	useradd --system --gid tagbridge --no-create-home --home-dir /var/lib/tagbridge \
		--shell /usr/sbin/nologin --comment "tagbridge OPC UA to MQTT agent" tagbridge
fi
exit 0
