#!/bin/sh
# Build the production image with buildah, without a Docker daemon or BuildKit.
#
#   deploy/build-image.sh [TAG]          # default switchboard:latest
#   NODE_IMAGE=... PYTHON_IMAGE=... deploy/build-image.sh    # bases from a mirror
#
# --format docker keeps the HEALTHCHECK (the OCI image format has none); --layers reuses the
# installed-packages layer while requirements.txt is unchanged.
set -eu
cd "$(dirname "$0")/.."

tag="${1:-switchboard:latest}"
set -- --format docker --layers --file Dockerfile --tag "$tag"
if [ -n "${NODE_IMAGE:-}" ]; then
    set -- "$@" --build-arg "NODE_IMAGE=$NODE_IMAGE"
fi
if [ -n "${PYTHON_IMAGE:-}" ]; then
    set -- "$@" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"
fi
exec buildah build "$@" .
