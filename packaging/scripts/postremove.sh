#!/bin/sh
# tagbridge package: after the files are removed.
#   deb postrm: remove | purge | upgrade NEW-VERSION | disappear ... |
#               failed-upgrade OLD-VERSION | abort-install | abort-upgrade
#   rpm %postun: 0 (erase) | 1 (upgrade)
# Remove keeps the configuration (/etc/tagbridge, /etc/default/tagbridge),
# the data (/var/lib/tagbridge) and the user. Purge (deb only; rpm has no
# purge) deletes all three.
set -e

if [ "$1" = purge ]; then
	rm -f /etc/systemd/system/multi-user.target.wants/tagbridge.service
	rm -rf /etc/tagbridge /var/lib/tagbridge
	rm -f /etc/default/tagbridge /etc/default/tagbridge.dpkg-*
	# Not fatal: userdel refuses while a process still runs as tagbridge.
	if getent passwd tagbridge >/dev/null; then
		userdel tagbridge || echo "tagbridge: could not delete user tagbridge" >&2
	fi
	if getent group tagbridge >/dev/null; then
		groupdel tagbridge || echo "tagbridge: could not delete group tagbridge" >&2
	fi
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
