#!/bin/bash
# shellcheck disable=SC2154 # initdir and moddir are set by dracut
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
    # systemd images start dracut-initqueue.service only when something needs it
    mkdir -p "$initdir/lib/dracut"
    : >"$initdir/lib/dracut/need-initqueue"
}
