#!/bin/bash
# shellcheck disable=SC2154 # initdir, moddir and systemdsystemunitdir are set by dracut
# Test-only dracut module of the QEMU harness: config switcher + "before" capture at
# pre-udev (runs before 00-vfio-early.sh), report + poweroff once coldplug settled.

check() { return 255; }
depends() { echo vfio-early; }
install() {
    # shellcheck source=/dev/null
    . "$VE_QEMU_DIR/stage.sh"
    stage_guest_tools "$initdir"
    inst_hook pre-udev 00 "$moddir/00-a-select-config.sh"
    inst_hook initqueue/settled 99 "$moddir/zz-report.sh"
    # VE_UNIT=1: prove mkinitcpio's oneshot unit under a real systemd initramfs: the
    # unit replaces our pre-udev hook in this image.
    if [[ ${VE_UNIT:-} == 1 ]]; then
        rm -f "$initdir/lib/dracut/hooks/pre-udev/00-vfio-early.sh"
        inst_simple "$VE_REPO_DIR/mkinitcpio/vfio-early.service" "$systemdsystemunitdir/vfio-early.service"
        mkdir -p "$initdir$systemdsystemunitdir/sysinit.target.wants"
        ln -sf ../vfio-early.service "$initdir$systemdsystemunitdir/sysinit.target.wants/vfio-early.service"
    fi
    # systemd images start dracut-initqueue.service only when something needs it
    mkdir -p "$initdir/lib/dracut"
    : >"$initdir/lib/dracut/need-initqueue"
}
