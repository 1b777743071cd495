#!/bin/bash
# Shared functions of the installed-system test (tests/system/run.sh).
# shellcheck disable=SC2034 # variables are used by the scripts that source this

SYSTEM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The QEMU harness's topology and helpers (topology_args, now, elapsed).
# shellcheck source=tests/qemu/lib.sh
. "$SYSTEM_DIR/../qemu/lib.sh"
SYS_CACHE=${VFIO_EARLY_SYSTEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vfio-early-tests}
SYS_WORK=${VFIO_EARLY_SYSTEM_WORK:-$SYSTEM_DIR/work}
SYS_BOOT_TIMEOUT=${VFIO_EARLY_SYSTEM_BOOT_TIMEOUT:-2400}
SUITE=bookworm
MIRROR=${VFIO_EARLY_DEBIAN_MIRROR:-http://deb.debian.org/debian}

slog() { printf 'system-test: %s\n' "$*" >&2; }

# Packages of each root, beside Debian's essential set and apt.
root_packages() { # GENERATOR(itools|dracut)
    local gen
    case $1 in
    itools) gen=initramfs-tools ;;
    dracut) gen=dracut ;;
    *) return 2 ;;
    esac
    printf '%s\n' systemd systemd-sysv udev kmod e2fsprogs linux-image-amd64 "$gen" | paste -sd,
}

# How mmdebstrap builds a root (beside --include and the customize hook).
MMDEBSTRAP_OPTS=(--variant=apt --mode=root --format=tar
    --aptopt='APT::Install-Recommends "false"'
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright')

# root_key GENERATOR: what the cached root depends on (suite, options, package list,
# customize hook); a change rebuilds it.
root_key() {
    # (first-image.sh only shapes the dracut root: the initramfs-tools key stays.)
    { echo "$SUITE" "${MMDEBSTRAP_OPTS[@]}"; root_packages "$1"; cat "$SYSTEM_DIR/customize.sh"
        [[ $1 == dracut ]] && cat "$SYSTEM_DIR/first-image.sh"; } |
        sha256sum | cut -c1-16
}

# build_root GENERATOR: a Debian 12 root from Debian's archive (mmdebstrap), cached as
# $SYS_CACHE/root-GENERATOR-KEY.tar. Prints the tarball's path.
build_root() {
    local g=$1 key tar t
    key=$(root_key "$g")
    tar=$SYS_CACHE/root-$g-$key.tar
    if [[ ! -f $tar ]]; then
        mkdir -p "$SYS_CACHE"
        rm -f "$SYS_CACHE/root-$g-"*.tar
        t=$(now)
        slog "building the $g root with mmdebstrap ($SUITE from $MIRROR)"
        mmdebstrap "${MMDEBSTRAP_OPTS[@]}" \
            --include="$(root_packages "$g")" \
            --essential-hook="$SYSTEM_DIR/first-image.sh \"\$1\" $g" \
            --customize-hook="$SYSTEM_DIR/customize.sh \"\$1\" $g" \
            "$SUITE" "$tar.part" "$MIRROR" >"$SYS_CACHE/root-$g.build.log" 2>&1 || {
            tail -n 30 "$SYS_CACHE/root-$g.build.log" >&2
            rm -f "$tar.part"
            return 1
        }
        mv "$tar.part" "$tar"
        slog "$g root built in $(elapsed "$t") s ($(du -m "$tar" | cut -f1) MB)"
    fi
    printf '%s\n' "$tar"
}

# make_disk GENERATOR TAR DEB DISK: the root as an ext4 disk image (mkfs.ext4 -d, no
# mount), with the package under test in /root and the step runner installed.
# Prints the kernel version the root carries.
make_disk() {
    local g=$1 tar=$2 deb=$3 disk=$4 dir kver
    dir=$(dirname "$disk")/root
    rm -rf "$dir" "$disk"
    mkdir -p "$dir"
    tar --numeric-owner -xpf "$tar" -C "$dir" || return 1
    install -m0644 "$deb" "$dir/root/vfio-early.deb"
    install -Dm0755 "$SYSTEM_DIR/guest/ve-step" "$dir/usr/local/sbin/ve-step"
    # Images the guest builds are host-only (the generators' own setting, common on
    # installed systems): a generic image takes more than ten minutes to build under
    # TCG. The first boot uses the generic image built with the root.
    case $g in
    itools) sed -i 's/^MODULES=.*/MODULES=dep/' "$dir/etc/initramfs-tools/initramfs.conf" ;;
    dracut)
        # The first image's restriction (first-image.sh) goes: the guest's images are
        # host-only, with dracut's own choice of modules.
        rm -f "$dir/etc/dracut.conf.d/05-ve-first-image.conf"
        printf '%s\n' 'hostonly="yes"' >"$dir/etc/dracut.conf.d/50-hostonly.conf"
        # gzip -1, not dracut's gzip -9: -9 spent more time on each image than all of
        # dracut's module work (about 150 s of 240 under TCG). The image is the same
        # cpio.
        printf '%s\n' 'compress="gzip -n -1"' >"$dir/etc/dracut.conf.d/50-compress.conf"
        ;;
    esac
    # No gettys on tty2..6 either (systemd's getty-static, started when logind is
    # missing, held every boot for about 20 s under TCG).
    ln -sf /dev/null "$dir/etc/systemd/system/getty-static.service"
    kver=$(ls "$dir/lib/modules")
    mkfs.ext4 -q -F -L root -d "$dir" "$disk" 4G >&2 || return 1
    rm -rf "$dir"
    printf '%s\n' "$kver"
}

