#!/bin/bash
# shellcheck disable=SC2154 # kernel, srcmods, initdir and moddir are set by dracut
# dracut module: `vfio-early initramfs` decides what the image gets; this carries out
# its steps. Overrides (tests, staged installs): VFIO_EARLY_BIN, VFIO_EARLY_BOOT_BIN,
# VFIO_EARLY_CONFIG.

vfio_early_steps() {
    "${VFIO_EARLY_BIN:-/usr/bin/vfio-early}" initramfs --generator dracut --kver "$kernel" \
        --kmoddir "${srcmods:-/lib/modules/$kernel}" --out "$initdir" \
        --config "${VFIO_EARLY_CONFIG:-/etc/vfio-early.toml}" \
        --boot-bin "${VFIO_EARLY_BOOT_BIN:-/usr/lib/vfio-early/vfio-early-boot}"
}

check() {
    require_binaries "${VFIO_EARLY_BIN:-/usr/bin/vfio-early}" || return 1
    # Without a config there is nothing to do: include only when asked for.
    [[ -f ${VFIO_EARLY_CONFIG:-/etc/vfio-early.toml} ]] || return 255
}

depends() { return 0; }

installkernel() {
    local verb a b
    while read -r verb a b; do
        [[ $verb == module ]] && hostonly='' instmods "$a"
    done <<<"$(vfio_early_steps)"
    return 0
}

install() {
    local verb a b
    while read -r verb a b; do
        case $verb in
            warn) dwarn "$a $b" ;;
            binary | file) inst_simple "$a" "$b" ;;
            hook) inst_hook "$a" "${b%% *}" "$moddir/vfio-early.sh" ;;
        esac
    done <<<"$(vfio_early_steps)"
}
