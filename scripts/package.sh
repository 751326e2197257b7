#!/usr/bin/env bash
# scripts/package.sh: build tagbridge's .deb and .rpm packages.
#
# Usage: scripts/package.sh [-a ARCH]... [-f FORMAT]... [-o DIR]
#   -a ARCH    amd64 or arm64; may be repeated (default: both)
#   -f FORMAT  deb or rpm; may be repeated (default: both)
#   -o DIR     where the packages go (default: dist)
#
# The binary is cross-compiled with CGO_ENABLED=0 for linux/ARCH and the
# packages are built by nfpm (packaging/nfpm.yaml), a Go tool dependency in
# go.mod run with "go tool nfpm": only Go and git are needed.
#
# The package version comes from "git describe --tags" and is stamped into
# the binary ("tagbridge version"):
#   tag v1.2.3                  1.2.3
#   tag v1.2.0-rc1              1.2.0~rc1      (sorts before 1.2.0)
#   5 commits after v1.2.3      1.2.3+git5.abc1234
#   no tag, 26 commits          0.0.0~git26.abc1234
#   uncommitted changes         .dirty appended (+dirty after a bare tag)
# Set PKG_MAINTAINER to override the Maintainer field.
set -euo pipefail

archs=() formats=() out=dist
while getopts "a:f:o:h" opt; do
	case $opt in
	a) archs+=("$OPTARG") ;;
	f) formats+=("$OPTARG") ;;
	o) out=$OPTARG ;;
	h)
		sed -n '2,8s/^# \{0,1\}//p' "$0"
		exit 0
		;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || {
	echo "scripts/package.sh: unexpected argument $1" >&2
	exit 2
}
[ ${#archs[@]} -gt 0 ] || archs=(amd64 arm64)
[ ${#formats[@]} -gt 0 ] || formats=(deb rpm)
case $out in /*) ;; *) out=$PWD/$out ;; esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib.sh
require_go

for a in "${archs[@]}"; do
	case $a in amd64 | arm64) ;; *) die "unsupported architecture $a (amd64, arm64)" ;; esac
done
for f in "${formats[@]}"; do
	case $f in deb | rpm) ;; *) die "unsupported package format $f (deb, rpm)" ;; esac
done

# package_version prints a version valid for both dpkg and rpm (digits,
# letters, ".", "+", "~"), derived from git describe as documented above.
package_version() {
	local desc dirty=0 base n=0 sha="" suffix=""
	desc=$(git describe --tags --always --dirty --match 'v[0-9]*' 2>/dev/null) ||
		die "git describe failed: package.sh needs the git checkout"
	if [[ $desc == *-dirty ]]; then
		dirty=1
		desc=${desc%-dirty}
	fi
	if [[ $desc =~ ^v(.+)-([0-9]+)-g([0-9a-f]+)$ ]]; then
		base=${BASH_REMATCH[1]} n=${BASH_REMATCH[2]} sha=${BASH_REMATCH[3]}
	elif [[ $desc =~ ^v(.+)$ ]]; then
		base=${BASH_REMATCH[1]}
	else # no version tag: desc is the abbreviated commit
		base="" n=$(git rev-list --count HEAD) sha=$desc
	fi
	base=${base//-/\~} # a pre-release (v1.2.0-rc1) sorts before its release
	[ -z "$sha" ] || suffix=git$n.$sha
	[ "$dirty" = 0 ] || suffix=${suffix:+$suffix.}dirty
	if [ -z "$base" ]; then
		echo "0.0.0~$suffix"
	else
		echo "$base${suffix:++$suffix}"
	fi
}

version=$(package_version)
[[ $version =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || die "version $version from git describe is not valid for a package"
commit=$(git rev-parse HEAD)
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
else
	date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
fi
say "tagbridge $version (commit $commit, built $date)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# Man pages and completions come from the commands' own --help, run from a
# build for this machine (the packaged one may be for another architecture).
say "man pages and shell completion"
docs=$work/docs
run go build -o "$work/host/tagbridge" -ldflags "-X main.version=$version" .
run "$work/host/tagbridge" man "$docs/man"
gzip -9n "$docs"/man/*.1
"$work/host/tagbridge" completion bash >"$docs/tagbridge.bash"
"$work/host/tagbridge" completion zsh >"$docs/_tagbridge"
"$work/host/tagbridge" schema >"$docs/config.schema.json"

# The Debian changelog: one entry for this build, pointing at the history.
changed=$(git log -1 --format=%cI HEAD)
cat >"$work/changelog.yml" <<EOF
- semver: $version-1
  date: $changed
  packager: ${PKG_MAINTAINER:-tagbridge maintainers <tagbridge@users.noreply.github.com>}
  deb:
    urgency: medium
    distributions: [stable]
  changes:
    - commit: $commit
      note: |-
        Upstream build of commit $commit.
        The changes are in the project's history:
        https://github.com/tagbridge/tagbridge/commits
EOF
# nfpm does not expand variables in its changelog key: the path goes in here.
sed "s|\${CHANGELOG}|$work/changelog.yml|" packaging/nfpm.yaml >"$work/nfpm.yaml"

for arch in "${archs[@]}"; do
	bin=$work/$arch/tagbridge
	say "build linux/$arch"
	# PIE: address space layout randomisation for the whole binary, as
	# Debian builds its programs (and lintian expects of a dynamic ELF).
	run env CGO_ENABLED=0 GOOS=linux GOARCH="$arch" go build -trimpath -buildmode=pie -buildvcs=true \
		-ldflags "-s -w -X main.version=$version -X main.commit=$commit -X main.date=$date" \
		-o "$bin" .
	for format in "${formats[@]}"; do
		say "package $format $arch"
		# nfpm names the file after the packaging conventions, e.g.
		# tagbridge_1.2.3_amd64.deb and tagbridge-1.2.3-1.x86_64.rpm.
		run env BINARY="$bin" PKG_ARCH="$arch" PKG_VERSION="$version" DOCS="$docs" \
			PKG_MAINTAINER="${PKG_MAINTAINER:-tagbridge maintainers <tagbridge@users.noreply.github.com>}" \
			go tool nfpm package --config "$work/nfpm.yaml" --packager "$format" --target "$out/"
	done
done
say "packages in $out"
