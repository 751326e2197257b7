# Shell functions shared by scripts/test and scripts/demo. Source it from
# bash with "set -euo pipefail" in effect:
#
#	. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# say prints a progress line to stderr.
say() { printf '==> %s\n' "$*" >&2; }

# die prints an error to stderr and exits 1.
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# run prints a command, then runs it.
run() {
	printf '+ %s\n' "$*" >&2
	"$@"
}

# require_go fails unless the go command is on PATH.
require_go() {
	command -v go >/dev/null 2>&1 ||
		die "the go command is not on PATH; install Go (see go.mod for the version) and try again"
}

# debian_installed PACKAGE reports whether a Debian package is installed.
debian_installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# ensure_debian_packages PACKAGE... installs the packages that are missing,
# with apt-get from the system's Debian sources. It needs root or sudo and
# works without a terminal (CI). The services of the packages are not started
# while installing: the tests and the demo run their own Mosquitto on free
# ports, and containers often cannot start services at all.
ensure_debian_packages() {
	local missing=() pkg
	if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
		say "not a Debian system: make sure these are installed: $*"
		return 0
	fi
	for pkg in "$@"; do
		debian_installed "$pkg" || missing+=("$pkg")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		say "Debian packages present: $*"
		return 0
	fi

	local sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 ||
			die "missing Debian packages ${missing[*]}; run as root or install sudo"
		if [ -t 0 ]; then
			sudo=(sudo)
		else
			sudo=(sudo -n) # no terminal to ask for a password on: fail instead of hanging
		fi
	fi

	say "installing missing Debian packages: ${missing[*]}"
	# A policy-rc.d that refuses every start keeps the packages' services
	# (mosquitto.service on port 1883) from being started by the install.
	# An existing one is left alone.
	local policy=/usr/sbin/policy-rc.d added=0 rc=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\n# added by tagbridge scripts/lib.sh during apt-get install\nexit 101\n' |
			"${sudo[@]}" tee "$policy" >/dev/null &&
			"${sudo[@]}" chmod 0755 "$policy" &&
			added=1
	fi
	run "${sudo[@]}" apt-get update || rc=$?
	if [ "$rc" -eq 0 ]; then
		run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends "${missing[@]}" </dev/null || rc=$?
	fi
	if [ "$added" -eq 1 ]; then
		"${sudo[@]}" rm -f "$policy" || true
	fi
	[ "$rc" -eq 0 ] || die "could not install ${missing[*]} (apt-get exit status $rc)"
}

# free_port prints a TCP port on 127.0.0.1 that nothing listens on, probing
# with bash's /dev/tcp from a random start. Another process may still take
# it before the caller binds it; callers wait for readiness and fail clearly.
free_port() {
	local port=$((20000 + RANDOM % 30000)) tries
	for ((tries = 0; tries < 200; tries++)); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
		port=$((port + 1))
	done
	die "no free TCP port found on 127.0.0.1"
}

# wait_for_port PORT SECONDS waits until something accepts connections on
# 127.0.0.1:PORT, and fails after SECONDS.
wait_for_port() {
	local port=$1 deadline=$((SECONDS + $2))
	until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

# ensure_opcua_peer installs node-opcua for the secure OPC UA test peer
# (scripts/opcua-peer) with npm ci, from the committed package-lock.json,
# when node_modules is missing or the lock file changed since the last
# install. It installs Debian's nodejs and npm when node or npm is missing.
ensure_opcua_peer() {
	ensure_npm_dir scripts/opcua-peer node-opcua "the OPC UA test peer's node-opcua"
}

# ensure_sparkplug_decoder installs Eclipse Tahu's sparkplug-payload, the
# decoder the Sparkplug B tests read tagbridge's messages with
# (scripts/sparkplug-decoder), as ensure_opcua_peer does node-opcua.
ensure_sparkplug_decoder() {
	ensure_npm_dir scripts/sparkplug-decoder sparkplug-payload "the Sparkplug B test decoder's sparkplug-payload"
}

# ensure_npm_dir DIR PACKAGE WHAT runs npm ci in DIR, from its committed
# package-lock.json, when DIR/node_modules/PACKAGE is missing or the lock
# file changed since the last install. It installs Debian's nodejs and npm
# when node or npm is missing.
ensure_npm_dir() {
	local dir=$1 pkg=$2 what=$3
	[ -f "$dir/package-lock.json" ] || die "$dir/package-lock.json is missing"
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
		ensure_debian_packages nodejs npm
	fi
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
		die "node and npm are needed for $what ($dir); install Node.js 18 or later"
	local major
	major=$(node -p 'process.versions.node.split(".")[0]')
	[ "$major" -ge 18 ] ||
		die "node $(node --version) is too old for $pkg in $dir: it needs Node.js 18 or later"

	# The stamp holds the checksum of the lock file that was installed.
	local stamp=$dir/node_modules/.tagbridge-lock.sha256 sum
	sum=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
	if [ -f "$dir/node_modules/$pkg/package.json" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
		say "$what installed (node $(node --version), $dir/node_modules)"
		return 0
	fi
	say "installing $what into $dir/node_modules"
	(cd "$dir" && run npm ci --no-audit --no-fund) ||
		die "npm ci in $dir failed"
	printf '%s\n' "$sum" >"$stamp"
}

# ensure_o62server exports TAGBRIDGE_O62SERVER, the open62541 test server
# that the OPC UA interop tests run: ../shared/peers/open62541/o62server
# beside the repository unless already set. Missing, it fails: the tests
# would fail on it anyway, later and less clearly.
ensure_o62server() {
	if [ -z "${TAGBRIDGE_O62SERVER:-}" ]; then
		TAGBRIDGE_O62SERVER="$(cd .. && pwd)/shared/peers/open62541/o62server"
	fi
	[ -x "$TAGBRIDGE_O62SERVER" ] ||
		die "the open62541 test server is missing at $TAGBRIDGE_O62SERVER: put the shared folder beside the repository or set TAGBRIDGE_O62SERVER"
	export TAGBRIDGE_O62SERVER
	say "open62541 test server: $TAGBRIDGE_O62SERVER"
}
