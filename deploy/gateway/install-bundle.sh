#!/bin/sh
# Install the ParkPulse gateway from this offline bundle, without any network.
#   ./install.sh [TARGET]   TARGET: the virtualenv to create or upgrade
#                           (default /opt/parkpulse/venv, where deploy/systemd/parkpulse-gateway.service looks)
#   PYTHON=/usr/bin/python3.11 ./install.sh …   the interpreter (same version as the bundle's, see BUNDLE.json)
# Every wheel is checked against SHA256SUMS first; pip then installs with --no-index, so nothing is
# fetched from anywhere but this folder. Built by `python -m gateway.bundle build` (gateway/bundle.py).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
TARGET=${1:-/opt/parkpulse/venv}
PYTHON=${PYTHON:-python3}

fail() { echo "install.sh: $*; nothing installed" >&2; exit 1; }

cd "$HERE"
[ -f SHA256SUMS ] && [ -f BUNDLE.json ] || fail "SHA256SUMS or BUNDLE.json missing in $HERE"
if ! bad=$(sha256sum --check --quiet SHA256SUMS 2>&1); then
  fail "the bundle is damaged (SHA-256 mismatch): $bad"
fi
want=$(sed -n 's/^ *"python_tag": *"\([^"]*\)".*/\1/p' BUNDLE.json)
version=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' BUNDLE.json)
have=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")') \
  || fail "PYTHON=$PYTHON does not run"
[ "$want" = "$have" ] || fail "this bundle is for $want, but PYTHON=$PYTHON is $have"

[ -x "$TARGET/bin/python" ] || "$PYTHON" -m venv "$TARGET" || fail "cannot create the virtualenv $TARGET"
# No configuration file and no index: only the wheels of this bundle can be installed.
unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CONSTRAINT PIP_REQUIREMENT
PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 \
  "$TARGET/bin/python" -m pip install --quiet --no-index --find-links "$HERE/wheels" --upgrade \
  "parkpulse==$version" || fail "pip could not install from $HERE/wheels"
echo "installed parkpulse $version (gateway) into $TARGET: $TARGET/bin/parkpulse-gateway"
