#!/bin/sh
# Build the production image with buildah, without a Docker daemon or BuildKit.
#
#   deploy/build-image.sh [TAG]          # default switchboard:latest
#   NODE_IMAGE=... PYTHON_IMAGE=... deploy/build-image.sh    # bases from a mirror
#
# Without NODE_IMAGE and PYTHON_IMAGE, the bases deploy/local-bases.sh made are used when they
# exist, and the registry's node:20-slim and python:3.11-slim otherwise. Storage is vfs and
# isolation chroot unless BUILDAH_STORAGE_DRIVER and BUILDAH_ISOLATION say otherwise: both work
# as root in a container or on a host without overlay or user namespaces.
#
# --format docker keeps the HEALTHCHECK (the OCI image format has none); --layers reuses the
# installed-packages layer while requirements.txt is unchanged.
set -eu
cd "$(dirname "$0")/.."

tag="${1:-switchboard:latest}"
driver="${BUILDAH_STORAGE_DRIVER:-vfs}"
isolation="${BUILDAH_ISOLATION:-chroot}"
suite="${DEBIAN_SUITE:-bookworm}"

has_image() { buildah --storage-driver "$driver" inspect --type image "$1" >/dev/null 2>&1; }
if [ -z "${PYTHON_IMAGE:-}" ] && has_image "localhost/switchboard-base-python:$suite"; then
    PYTHON_IMAGE="localhost/switchboard-base-python:$suite"
fi
if [ -z "${NODE_IMAGE:-}" ] && has_image "localhost/switchboard-base-node:$suite"; then
    NODE_IMAGE="localhost/switchboard-base-node:$suite"
fi

set -- --isolation "$isolation" --format docker --layers --file Dockerfile --tag "$tag"
for base in "${NODE_IMAGE:-}" "${PYTHON_IMAGE:-}"; do
    case "$base" in
        # Pull only what is missing: otherwise buildah asks a registry called localhost for a newer base.
        localhost/*) set -- "$@" --pull=false ; break ;;
    esac
done
if [ -n "${NODE_IMAGE:-}" ]; then
    set -- "$@" --build-arg "NODE_IMAGE=$NODE_IMAGE"
fi
if [ -n "${PYTHON_IMAGE:-}" ]; then
    set -- "$@" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"
fi
echo "build-image: buildah build $* ." >&2
exec buildah --storage-driver "$driver" build "$@" .
