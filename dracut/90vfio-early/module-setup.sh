#!/bin/bash
# shellcheck disable=SC2154 # kernel, srcmods, initdir and moddir are set by dracut
# dracut module: hand the devices named in /etc/vfio-early.toml to vfio-pci before
# udev's coldplug can load their host drivers. All decisions live in the binary; this
# file only installs it, its config, the vfio modules and the hook.
#
# Build-time overrides (for tests and staged installs): VFIO_EARLY_BIN (the binary on
# the build host), VFIO_EARLY_BOOT_BIN (the boot-only build that goes into the image)
# and VFIO_EARLY_CONFIG (the config to put in the image).

vfio_early_bin() {
    printf '%s\n' "${VFIO_EARLY_BIN:-/usr/bin/vfio-early}"
}

# The binary for the image: the boot-only build (`bind` alone, smaller) when installed,
# else the full one.
vfio_early_boot_bin() {
    local boot=${VFIO_EARLY_BOOT_BIN:-/usr/lib/vfio-early/vfio-early-boot}
    if [[ -x $boot ]]; then
        printf '%s\n' "$boot"
    else
        vfio_early_bin
    fi
}

vfio_early_config() {
    printf '%s\n' "${VFIO_EARLY_CONFIG:-/etc/vfio-early.toml}"
}

# Prints the vfio module names for the target kernel; fails (with the binary's loud
# warning on stderr) when vfio-pci is unavailable for it.
vfio_early_modules() {
    "$(vfio_early_bin)" modules --kver "$kernel" --kmoddir "${srcmods:-/lib/modules/$kernel}" "$@"
}

# called by dracut
check() {
    require_binaries "$(vfio_early_bin)" || return 1
    # Without a config there is nothing to do: include only when asked for.
    [[ -f $(vfio_early_config) ]] || return 255
    return 0
}

# called by dracut
depends() {
    return 0
}

# called by dracut
installkernel() {
    local mods
    mods=$(vfio_early_modules) || return 0
    [[ -n $mods ]] || return 0
    # shellcheck disable=SC2086 # one module name per word
    hostonly='' instmods $mods
}

# called by dracut
install() {
    local bin config report rc line
    bin=$(vfio_early_bin)
    config=$(vfio_early_config)
    if ! vfio_early_modules >/dev/null; then
        dwarn "vfio-early: vfio-pci is unavailable for kernel $kernel: the vfio-early boot hook is LEFT OUT of this image; no device will be handed to vfio-pci at boot"
        return 0
    fi
    if [[ -f $config ]]; then
        # Validate now, so a config error shows with its line while building the
        # image rather than silently at boot. Never fail the build for it.
        report=$("$bin" bind --dry-run --strict --config "$config" 2>&1 >/dev/null)
        rc=$?
        if ((rc == 2)); then
            while IFS= read -r line; do
                dwarn "$line"
            done <<<"$report"
            dwarn "vfio-early: config error in $config: the agent will change nothing at boot until it is fixed (the image is built anyway)"
        elif ((rc != 0)); then
            dwarn "vfio-early: on this machine as it runs now, the config plans refusals (exit $rc): see 'vfio-early bind --dry-run --config $config'"
        fi
        inst_simple "$config" /etc/vfio-early.toml
    fi
    inst_simple "$(vfio_early_boot_bin)" /usr/bin/vfio-early
    # Every driver that would claim a device after the switch to the real root, not
    # only those inside the image: the agent's group-safety rule reads it.
    mkdir -p "$initdir/usr/lib/vfio-early"
    vfio_early_modules --pci-aliases >"$initdir/usr/lib/vfio-early/modules.alias" ||
        rm -f "$initdir/usr/lib/vfio-early/modules.alias"
    mkdir -p "$initdir/etc/modprobe.d"
    vfio_early_modules --config "$config" --modprobe-conf >"$initdir/etc/modprobe.d/vfio-early.conf" ||
        rm -f "$initdir/etc/modprobe.d/vfio-early.conf"
    inst_hook pre-udev 00 "$moddir/vfio-early.sh"
}
