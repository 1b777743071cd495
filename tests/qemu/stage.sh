#!/bin/bash
# Test-only pieces put into every image the harness builds. Sourced by lib.sh and by
# the test dracut module (so it defines nothing but this function).

# Installs the test-only pieces into a staging dir: busybox (static, with its applet
# links, in /ve/bin), the guest scripts, the config variants.
stage_guest_tools() { # $1 = root of the image being built
    local root=$1 a
    mkdir -p "$root/ve/bin" "$root/ve/configs"
    # VE_BUSYBOX: another architecture's busybox-static (the arm64 image); its applet
    # list is the host's, the same Debian package built for both.
    cp "${VE_BUSYBOX:-/bin/busybox}" "$root/ve/bin/busybox"
    for a in $(/bin/busybox --list); do
        [ "$a" = busybox ] && continue
        ln -sf busybox "$root/ve/bin/$a"
    done
    cp "${VE_QEMU_DIR:-$QEMU_DIR}"/guest/*.sh "${VE_QEMU_DIR:-$QEMU_DIR}"/guest/*.xml "$root/ve/"
    cp "${VE_QEMU_DIR:-$QEMU_DIR}"/configs/*.toml "$root/ve/configs/"
    # The full tool, for `vfio-early check` in the report (the image's own
    # /usr/bin/vfio-early is the boot agent: `bind` alone).
    if [ -n "${VFIO_EARLY_BIN:-}" ]; then
        cp "$VFIO_EARLY_BIN" "$root/ve/bin/vfio-early"
        # libvirt's hook as make install writes it, calling that full tool.
        mkdir -p "$root/etc/libvirt/hooks/qemu.d"
        sed 's|@BINDIR@|/ve/bin|g' "${VE_QEMU_DIR:-$QEMU_DIR}/../../libvirt/vfio-early" \
            >"$root/etc/libvirt/hooks/qemu.d/vfio-early"
        chmod 755 "$root/etc/libvirt/hooks/qemu.d/vfio-early"
    fi
    # The detach scenarios' VFIO holder (a test helper: agent/examples/vfio-hold.rs).
    if [ -n "${VE_HOLD_BIN:-}" ]; then
        cp "$VE_HOLD_BIN" "$root/ve/bin/vfio-hold"
    fi
}

