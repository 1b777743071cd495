#!/bin/sh
# dracut pre-udev hook (priority 00): runs before udevd starts and before plymouth's
# pre-trigger probe, in both the shell and the systemd initramfs
# (dracut-pre-udev.service). Sourced by dracut: return, never exit. The binary decides
# everything, honours the kill switch (vfio_early=off) and never fails the boot.

if [ -x /usr/bin/vfio-early ]; then
    /usr/bin/vfio-early bind --once
fi
