#!/bin/sh
# tagbridge package: after the files are in place.
#   deb postinst: configure [OLD-VERSION] | abort-upgrade | abort-remove | abort-deconfigure
#   rpm %post:    1 (install) | 2 (upgrade)
# An upgrade restarts the service when it is running; a fresh install
# neither enables nor starts it: the configuration must be edited first.
# systemctl runs only when systemd is the init system (not in containers).
set -e

upgrade=0
case "$1" in
configure) [ -z "$2" ] || upgrade=1 ;;
[0-9]*) [ "$1" -lt 2 ] || upgrade=1 ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	if [ "$upgrade" = 1 ]; then
		systemctl try-restart tagbridge.service ||
			echo "tagbridge: restart failed; see: journalctl -u tagbridge" >&2
	fi
fi
if [ "$upgrade" = 0 ]; then
	echo "tagbridge: edit /etc/tagbridge/config.yaml (secrets in /etc/default/tagbridge), then: systemctl enable --now tagbridge"
fi
exit 0
