#!/bin/sh
# tagbridge package: after the files are removed.
#   deb postrm: remove | purge | upgrade NEW-VERSION | disappear ... |
#               failed-upgrade OLD-VERSION | abort-install | abort-upgrade
#   rpm %postun: 0 (erase) | 1 (upgrade)
# Remove keeps the configuration (/etc/tagbridge, /etc/default/tagbridge)
# and the data (/var/lib/tagbridge). Purge (deb only; rpm has no purge)
# deletes both, and first says what of value goes with them: values not yet
# delivered to the broker, the agent's private keys, the trust store. The
# system user and group stay, as Debian practice is: files elsewhere may
# still belong to them, and a reused id would give them to someone else.
set -e

# count prints how many regular files are under $1 and their size.
count() {
	find "$1" -type f -printf '%s\n' 2>/dev/null | awk '{n++; b+=$1} END {printf "%d files, %d bytes", n, b}'
}

if [ "$1" = purge ]; then
	spool=/var/lib/tagbridge/spool
	if [ -n "$(find "$spool" -type f -size +0 2>/dev/null | head -n 1)" ]; then
		echo "tagbridge: purge deletes the spool $spool ($(count "$spool")): values not yet delivered to the broker are lost" >&2
	fi
	for key in $(find /etc/tagbridge/certs -type f -name '*key*' 2>/dev/null); do
		echo "tagbridge: purge deletes the agent's private key $key: a new key needs a new certificate, trusted again by every PLC" >&2
	done
	pki=/var/lib/tagbridge/pki
	if [ -n "$(find "$pki" -type f 2>/dev/null | head -n 1)" ]; then
		echo "tagbridge: purge deletes the OPC UA trust store $pki ($(count "$pki")): the PLC certificates trusted so far" >&2
	fi
	rm -f /etc/systemd/system/multi-user.target.wants/tagbridge.service
	rm -rf /etc/tagbridge /var/lib/tagbridge
	rm -f /etc/default/tagbridge /etc/default/tagbridge.dpkg-*
	if getent passwd tagbridge >/dev/null; then
		echo "tagbridge: user and group tagbridge are kept (userdel tagbridge deletes them)" >&2
	fi
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
