#!/bin/sh
# tagbridge package: before the files are removed.
#   deb prerm: remove | upgrade NEW-VERSION | deconfigure ... | failed-upgrade OLD-VERSION
#   rpm %preun: 0 (erase) | 1 (upgrade)
# Removing the package stops the service (rpm also disables it; deb keeps it
# enabled until purge, as Debian packages do). An upgrade leaves it running:
# postinstall restarts it on the new files.
set -e

if [ -d /run/systemd/system ]; then
	case "$1" in
	remove) systemctl stop tagbridge.service || true ;;
	0) systemctl disable --now tagbridge.service || true ;;
	esac
fi
exit 0