# from_disk DISK PATH DEST: copies a file out of the (unmounted) image.
from_disk() {
    rm -f "$3"
    debugfs -R "dump $2 $3" "$1" >/dev/null 2>&1 && [[ -s $3 ]]
}

# boot_disk NAME DISK VMLINUZ INITRD APPEND: boots the installed system with the
# harness's topology and an emulated Intel IOMMU; the serial console goes to
# $SYS_WORK/NAME.log. Returns qemu's status (124 on timeout). no_timer_check: on a
# loaded host, TCG can miss the kernel's early IO-APIC timer test, which then panics
# ("timer doesn't work through Interrupt-remapped IO-APIC"); seen here once.
boot_disk() {
    local name=$1 disk=$2 kernel=$3 initrd=$4 append=$5 rc t
    local -a topo
    mapfile -t topo < <(topology_args)
    t=$(now)
    timeout --kill-after=10 "$SYS_BOOT_TIMEOUT" qemu-system-x86_64 \
        -machine q35,kernel-irqchip=split -accel tcg -cpu max -m 2048 -smp 1 \
        -nographic -vga none -nic none -no-reboot -monitor none -serial "file:$SYS_WORK/$name.log" \
        -device intel-iommu,intremap=on "${topo[@]}" \
        -drive "file=$disk,format=raw,if=none,id=d0" -device virtio-blk-pci,drive=d0,addr=06.0 \
        -kernel "$kernel" -initrd "$initrd" \
        -append "root=/dev/vda rw console=ttyS0 intel_iommu=on panic=-1 loglevel=4 no_timer_check $append" \
        </dev/null >"$SYS_WORK/$name.qemu.out" 2>&1
    rc=$?
    printf '%s %s %s\n' "$name" "$rc" "$(elapsed "$t")" >>"$SYS_WORK/boots"
    slog "boot $name: exit $rc after $(elapsed "$t") s"
    return "$rc"
}

# run_chain GENERATOR TAR DEB STEP...: one disk, one boot per step, each from the
# kernel and initramfs in the root's own /boot as the previous boot left them. After
# each boot the guest's findings are copied out to $SYS_WORK/GEN-STEP.ve.
run_chain() {
    local g=$1 tar=$2 deb=$3 disk kver s append
    shift 3
    mkdir -p "$SYS_WORK/$g"
    disk=$SYS_WORK/$g/disk.img
    kver=$(make_disk "$g" "$tar" "$deb" "$disk") || { slog "$g: disk image failed"; return 1; }
    for s in "$@"; do
        append="ve.step=$s"
        # The kill switch, as a user types it at the boot loader.
        [[ $s == off* ]] && append="$append vfio_early=off"
        if ! from_disk "$disk" "/boot/vmlinuz-$kver" "$SYS_WORK/$g/$s.vmlinuz" ||
            ! from_disk "$disk" "/boot/initrd.img-$kver" "$SYS_WORK/$g/$s.initrd"; then
            slog "$g: no kernel or initramfs in /boot for $kver"
            return 1
        fi
        boot_disk "$g-$s" "$disk" "$SYS_WORK/$g/$s.vmlinuz" "$SYS_WORK/$g/$s.initrd" "$append"
        rm -rf "$SYS_WORK/$g-$s.ve"
        debugfs -R "rdump /var/log/ve $SYS_WORK/$g" "$disk" >/dev/null 2>&1
        [[ -d $SYS_WORK/$g/ve ]] && mv "$SYS_WORK/$g/ve" "$SYS_WORK/$g-$s.ve"
        # A step that did not finish leaves nothing for the next one to build on.
        if ! grep -qx "VE-END $s" "$SYS_WORK/$g-$s.ve/$s.log" 2>/dev/null; then
            slog "$g: step $s did not finish (console: $SYS_WORK/$g-$s.log); the chain stops"
            break
        fi
    done
    # The image the next boot would take.
    from_disk "$disk" "/boot/initrd.img-$kver" "$SYS_WORK/$g/final.initrd"
    rm -f "$SYS_WORK/$g"/*.vmlinuz
}
