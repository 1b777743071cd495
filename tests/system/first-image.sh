#!/bin/bash
# mmdebstrap essential hook (before the kernel and the generator are installed): the
# image the kernel's postinst builds while the root is made, the one the first boot
# takes, carries only what the test's disk needs (virtio-blk, ext4) instead of every
# module of the kernel. A generic dracut image (all modules, gzip -9) took most of
# the dracut root's build time. make_disk (lib.sh) removes this file again, so the
# images the guest builds follow the root's own configuration.
# Usage: first-image.sh ROOT GENERATOR
set -euo pipefail
root=$1
case $2 in
dracut)
    mkdir -p "$root/etc/dracut.conf.d"
    cat >"$root/etc/dracut.conf.d/05-ve-first-image.conf" <<'CONF'
hostonly="no"
drivers="virtio_pci virtio_blk ext4 crc32c_generic crc32c_intel"
filesystems="ext4"
CONF
    ;;
esac
