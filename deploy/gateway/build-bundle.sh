#!/bin/sh
# Build the gateway's offline bundle (a wheelhouse in one tar.gz, with its SHA-256) into ./dist.
#   deploy/gateway/build-bundle.sh [--out DIR] [--python /usr/bin/python3.11]
# Run it on a machine that reaches a package index (or has a pip cache), with the same Python
# version and platform as the edge boxes. See gateway/bundle.py and gateway/README.md.
set -eu
cd "$(dirname "$0")/../.."
exec "${PYTHON:-python3}" -m gateway.bundle build "$@"
