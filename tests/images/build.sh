#!/usr/bin/env bash
# Build the two local test images with `docker import` from a rootfs assembled on the spot
# (nothing can be pulled from a registry here):
#   podsync-test-py:latest       busybox applets + Debian's python3 (stdlib, zlib, ctypes, hashlib)
#   podsync-test-busybox:latest  busybox applets only (sh, tar, find, stat, ps ...), no python
# Both: WORKDIR /app, PID 1 an init that only reaps orphans. Idempotent: an up-to-date image
# is kept unless --force.
# Needs: docker (DOCKER_HOST honoured), busybox-static, python3 + its stdlib (apt: python3-minimal
# libpython3-stdlib). Usage: tests/images/build.sh [--force]
#
# tests/images/build.sh --rootfs DIR  writes the same two root filesystems as folders
# DIR/py and DIR/busybox instead (no Docker needed), for the Kubernetes kit's image.sh
# (../shared/k8s/image.sh NAME:TAG DIR/py); DIR/recipe holds the recipe hash. Existing
# folders with the same recipe are kept.
set -euo pipefail

PY_IMAGE=podsync-test-py:latest
BUSYBOX_IMAGE=podsync-test-busybox:latest
FORCE=0
ROOTFS_OUT=""
while (($#)); do
    case "$1" in
        --force) FORCE=1 ;;
        --rootfs)
            [[ $# -ge 2 ]] || { echo "usage: $0 [--force] [--rootfs DIR]" >&2; exit 2; }
            ROOTFS_OUT=$2
            shift
            ;;
        *) echo "usage: $0 [--force] [--rootfs DIR]" >&2; exit 2 ;;
    esac
    shift
done

if [[ -z "${DOCKER_HOST:-}" && -S /tmp/podsync-docker/docker.sock ]]; then
    export DOCKER_HOST=unix:///tmp/podsync-docker/docker.sock
fi

# Images carry the hash of this script: a stale image (older recipe, or a same-named image
# built by something else) is rebuilt, an up-to-date one is kept.
RECIPE=$(sha256sum "$0" | cut -c1-16)
need_build() {
    [[ "$FORCE" == 1 ]] && return 0
    local have
    have=$(docker image inspect -f '{{index .Config.Labels "podsync.recipe"}}' "$1" 2>/dev/null) \
        || return 0
    [[ "$have" != "$RECIPE" ]]
}

# ldd fails on a static binary, or says "statically linked" (static-pie).
is_static() {
    local out
    out=$(ldd "$1" 2>&1) || return 0
    [[ "$out" == *"statically linked"* ]]
}

# A dynamic busybox would need its libraries inside the image too: insist on the static one.
BUSYBOX=""
for candidate in /bin/busybox /usr/bin/busybox "$(command -v busybox || true)"; do
    if [[ -n "$candidate" && -x "$candidate" ]] && is_static "$candidate"; then
        BUSYBOX=$candidate
        break
    fi
done
if [[ -z "$BUSYBOX" ]]; then
    echo "build.sh: a static busybox is needed (apt-get install -y busybox-static)" >&2
    exit 1
fi

WORK=$(mktemp -d /tmp/podsync-images.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# The skeleton every image shares: busybox applets on PATH, a root user, /app, /tmp.
base_rootfs() {
    local root=$1
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,app,tmp,root,proc,sys,dev,var/tmp}
    chmod 1777 "$root/tmp" "$root/var/tmp"
    cp "$BUSYBOX" "$root/bin/busybox"
    # What `busybox --install -s` does, but into the rootfs rather than the host's /.
    local applet
    for applet in $("$BUSYBOX" --list-full); do
        [[ "$applet" == bin/busybox ]] && continue
        [[ -e "$root/$applet" ]] && continue
        mkdir -p "$root/$(dirname "$applet")"
        ln -s /bin/busybox "$root/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
    echo 'root:x:0:' >"$root/etc/group"
    # PID 1 is busybox init with nothing to start: unlike a bare `sleep` it reaps orphans
    # (within a second), so a killed command's children do not linger as zombies.
    echo '# podsync test image: no services, init only reaps orphans' >"$root/etc/inittab"
}

import_image() {
    local root=$1 image=$2
    tar --numeric-owner -C "$root" -cf - . | docker import \
        --change 'WORKDIR /app' \
        --change "LABEL podsync.recipe=$RECIPE" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/sbin/init"]' \
        - "$image" >/dev/null
    echo "build.sh: built $image ($(du -sh "$root" | cut -f1) rootfs)"
}

build_busybox() {
    local root=$WORK/busybox
    base_rootfs "$root"
    import_image "$root" "$BUSYBOX_IMAGE"
}

build_busybox_rootfs() {
    base_rootfs "$1"
}

# Copy a host file (following links) to the same path in the rootfs.
copy_file() {
    local root=$1 src=$2
    mkdir -p "$root/$(dirname "$src")"
    cp -L "$src" "$root/$src"
}

build_py() {
    local root=$WORK/py
    build_py_rootfs "$root"
    import_image "$root" "$PY_IMAGE"
}

build_py_rootfs() {
    local root=$1
    base_rootfs "$root"
    local python ver stdlib
    python=$(readlink -f /usr/bin/python3)
    ver=$(basename "$python")               # e.g. python3.11
    stdlib=/usr/lib/$ver
    if [[ ! -f "$stdlib/zipfile.py" || ! -d "$stdlib/lib-dynload" ]]; then
        echo "build.sh: $stdlib is incomplete (apt-get install -y python3-minimal libpython3-stdlib)" >&2
        exit 1
    fi
    copy_file "$root" "$python"
    ln -sf "$ver" "$root/usr/bin/python3"
    rm -f "$root/bin/python3"
    mkdir -p "$root$stdlib"
    tar -C "$stdlib" -cf - \
        --exclude=./test --exclude=./idlelib --exclude=./tkinter --exclude=./ensurepip \
        --exclude=./lib2to3 --exclude=__pycache__ --exclude='./config-*' \
        --exclude=./site-packages --exclude=./dist-packages --exclude=./pydoc_data \
        --exclude='_test*.so' --exclude='xxlimited*.so' . | tar -C "$root$stdlib" -xf -
    # Shared libraries of the interpreter and of every extension module we ship (ctypes needs
    # libffi, hashlib libcrypto, ...), plus the dynamic loader they name.
    local lib
    for lib in $( { ldd "$python"; find "$root$stdlib/lib-dynload" -name '*.so' -exec ldd {} \; ; } \
        | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
        copy_file "$root" "$lib"
    done
    # ctypes.util.find_library("c") asks `ldconfig -p`; give it a real cache to read.
    if [[ -x /sbin/ldconfig ]] && is_static /sbin/ldconfig; then
        rm -f "$root/sbin/ldconfig"
        cp /sbin/ldconfig "$root/sbin/ldconfig"
        printf '/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n/lib\n/usr/lib\n' \
            >"$root/etc/ld.so.conf"
        /sbin/ldconfig -r "$root" 2>/dev/null || true
    fi
}

# --rootfs DIR: folders only, rebuilt when the recipe changed (or --force).
if [[ -n "$ROOTFS_OUT" ]]; then
    mkdir -p "$ROOTFS_OUT"
    if [[ "$FORCE" == 0 && -d "$ROOTFS_OUT/py" && -d "$ROOTFS_OUT/busybox" \
        && "$(cat "$ROOTFS_OUT/recipe" 2>/dev/null)" == "$RECIPE" ]]; then
        echo "build.sh: rootfs folders in $ROOTFS_OUT are up to date"
        exit 0
    fi
    rm -rf "$ROOTFS_OUT/py" "$ROOTFS_OUT/busybox" "$ROOTFS_OUT/recipe"
    build_busybox_rootfs "$ROOTFS_OUT/busybox"
    build_py_rootfs "$ROOTFS_OUT/py"
    echo "$RECIPE" >"$ROOTFS_OUT/recipe"
    echo "build.sh: rootfs folders $ROOTFS_OUT/py and $ROOTFS_OUT/busybox (recipe $RECIPE)"
    exit 0
fi

if need_build "$BUSYBOX_IMAGE"; then
    build_busybox
else
    echo "build.sh: $BUSYBOX_IMAGE is up to date"
fi
if need_build "$PY_IMAGE"; then
    build_py
    docker run --rm --network none "$PY_IMAGE" python3 -c \
        'import zipfile, zlib, hashlib, ctypes, json, selectors, threading; print(1)' >/dev/null \
        || { echo "build.sh: $PY_IMAGE cannot import the agent's modules" >&2; exit 1; }
else
    echo "build.sh: $PY_IMAGE is up to date"
fi
