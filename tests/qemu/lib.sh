#!/bin/bash
# Shared functions of the QEMU end-to-end harness. Sourced by run.sh and friends.
# shellcheck disable=SC2034  # variables are used by the scripts that source this

QEMU_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$QEMU_DIR/../.." && pwd)
CACHE_DIR=${VFIO_EARLY_QEMU_CACHE:-$QEMU_DIR/cache}
WORK_DIR=${VFIO_EARLY_QEMU_WORK:-$QEMU_DIR/work}
BOOT_TIMEOUT=${VFIO_EARLY_BOOT_TIMEOUT:-240}

log() { printf 'qemu-harness: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

# Seconds since the epoch with fractions, for phase timings.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# fetch_kernel: downloads Debian's generic kernel (whatever linux-image-amd64 depends
# on today), extracts it under $CACHE_DIR/kernel and runs depmod there. Sets KVER,
# KROOT (extracted root), KMODDIR, VMLINUZ.
fetch_kernel() {
    local pkg deb
    mkdir -p "$CACHE_DIR"
    if [[ -f $CACHE_DIR/kernel.pkg ]]; then
        pkg=$(cat "$CACHE_DIR/kernel.pkg")
    else
        pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
        [[ -n $pkg ]] || die "apt-cache depends linux-image-amd64 names no versioned kernel (apt-get update?)"
    fi
    KROOT=$CACHE_DIR/kernel
    if [[ ! -f $KROOT/.done ]]; then
        log "fetching $pkg"
        rm -rf "$KROOT" "$CACHE_DIR"/deb
        mkdir -p "$CACHE_DIR/deb"
        (cd "$CACHE_DIR/deb" && apt-get download "$pkg") || die "apt-get download $pkg failed"
        deb=$(ls "$CACHE_DIR"/deb/*.deb)
        mkdir -p "$KROOT"
        dpkg-deb -x "$deb" "$KROOT"
        KVER=$(ls "$KROOT/lib/modules")
        depmod -b "$KROOT" "$KVER"
        rm -rf "$CACHE_DIR/deb"
        printf '%s\n' "$pkg" >"$CACHE_DIR/kernel.pkg"
        touch "$KROOT/.done"
    fi
    KVER=$(ls "$KROOT/lib/modules")
    KMODDIR=$KROOT/lib/modules/$KVER
    VMLINUZ=$KROOT/boot/vmlinuz-$KVER
    [[ -f $VMLINUZ ]] || die "no $VMLINUZ"
}
