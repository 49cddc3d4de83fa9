#!/bin/sh
# Install relay from this offline kit into PREFIX (default /opt/relay): verify, then a venv and
# pip with no index at all. Nothing is installed unless the signature and every hash check out.
#   RELAY_RELEASE_PUBKEY=/path/relay-release.pub.pem ./install.sh [PREFIX]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
prefix=${1:-/opt/relay}
key=${RELAY_RELEASE_PUBKEY:-}
die() { echo "install.sh: $*" >&2; exit 1; }

[ -n "$key" ] || die "set RELAY_RELEASE_PUBKEY to the release public key (obtained apart from the kit)"
cd "$here"
openssl pkeyutl -verify -pubin -inkey "$key" -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig \
    >/dev/null 2>&1 || die "the signature of SHA256SUMS does not verify: not installing"
sha256sum --quiet --strict -c SHA256SUMS >/dev/null 2>&1 \
    || die "a file of the kit does not match SHA256SUMS: not installing"
listed=$(cut -d' ' -f3- SHA256SUMS | LC_ALL=C sort)
present=$(find . -type f ! -name SHA256SUMS ! -name SHA256SUMS.sig | sed 's|^\./||' | LC_ALL=C sort)
[ "$listed" = "$present" ] || die "the kit holds files SHA256SUMS does not list: not installing"

want=$(cat PYTHON)
have=$(python3 -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
[ "$want" = "$have" ] || die "this kit is for $want, python3 here is $have"

python3 -m venv "$prefix"
PIP_CONFIG_FILE=/dev/null "$prefix/bin/pip" install --quiet --no-index --find-links "$here/wheels" relay
"$prefix/bin/relay" --help >/dev/null
echo "relay installed in $prefix: $prefix/bin/relay"
