#!/bin/sh
# tagbridge package: before the files are removed.
#   deb prerm: remove | upgrade NEW-VERSION | deconfigure ... | failed-upgrade OLD-VERSION
#   rpm %preun: 0 (erase) | 1 (upgrade)
# Removing the package stops the service (rpm also disables it; deb keeps it
# enabled until purge, as Debian packages do). An upgrade leaves it running:
# postinstall restarts it on the new files.
set -e

if [ -d /run/systemd/system ]; then
	invoke=systemctl
	if command -v deb-systemd-invoke >/dev/null 2>&1; then
		invoke=deb-systemd-invoke # honours policy-rc.d
	fi
	case "$1" in
	remove) "$invoke" stop tagbridge.service || true ;;
	0) "$invoke" disable --now tagbridge.service || true ;;
	esac
fi
exit 0
