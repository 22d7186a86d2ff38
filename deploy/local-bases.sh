#!/bin/sh
# Make the two base images the Dockerfile needs from Debian packages alone, with debootstrap and
# buildah, for building where python:3.11-slim and node:20-slim cannot be pulled:
#
#   deploy/local-bases.sh            # makes localhost/switchboard-base-python and -node
#   deploy/build-image.sh            # uses them when they exist
#
# Debian bookworm ships Python 3.11 (as python:3.11-slim has) and Node.js with npm. The Python base
# puts a virtual environment first on PATH, so `python` and `pip install` work as in the official
# image. Needs root, debootstrap and buildah. DEBIAN_MIRROR picks the mirror (debootstrap's default
# otherwise); BUILDAH_STORAGE_DRIVER the storage driver (vfs, which works everywhere).
#
# The CA certificates added on this host (EXTRA_CA_CERTS, default /usr/local/share/ca-certificates/*.crt)
# are trusted in both bases too, and pip and npm are pointed at the system's CA bundle: behind a
# TLS-inspecting proxy, `pip install` and `npm ci` in the build reach their registries as the host does.
set -eu

suite="${DEBIAN_SUITE:-bookworm}"
driver="${BUILDAH_STORAGE_DRIVER:-vfs}"
python_base="${PYTHON_BASE:-localhost/switchboard-base-python:$suite}"
node_base="${NODE_BASE:-localhost/switchboard-base-node:$suite}"

bah() { buildah --storage-driver "$driver" "$@"; }

# make_base IMAGE PACKAGES [SETUP-COMMAND]: debootstrap straight into a scratch container's root,
# install PACKAGES with apt (which, unlike debootstrap's --include, resolves every dependency npm
# has), run SETUP-COMMAND in it (chroot), drop apt's caches and commit the container as IMAGE.
make_base() {
    image="$1" packages="$2" setup="${3:-}"
    if bah inspect --type image "$image" >/dev/null 2>&1; then
        echo "local-bases: $image exists (buildah rmi it to make it again)"
        return
    fi
    echo "local-bases: making $image from Debian $suite"
    container=$(bah from scratch)
    trap 'bah rm "$container" >/dev/null 2>&1 || true' EXIT
    root=$(bah mount "$container")
    # shellcheck disable=SC2086 # DEBIAN_MIRROR is one optional word
    debootstrap --variant=minbase "$suite" "$root" ${DEBIAN_MIRROR:-}
    # shellcheck disable=SC2086 # a list of package names
    chroot "$root" /bin/sh -euc "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends $packages >/dev/null"
    for certificate in ${EXTRA_CA_CERTS:-/usr/local/share/ca-certificates/*.crt}; do
        if [ -f "$certificate" ]; then
            cp "$certificate" "$root/usr/local/share/ca-certificates/"
        fi
    done
    chroot "$root" update-ca-certificates >/dev/null
    if [ -n "$setup" ]; then
        chroot "$root" /bin/sh -euc "$setup"
    fi
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/log/*.log "$root"/root/.cache
    bah umount "$container" >/dev/null
    bundle=/etc/ssl/certs/ca-certificates.crt
    bah config --env LANG=C.UTF-8 --env PIP_CERT=$bundle --env NODE_EXTRA_CA_CERTS=$bundle --cmd /bin/sh "$container"
    if [ "$image" = "$python_base" ]; then
        bah config --env PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            --cmd python "$container"
    fi
    bah commit --rm "$container" "$image"
    trap - EXIT
}

make_base "$python_base" "python3 python3-venv ca-certificates" \
    "python3 -m venv /opt/python"
make_base "$node_base" "nodejs npm ca-certificates"

echo "local-bases: PYTHON_IMAGE=$python_base NODE_IMAGE=$node_base"
