#!/bin/sh
# tagbridge package: after the files are in place.
#   deb postinst: configure [OLD-VERSION] | abort-upgrade | abort-remove | abort-deconfigure
#   rpm %post:    1 (install) | 2 (upgrade)
# An upgrade restarts the service when it is running; a fresh install
# neither enables nor starts it: the configuration must be edited first.
# systemd is asked only when it is the init system (not in containers);
# on Debian through deb-systemd-invoke, which honours policy-rc.d.
set -e

upgrade=0
case "$1" in
configure) [ -z "$2" ] || upgrade=1 ;;
[0-9]*) [ "$1" -lt 2 ] || upgrade=1 ;;
*) exit 0 ;;
esac

# The directories the service writes or reads its keys from, found owned by
# root (made by hand, or left by an older version): given to the service
# user, as systemd's StateDirectory= also does at start. What is inside is
# left alone here (systemd repairs /var/lib/tagbridge at start; a recursive
# chown by root is open to hard link tricks).
for dm in /var/lib/tagbridge:0750 /var/lib/tagbridge/pki:0700 /var/lib/tagbridge/spool:0700 /etc/tagbridge/certs:0700; do
	d=${dm%:*}
	if [ -d "$d" ] && [ ! -L "$d" ] && [ "$(stat -c %u "$d")" = 0 ]; then
		chown tagbridge:tagbridge "$d"
		chmod "${dm#*:}" "$d"
		echo "tagbridge: $d was owned by root; gave it to user tagbridge, mode ${dm#*:}" >&2
	fi
done

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	if [ "$upgrade" = 1 ]; then
		invoke=systemctl
		if command -v deb-systemd-invoke >/dev/null 2>&1; then
			invoke=deb-systemd-invoke
		fi
		"$invoke" try-restart tagbridge.service ||
			echo "tagbridge: restart failed; see: journalctl -u tagbridge" >&2
	fi
fi
if [ "$upgrade" = 0 ]; then
	echo "tagbridge: edit /etc/tagbridge/config.yaml (secrets in /etc/default/tagbridge), then: systemctl enable --now tagbridge"
fi
exit 0
